"""Where a customer's data lives: every table, how its rows are found, what erasure does to them.

Each ``Part`` is one table holding rows about a customer. Its rows are found by the customer's
ids (the survivor and every profile merged into it) in a column (``customer_id`` unless said
otherwise) or through a parent part (a conversation's messages, an order's lines). The export
writes every part; the erasure applies each part's ``Erasure``:

- ``Keep``: nothing personal is left in the row once the profile and identities are gone
  (ids, statuses, amounts, times): it stays, so counts, totals and KPIs do not move.
- ``Scrub``: the named columns are cleared (``NULL``), replaced by the ``[erased]`` marker
  (always, or unless the value is a short code such as a status), or redacted (JSON: numbers,
  booleans, ids, times and short codes under known keys stay; every other string becomes the
  marker). The rest of the row stays.
- ``Delete``: the rows go (identities, so the person is never matched again; web chat visitors,
  whose token would keep reaching the profile; stored files only that person sent).

``COPIES`` are tables that hold copies of events (the outbox, outbound webhook deliveries):
not exported (their content is in the parts), redacted by the erasure where they mention the
customer. ``UNRELATED`` names every other table with the reason it holds nothing about a
customer. The tests check that every table of ``hilos.models`` is in exactly one of the three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Table

from hilos.models import metadata

MARKER = "[erased]"

# What a scrubbed column becomes: NULL, the marker (when it held something), an empty JSON
# object, the JSON with its free text redacted, or the marker unless it is a short code.
Rule = Literal["null", "marker", "empty", "redact", "code"]


@dataclass(frozen=True, slots=True)
class Keep:
    why: str


@dataclass(frozen=True, slots=True)
class Delete:
    why: str


@dataclass(frozen=True, slots=True)
class Scrub:
    columns: Mapping[str, Rule]
    why: str


Erasure = Keep | Delete | Scrub


@dataclass(frozen=True, slots=True)
class Through:
    """Rows found through a parent part: ``column`` holds the parent's ``parent_column``."""

    column: str
    parent: str
    parent_column: str = "id"


@dataclass(frozen=True, slots=True)
class Part:
    table_name: str
    erasure: Erasure
    # The column holding the customer's id, or how the rows are reached from another part.
    link: str | Through = "customer_id"
    # Columns never exported: secrets (hashed tokens) and bytes.
    omit: tuple[str, ...] = ()
    # Other columns holding a customer id, searched too (a merge names two customers).
    also: tuple[str, ...] = ()
    # Equalities every row must meet as well (the audit log's entries about customers).
    only: tuple[tuple[str, str], ...] = ()

    @property
    def table(self) -> Table:
        return metadata.tables[self.table_name]


PARTS: tuple[Part, ...] = (
    # --- customers -------------------------------------------------------------------------
    Part(
        "customers",
        Scrub(
            {"name": "null", "search_name": "null", "traits": "empty"},
            "the name and traits go; the id, language and dates stay for the rows that point here",
        ),
        link="id",
    ),
    Part("identities", Delete("deleted, so no later message or identify links the person again")),
    Part(
        "consents",
        Scrub(
            {"source": "marker"},
            "purposes, decisions and dates stay as the record of what was allowed; "
            "every consent still granted is withdrawn by a row with source 'erasure'",
        ),
    ),
    Part(
        "timeline_events",
        Scrub(
            {"name": "code", "properties": "redact", "context": "redact"},
            "type and time stay (sessions, multichannel share), and names that are codes "
            "(an order's status); page titles and other free text go",
        ),
    ),
    Part(
        "merges",
        Keep("ids and trait names only; they lead merged ids to the erased survivor"),
        link="survivor_id",
        also=("merged_id",),
    ),
    # --- conversations ---------------------------------------------------------------------
    Part("conversations", Keep("statuses and times: response and resolution KPIs")),
    Part(
        "messages",
        Scrub(
            {
                "text": "marker",
                "address": "null",
                "attachments": "redact",
                "data": "redact",
                "error": "redact",
            },
            "text, address and files go; direction, channel, status and times stay (KPIs); "
            "replies still waiting to be sent fail with customer_erased",
        ),
        link=Through("conversation_id", "conversations"),
    ),
    Part("message_sentiments", Keep("a score and a label per message: the sentiment summary")),
    Part(
        "conversation_slas",
        Keep("SLA clocks: the SLA attainment KPI"),
        link=Through("conversation_id", "conversations"),
    ),
    Part(
        "assistant_turns",
        Scrub(
            {"question": "marker", "answer": "marker", "details": "redact"},
            "the question and answer text go; intent, outcome and confidence stay",
        ),
    ),
    Part(
        "assistant_handoffs",
        Keep("reason codes and ids"),
        link=Through("conversation_id", "conversations"),
    ),
    Part(
        "tasks",
        Scrub({"title": "marker", "data": "redact"}, "the caller's name and number go"),
    ),
    Part(
        "webchat_visitors",
        Delete("the browser's token would keep reaching the erased profile"),
        omit=("token_hash",),
    ),
    # --- commerce --------------------------------------------------------------------------
    Part(
        "orders",
        Scrub(
            {"ship_to": "null", "sourcing": "empty"},
            "the delivery address goes, and the sourcing decision with it (its distances from "
            "several stores would give the address back); amounts, channel and status stay",
        ),
    ),
    Part("order_lines", Keep("products, quantities, prices"), link=Through("order_id", "orders")),
    Part(
        "order_history",
        Scrub({"note": "marker", "notification": "redact"}, "staff notes may name the person"),
        link=Through("order_id", "orders"),
    ),
    Part("returns", Scrub({"reason": "marker"}, "the reason is free text; amounts stay")),
    Part(
        "return_lines", Keep("products, quantities, refunds"), link=Through("return_id", "returns")
    ),
    Part("carts", Keep("status, channel and times: cart conversion")),
    Part("cart_lines", Keep("products and prices"), link=Through("cart_id", "carts")),
    Part("loyalty_balances", Keep("point counters")),
    Part("loyalty_movements", Scrub({"reason": "marker"}, "the ledger's points stay")),
    Part("purchase_baskets", Keep("products bought together: recommendations for everyone")),
    # --- engagement ------------------------------------------------------------------------
    Part(
        "sends",
        Scrub(
            {"detail": "marker", "tried": "redact", "source": "redact", "history": "redact"},
            "what was sent stays countable (frequency caps, campaign results)",
        ),
        omit=("unsubscribe_token",),
    ),
    Part("campaign_recipients", Keep("statuses: the campaign's counts")),
    Part(
        "journey_runs",
        Scrub(
            {"context": "redact"},
            "runs still active end as exited (customer_erased); the event data goes",
        ),
    ),
    Part(
        "journey_step_log",
        Scrub({"detail": "redact"}, "step outcomes stay"),
        link=Through("run_id", "journey_runs"),
    ),
    Part("segment_members", Keep("the id alone; the next refresh re-evaluates the rule")),
    # --- analytics -------------------------------------------------------------------------
    Part(
        "survey_invitations",
        Keep("ids, statuses and times: response rates; those not yet sent are skipped"),
    ),
    Part("survey_responses", Scrub({"comment": "marker"}, "scores stay: CSAT, NPS, CES")),
    Part(
        "reviews",
        Scrub(
            {"text": "marker", "author": "null", "customer_id": "null"},
            "the rating and sentiment stay, no longer linked to anyone",
        ),
    ),
    # --- matching --------------------------------------------------------------------------
    Part(
        "match_keys",
        Delete("blocking keys are made of the name, birth date, address, emails and phones"),
    ),
    Part(
        "match_suggestions",
        Delete("a pair of profiles and why they looked alike; nothing is left to compare"),
        link="left_customer_id",
        also=("right_customer_id",),
    ),
    # --- this domain -----------------------------------------------------------------------
    Part(
        "audit_log",
        Keep("append-only, and holds no personal data by rule"),
        link="subject_id",
        only=(("subject_type", "customer"),),
    ),
)

# Attachments kept by Hilos (an email's files), found through the messages that name them.
STORED_FILES = "stored_files"
STORED_FILES_WHY = (
    "files attached to the customer's messages; deleted unless another customer's message "
    "names the same file (a tenant stores identical files once)"
)

# Tables holding copies of events, redacted where they mention one of the customer's ids.
COPIES: Mapping[str, str] = {
    "outbox_events": "events already relayed keep their payload; mentions of the customer are "
    "redacted",
    "webhook_deliveries": "bodies sent (or to send) to the tenant's own endpoints; mentions of "
    "the customer are redacted",
}

UNRELATED: Mapping[str, str] = {
    # The business itself and its people.
    "tenants": "the business",
    "users": "the tenant's staff, not customers",
    "api_keys": "the tenant's keys",
    "console_sessions": "staff sign-ins",
    "blocked_values": "values that link nobody (a shop's own phone), set by the tenant",
    # Channels and their machinery.
    "channels": "the tenant's channel configuration",
    "channel_states": "a poller's position in a mailbox",
    "message_receipts": "provider delivery statuses keyed by provider message id",
    "canned_responses": "the tenant's reply templates",
    # Contact center: agents, queues and routing state about conversations, not people.
    "routing_agents": "staff",
    "routing_queues": "configuration",
    "routing_queue_members": "staff in queues",
    "routing_settings": "configuration",
    "routing_conversations": "a conversation's place in a queue (ids and times)",
    "routing_offers": "offers to agents (ids and times)",
    "routing_decisions": "why an agent got a conversation (ids and the rule applied)",
    "business_hours": "configuration",
    "sla_policies": "configuration",
    # Commerce catalog and stock.
    "products": "catalog",
    "variants": "catalog",
    "prices": "catalog",
    "price_parity_policies": "configuration",
    "locations": "the tenant's warehouses and stores",
    "stock_levels": "stock",
    "stock_movements": "stock (an order's movements name the order, not the person)",
    "reservations": "stock held for order lines (ids)",
    "order_settings": "configuration",
    "cart_settings": "configuration",
    "loyalty_programs": "configuration",
    # Engagement configuration and aggregates.
    "engagement_settings": "configuration",
    "message_templates": "the tenant's templates",
    "segments": "rules and member counts",
    "journeys": "definitions",
    "campaigns": "definitions and counts",
    "knowledge_articles": "the tenant's FAQ",
    "assistant_settings": "configuration",
    "product_aliases": "the tenant's names for products",
    "product_basket_counts": "counts over every order",
    "product_pair_counts": "counts over every order",
    # Analytics.
    "survey_settings": "configuration",
    "mentions": "public posts found on social networks, linked to no customer",
    "clv_fits": "a model fitted over all customers (parameters and averages)",
    # Integrations.
    "webhook_endpoints": "the tenant's endpoints",
    # Matching.
    "match_settings": "thresholds and a model fitted over all profiles (weights, no records)",
    "match_check_cursor": "the online check's position (a time and two ids)",
    "match_runs": "a de-duplication's plan and counts: profile ids, nothing personal",
}


def part(table_name: str) -> Part:
    for candidate in PARTS:
        if candidate.table_name == table_name:
            return candidate
    raise KeyError(table_name)

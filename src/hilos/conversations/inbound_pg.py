"""PostgreSQL's one-statement inbound paths for the two commonest messages: a known customer
writing into their active conversation, and a new sender's first message.

``service.receive`` is the reference: five to eight statements, each owned by its domain.
Measured on two cores, SQLAlchemy's cost per statement, not PostgreSQL, bounded the rate
(DESIGN.md's performance notes), so on PostgreSQL this module does the same work in one
statement of data-modifying CTEs, sent to asyncpg directly. A single statement is atomic on its
own, so run first on the request's connection it needs no BEGIN/COMMIT round trips; after
other statements it joins their transaction.

Known sender: find the active conversation through the identity, insert the message (``ON
CONFLICT DO NOTHING``: the idempotency check), bring the conversation up to date, write the
``message.received`` event; other identities the message proves (a WhatsApp sender's phone)
must already be the same customer's. New sender: link the identity and the others the message
proves, if none of them is anyone's or blocked (``ON CONFLICT DO NOTHING``: a concurrent first
message wins), create the customer and the conversation, insert the message and the event;
foreign keys are checked at the end of the statement, so the order of the CTEs does not
matter to them. Both read and write other domains' tables (``identities``,
``customers``, ``outbox_events``): the one place that does, kept in step with the reference by
running the same test suite on PostgreSQL.

Anything else (a known customer without an active conversation, a blocked value, a race)
changes nothing here and returns ``None``, and ``receive`` takes the reference path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hilos.core.ids import new_id
from hilos.core.rawsql import numbered
from hilos.customers.identities import search_key

# Both statements end the same way: store the message in the conversation ``conv`` (ON
# CONFLICT: the idempotency check) and write its ``message.received`` event; then report.
# Parameters that also sit in an INSERT's SELECT list are cast to varchar everywhere, the type
# PostgreSQL deduces there, so that every use of a parameter agrees on its type.
_STORE_MESSAGE_WRITE_EVENT = """
msg AS (
    INSERT INTO messages (
        id, tenant_id, conversation_id, channel_id, direction, external_id, address,
        author_user_id, text, attachments, status, sent_at, created_at
    )
    SELECT :message_id, :tenant_id, conv.id, :channel_id, 'inbound', :external_id, :address,
        NULL, :text, CAST(:attachments AS json), 'received', :sent_at, :now
    FROM conv
    ON CONFLICT (tenant_id, channel_id, external_id) DO NOTHING
    RETURNING id, conversation_id
),
event AS (
    INSERT INTO outbox_events (id, tenant_id, topic, payload, created_at)
    SELECT :event_id, :tenant_id, 'message.received',
        json_build_object(
            'message_id', msg.id,
            'conversation_id', msg.conversation_id,
            'customer_id', conv.customer_id,
            'channel_id', CAST(:channel_id AS varchar),
            'channel_kind', CAST(:channel_kind AS varchar),
            'conversation', CAST(:transition AS varchar)
        ),
        :now
    FROM msg JOIN conv ON conv.id = msg.conversation_id
    RETURNING id
)"""
_REPORT = """
SELECT conv.id AS conversation_id, conv.customer_id, (SELECT id FROM msg) AS message_id
FROM conv
"""

_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL = (
    """
WITH conv AS (
    SELECT c.id, c.customer_id
    FROM identities AS i
    JOIN conversations AS c ON c.customer_id = i.customer_id
    WHERE i.tenant_id = :tenant_id AND i.kind = :kind AND i.value = :value
      AND c.status IN ('open', 'pending', 'snoozed')
      -- Every other identity the message proves must already be this customer's; if one is
      -- new or someone else's, resolution (and maybe a merge) is the reference path's job.
      -- (LATERAL ... LIMIT 1: one index probe per value, whatever plan PostgreSQL caches.)
      AND NOT EXISTS (
          SELECT 1
          FROM unnest(CAST(:extra_kinds AS varchar[]), CAST(:extra_values AS varchar[]))
              AS extra(kind, value)
          LEFT JOIN LATERAL (
              SELECT j.customer_id FROM identities AS j
              WHERE j.tenant_id = CAST(:tenant_id AS varchar) AND j.kind = extra.kind
                AND j.value = extra.value
              LIMIT 1
          ) AS owner ON true
          WHERE owner.customer_id IS DISTINCT FROM c.customer_id
      )
),
"""
    + _STORE_MESSAGE_WRITE_EVENT
    + """,
touched AS (
    UPDATE conversations AS c
    SET status = 'open', snoozed_until = NULL, resolved_at = NULL,
        channel_ids = CASE
            WHEN c.channel_ids::jsonb @> jsonb_build_array(CAST(:channel_id AS varchar))
            THEN c.channel_ids
            ELSE (c.channel_ids::jsonb || jsonb_build_array(CAST(:channel_id AS varchar)))::json
        END,
        last_channel_id = :channel_id, last_message_at = :now, last_inbound_at = :now,
        updated_at = :now
    FROM msg
    WHERE c.id = msg.conversation_id
    RETURNING c.id
)"""
    + _REPORT
)

_NEW_SENDER_SQL = (
    """
WITH link AS (
    INSERT INTO identities (id, tenant_id, customer_id, kind, value, created_at)
    SELECT :identity_id, :tenant_id, :customer_id, :kind, :value, :now
    WHERE NOT EXISTS (
        SELECT 1 FROM blocked_values
        WHERE tenant_id = CAST(:tenant_id AS varchar) AND kind = CAST(:kind AS varchar)
          AND value = CAST(:value AS varchar)
    ) AND NOT EXISTS (
        SELECT 1 FROM messages
        WHERE tenant_id = CAST(:tenant_id AS varchar)
          AND channel_id = CAST(:channel_id AS varchar)
          AND external_id = CAST(:external_id AS varchar)
    ) AND NOT EXISTS (
        -- The other identities the message proves must be nobody's yet, and not blocked.
        -- LATERAL ... LIMIT 1 keeps these one index probe per value: as a join, PostgreSQL's
        -- generic plan may hash every identity of the tenant on each call instead.
        SELECT 1
        FROM unnest(CAST(:extra_kinds AS varchar[]), CAST(:extra_values AS varchar[]))
            AS extra(kind, value)
        CROSS JOIN LATERAL (
            SELECT 1 FROM identities AS j
            WHERE j.tenant_id = CAST(:tenant_id AS varchar) AND j.kind = extra.kind
              AND j.value = extra.value
            UNION ALL
            SELECT 1 FROM blocked_values AS b
            WHERE b.tenant_id = CAST(:tenant_id AS varchar) AND b.kind = extra.kind
              AND b.value = extra.value
            LIMIT 1
        ) AS taken
    )
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING customer_id
),
extra_link AS (
    -- A concurrent first message that links one of these values first wins it; the next
    -- message from this sender then finds it elsewhere and resolution merges the two.
    INSERT INTO identities (id, tenant_id, customer_id, kind, value, created_at)
    SELECT extra.id, :tenant_id, link.customer_id, extra.kind, extra.value, :now
    FROM link, unnest(
        CAST(:extra_ids AS varchar[]),
        CAST(:extra_kinds AS varchar[]),
        CAST(:extra_values AS varchar[])
    ) AS extra(id, kind, value)
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING id
),
customer AS (
    INSERT INTO customers (
        id, tenant_id, name, search_name, language, traits, created_at, updated_at, merged_into_id
    )
    SELECT link.customer_id, :tenant_id, :name, :search_name, NULL, CAST('{}' AS json),
        :now, :now, NULL
    FROM link
    RETURNING id
),
conv AS (
    INSERT INTO conversations (
        id, tenant_id, customer_id, status, snoozed_until, assignee_id, channel_ids,
        last_channel_id, created_at, updated_at, last_message_at, last_inbound_at, resolved_at,
        merged_into_id
    )
    SELECT :conversation_id, :tenant_id, link.customer_id, 'open', NULL, NULL,
        json_build_array(CAST(:channel_id AS varchar)), :channel_id, :now, :now, :now, :now,
        NULL, NULL
    FROM link
    RETURNING id, customer_id
),"""
    + _STORE_MESSAGE_WRITE_EVENT
    + _REPORT
)


_KNOWN_SENDER = numbered(_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL)
_NEW_SENDER = numbered(_NEW_SENDER_SQL)


@dataclass(frozen=True, slots=True)
class FastReceipt:
    conversation_id: str
    customer_id: str
    # None when the message was stored by an earlier delivery.
    message_id: str | None


async def receive_in_one_statement(
    connection: AsyncConnection,
    *,
    tenant_id: str,
    channel_id: str,
    channel_kind: str,
    sender_kind: str,
    sender_value: str,
    sender_name: str | None,
    external_id: str,
    text_: str,
    attachments: list[dict[str, Any]],
    sent_at: datetime,
    moment: datetime,
    allow_new_sender: bool = True,
    extra_identities: Sequence[tuple[str, str]] = (),
) -> FastReceipt | None:
    """Store the message if its sender is known with an active conversation, or is new (unless
    ``allow_new_sender`` is false); ``None`` (nothing written) for every other case."""
    values = {
        "tenant_id": tenant_id,
        "kind": sender_kind,
        "value": sender_value,
        "message_id": new_id(),
        "channel_id": channel_id,
        "channel_kind": channel_kind,
        "external_id": external_id,
        "address": f"{sender_kind}:{sender_value}",
        "text": text_,
        "attachments": json.dumps(attachments),
        "sent_at": sent_at,
        "now": moment,
        "event_id": new_id(),
        "transition": "continued",
        "extra_kinds": [kind for kind, _ in extra_identities],
        "extra_values": [value for _, value in extra_identities],
    }
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    statement, parameters = _KNOWN_SENDER
    row = await driver.fetchrow(statement, *(values[name] for name in parameters))
    if row is None and allow_new_sender:
        values.update(
            extra_ids=[new_id() for _ in extra_identities],
            identity_id=new_id(),
            customer_id=new_id(),
            conversation_id=new_id(),
            name=sender_name,
            search_name=search_key(sender_name) if sender_name else None,
            transition="new",
        )
        statement, parameters = _NEW_SENDER
        row = await driver.fetchrow(statement, *(values[name] for name in parameters))
    if row is None:
        return None
    return FastReceipt(row["conversation_id"], row["customer_id"], row["message_id"])

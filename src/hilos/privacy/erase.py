"""Erasing a customer (GDPR article 17: the right to erasure), aggregates kept.

What it does is ``spec``'s list, applied to the customer and every profile merged into it, in
the caller's one transaction (nothing half-erased): identities and web chat visitors deleted,
names, texts, addresses and free-form JSON cleared or redacted, while ids, statuses, amounts,
scores and times stay, so every KPI computed before the erasure is computed the same after it.
Besides the per-table rules it

- withdraws every consent still granted (a row with source ``erasure``: the fact stays),
- fails the replies still waiting to be sent (``customer_erased``), ends the customer's active
  journey runs and skips their survey invitations not yet sent, so nothing reaches out again,
- deletes the stored files only this customer's messages named,
- redacts the copies of events (outbox, webhook deliveries) that mention the customer,
- records ``customer.erased`` in the audit log (ids and counts only) and emits the event
  ``customer.erased`` (ids only), so the tenant's own systems can erase too.

The profile row stays, anonymous (no name, no identities, no traits), because orders,
conversations and answers still point at its id; ``GET /v1/customers/{id}`` shows it so.
Identities are deleted rather than kept as keyed hashes: an erased person who comes back is a
new customer, as Zendesk and Chatwoot treat them; a tenant that must refuse someone uses a
blocked value, which is its own decision and visible as such.

Erasing again changes nothing: the audit log knows the customer was erased, and the call answers
that first erasure. JSON is redacted in Python (SQL cannot tell a free-text string from a code
portably), a page of rows at a time with one ``UPDATE`` per page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    case,
    cast,
    delete,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.auth import Principal
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.models import Consent, Customer
from hilos.models import metadata
from hilos.privacy import audit
from hilos.privacy.audit import Actor
from hilos.privacy.export import FILE_URL, files_named
from hilos.privacy.rows import pages, profile_ids, rows_of
from hilos.privacy.spec import MARKER, PARTS, STORED_FILES, Delete, Keep, Part, Scrub, part

ERASED_REASON = "customer_erased"
MAX_REASON_LENGTH = 500

# JSON keys whose string values are codes of the business (a status, a channel, a currency),
# kept when they look like one: a short token without spaces, "@" or "+".
CODE_KEYS = frozenset(
    {
        "automated",
        "category_code",
        "channel",
        "channel_kind",
        "code",
        "currency",
        "direction",
        "event",
        "fulfilment",
        "intent",
        "interaction",
        "kind",
        "label",
        "language",
        "location",
        "method",
        "number",
        "outcome",
        "previous_status",
        "previous_tier",
        "purpose",
        "reason",
        "resolution",
        "rule",
        "sku",
        "source",
        "status",
        "step_type",
        "tier",
        "topic",
        "type",
    }
)
_CODE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_HILOS_ID = re.compile(r"[0-9a-f]{32}")


def _kept_string(key: str | None, value: str) -> bool:
    if key is None:
        return False
    if key == "id" or key.endswith(("_id", "_ids")):
        return bool(_HILOS_ID.fullmatch(value))
    if key == "at" or key.endswith("_at"):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return key in CODE_KEYS and bool(_CODE.fullmatch(value))


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with every string that could be free text replaced by the marker.

    Numbers, booleans and nulls stay (durations, amounts, flags), and so do Hilos ids under
    ``*_id`` keys, timestamps under ``*_at`` keys and short codes under ``CODE_KEYS``: what the
    KPIs and the 360° view need to count and show an entry without saying who it was.
    """
    if isinstance(value, dict):
        return {name: redact(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        return value if _kept_string(key, value) else MARKER
    return value


@dataclass(slots=True)
class ErasureResult:
    customer_id: str
    customer_ids: list[str]
    erased_at: datetime
    audit_id: str
    already_erased: bool
    rows: dict[str, int] = field(default_factory=dict)


# Rules SQL cannot apply portably: they look at each value.
IN_PYTHON = frozenset({"redact", "code"})


def _rewrite(rule: str, value: Any) -> Any:
    if rule == "redact":
        return redact(value)
    # "code": a short code stays (an order's status, "abandoned"); any other text goes.
    if value is None or (isinstance(value, str) and _CODE.fullmatch(value)):
        return value
    return MARKER


def _scrub_value(table: Table, column: str, rule: str) -> Any:
    target = table.c[column]
    if rule == "null":
        return None
    if rule == "empty":
        return {}
    if rule == "marker":
        # An empty text (a call without transcript) stays empty: there was nothing to erase.
        return case((or_(target.is_(None), target == ""), target), else_=MARKER)
    raise ValueError(rule)


async def _scrub(session: AsyncSession, spec: Part, condition: ColumnElement[bool]) -> int:
    assert isinstance(spec.erasure, Scrub)
    table = spec.table
    touched = 0
    simple = {c: r for c, r in spec.erasure.columns.items() if r not in IN_PYTHON}
    rewritten = {c: r for c, r in spec.erasure.columns.items() if r in IN_PYTHON}
    if rewritten:
        # Rewritten in Python, a page at a time, one executemany per page.
        (key,) = table.primary_key.columns
        statement = (
            update(table)
            .where(key == bindparam("row_key"))
            .values({column: bindparam(f"new_{column}") for column in rewritten})
        )
        async for page in pages(session, table, condition, columns=list(rewritten)):
            changes = []
            for row in page:
                values = {
                    f"new_{column}": _rewrite(rule, row[column])
                    for column, rule in rewritten.items()
                }
                if any(values[f"new_{column}"] != row[column] for column in rewritten):
                    changes.append({"row_key": row[key.name], **values})
            if changes:
                await session.execute(statement, changes)
                touched += len(changes)
    if simple:
        result = await session.execute(
            update(table)
            .where(condition)
            .values({column: _scrub_value(table, column, rule) for column, rule in simple.items()})
        )
        touched = max(touched, _rowcount(result))
    return touched


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if count and count > 0 else 0


async def _apply(
    session: AsyncSession, tenant: TenantContext, spec: Part, customer_ids: Sequence[str]
) -> int:
    condition = rows_of(spec, tenant, customer_ids)
    if isinstance(spec.erasure, Keep):
        return 0
    if isinstance(spec.erasure, Delete):
        return _rowcount(await session.execute(delete(spec.table).where(condition)))
    return await _scrub(session, spec, condition)


async def _file_ids(
    session: AsyncSession, tenant: TenantContext, customer_ids: Sequence[str]
) -> set[str]:
    messages = part("messages")
    found: set[str] = set()
    async for page in pages(
        session,
        messages.table,
        rows_of(messages, tenant, customer_ids),
        columns=["attachments"],
    ):
        found |= files_named(page)
    return found


async def _delete_files(
    session: AsyncSession,
    tenant: TenantContext,
    customer_ids: Sequence[str],
    file_ids: set[str],
) -> int:
    """Delete the files only these customers' messages named (a tenant keeps one copy of
    identical bytes, which another customer's message may name too)."""
    if not file_ids:
        return 0
    messages = part("messages")
    table = messages.table
    mine = rows_of(messages, tenant, customer_ids)
    text = cast(table.c.attachments, Text)
    others = await session.execute(
        select(table.c.attachments).where(
            table.c.tenant_id == tenant.id,
            not_(mine),
            or_(*(text.contains(f"/v1/files/{file_id}") for file_id in sorted(file_ids))),
        )
    )
    shared = {
        file_id
        for (attachments,) in others.all()
        for file_id in FILE_URL.findall(json.dumps(attachments))
    }
    doomed = sorted(file_ids - shared)
    if not doomed:
        return 0
    files = metadata.tables[STORED_FILES]
    result = await session.execute(
        delete(files).where(files.c.tenant_id == tenant.id, files.c.id.in_(doomed))
    )
    return _rowcount(result)


async def _withdraw_consents(
    session: AsyncSession, tenant: TenantContext, survivor_id: str, customer_ids: Sequence[str]
) -> int:
    history = (
        (
            await session.execute(
                select(Consent)
                .where(Consent.tenant_id == tenant.id, Consent.customer_id.in_(customer_ids))
                .order_by(Consent.recorded_at, Consent.id)
            )
        )
        .scalars()
        .all()
    )
    granted = [c for c in customers.current_consents(history) if c.granted]
    if granted:
        moment = now()
        await session.execute(
            insert(Consent),
            [
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "customer_id": survivor_id,
                    "purpose": consent.purpose,
                    "channel_kind": consent.channel_kind,
                    "granted": False,
                    "source": "erasure",
                    "recorded_at": moment,
                }
                for consent in granted
            ],
        )
    return len(granted)


async def _stop_outreach(
    session: AsyncSession, tenant: TenantContext, customer_ids: Sequence[str]
) -> dict[str, int]:
    """Nothing is sent to the person again: queued replies fail, journeys end, surveys skip."""
    moment = now()
    messages = part("messages")
    table = messages.table
    failed = await session.execute(
        update(table)
        .where(
            rows_of(messages, tenant, customer_ids),
            table.c.direction == "outbound",
            table.c.status.in_(("queued", "sending")),
        )
        .values(
            status="failed",
            status_at=moment,
            next_attempt_at=None,
            error={"code": ERASED_REASON, "message": "the customer's data was erased"},
        )
    )
    runs = part("journey_runs").table
    exited = await session.execute(
        update(runs)
        .where(
            runs.c.tenant_id == tenant.id,
            runs.c.customer_id.in_(customer_ids),
            runs.c.status == "active",
        )
        .values(
            status="exited",
            exit_reason=ERASED_REASON,
            next_at=None,
            ended_at=moment,
            updated_at=moment,
        )
    )
    invitations = part("survey_invitations").table
    skipped = await session.execute(
        update(invitations)
        .where(
            invitations.c.tenant_id == tenant.id,
            invitations.c.customer_id.in_(customer_ids),
            invitations.c.status == "pending",
        )
        .values(status="skipped", reason=ERASED_REASON)
    )
    return {
        "messages_failed": _rowcount(failed),
        "journey_runs_exited": _rowcount(exited),
        "survey_invitations_skipped": _rowcount(skipped),
    }


async def _redact_copies(
    session: AsyncSession, tenant: TenantContext, customer_ids: Sequence[str]
) -> dict[str, int]:
    """Redact the outbox's events and the webhook deliveries that mention the customer.

    They are found by the customer's ids in their JSON text: one scan of the tenant's rows per
    table, which an erasure (rare, and an administrator's act) can afford.
    """
    counts: dict[str, int] = {}
    outbox = metadata.tables["outbox_events"]
    mentions = or_(*(cast(outbox.c.payload, Text).contains(i) for i in customer_ids))
    rows = await session.execute(
        select(outbox.c.id, outbox.c.payload).where(outbox.c.tenant_id == tenant.id, mentions)
    )
    changes = [
        {"row_key": row_id, "new_payload": redact(payload)}
        for row_id, payload in rows.all()
        if redact(payload) != payload
    ]
    if changes:
        await session.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("row_key"))
            .values(payload=bindparam("new_payload")),
            changes,
        )
    counts["outbox_events"] = len(changes)
    deliveries = metadata.tables["webhook_deliveries"]
    rows = await session.execute(
        select(deliveries.c.id, deliveries.c.body).where(
            deliveries.c.tenant_id == tenant.id,
            or_(*(deliveries.c.body.contains(i) for i in customer_ids)),
        )
    )
    body_changes = []
    for row_id, body in rows.all():
        try:
            document = json.loads(body)
        except ValueError:
            new_body = MARKER
        else:
            new_body = json.dumps(redact(document), separators=(",", ":"), ensure_ascii=False)
        if new_body != body:
            body_changes.append({"row_key": row_id, "new_body": new_body})
    if body_changes:
        await session.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("row_key"))
            .values(body=bindparam("new_body"), last_response=None),
            body_changes,
        )
    counts["webhook_deliveries"] = len(body_changes)
    return counts


async def _lock_customer(session: AsyncSession, customer_id: str) -> None:
    """Two erasures of one customer at once: the second waits, then finds the first's entry.

    (SQLite needs nothing: its transactions already hold the database's write lock.)"""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            select(Customer.id).where(Customer.id == customer_id).with_for_update()
        )


async def erase_customer(
    session: AsyncSession,
    tenant: TenantContext,
    actor: Actor | Principal,
    *,
    customer_id: str,
    reason: str | None = None,
) -> ErasureResult:
    """Erase the customer (or the survivor it was merged into) and its merged profiles."""
    customer = await customers.live_customer(session, tenant, customer_id)
    survivor_id = customer.id
    await _lock_customer(session, survivor_id)
    ids = await profile_ids(session, tenant, survivor_id)
    previous = await audit.latest(
        session, tenant.id, action="customer.erased", subject_type="customer", subject_ids=ids
    )
    if previous is not None:
        audit.nothing_to_record(session)
        return ErasureResult(
            customer_id=previous.subject_id or survivor_id,
            customer_ids=list(previous.details.get("customer_ids") or ids),
            erased_at=previous.occurred_at,
            audit_id=previous.id,
            already_erased=True,
            rows=dict(previous.details.get("rows") or {}),
        )
    file_ids = await _file_ids(session, tenant, ids)
    rows: dict[str, int] = {}
    for spec in PARTS:
        rows[spec.table_name] = await _apply(session, tenant, spec, ids)
    rows[STORED_FILES] = await _delete_files(session, tenant, ids, file_ids)
    rows["consents_withdrawn"] = await _withdraw_consents(session, tenant, survivor_id, ids)
    rows.update(await _stop_outreach(session, tenant, ids))
    rows.update(await _redact_copies(session, tenant, ids))
    await session.execute(
        update(Customer)
        .where(Customer.tenant_id == tenant.id, Customer.id.in_(ids))
        .values(updated_at=now())
    )
    rows = {name: count for name, count in rows.items() if count}
    details: dict[str, Any] = {"customer_ids": ids, "rows": rows}
    if reason:
        details["reason"] = reason[:MAX_REASON_LENGTH]
    moment = now()
    entry_id = await audit.record(
        session,
        actor,
        "customer.erased",
        subject_type="customer",
        subject_id=survivor_id,
        details=details,
        occurred_at=moment,
    )
    await emit(
        session,
        tenant_id=tenant.id,
        topic="customer.erased",
        payload={"customer_id": survivor_id, "customer_ids": ids},
    )
    # The ORM's copies of rows changed by the statements above are stale now.
    session.expire_all()
    return ErasureResult(
        customer_id=survivor_id,
        customer_ids=ids,
        erased_at=moment,
        audit_id=entry_id,
        already_erased=False,
        rows=rows,
    )

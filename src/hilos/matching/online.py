"""The online check: the worker stage that checks new and changed profiles for duplicates.

It reads what changed since its position, in the order things changed: profiles by
``(updated_at, id)`` (a new profile, a new name or trait, a merge's survivor) and identities by
id (an email or phone linked to a profile that was not otherwise touched; ids are time-ordered).
It groups them by tenant and runs ``service.check_profiles``, then moves its position, all in
one transaction: a crash repeats the batch, which changes nothing twice (keys are replaced,
suggestions are one per pair, a merged profile is no longer live).

Nothing of this runs on the request that changed the profile: identify and inbound messages pay
nothing for it. The price is a delay of about one worker pass plus ``SETTLE_SECONDS``: a change
is read once it is that old, so a transaction that stamped its rows a little before committing
is not skipped. With several workers on PostgreSQL the position's row is claimed with
``SKIP LOCKED``: one worker checks at a time, the others go on with their other stages.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.clock import now
from hilos.core.errors import NotFound
from hilos.core.tenancy import load_tenant
from hilos.customers.models import Customer, Identity
from hilos.customers.service import dialect_insert
from hilos.matching import service
from hilos.matching.models import MatchCheckCursor
from hilos.matching.records import EMAIL_KINDS, PHONE_KINDS

log = structlog.get_logger(__name__)

CURSOR = "online"
BATCH = 200
SETTLE_SECONDS = 2.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _id_at(moment: datetime) -> str:
    """The smallest id ``hilos.core.ids.new_id`` could make at ``moment``."""
    return f"{int(moment.timestamp() * 1000):012x}" + "0" * 20


async def _claim(session: AsyncSession) -> MatchCheckCursor | None:
    statement = select(MatchCheckCursor).where(MatchCheckCursor.name == CURSOR)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is not None:
        return row
    await session.execute(
        dialect_insert(session, MatchCheckCursor)
        .values(name=CURSOR, after_updated_at=_EPOCH, after_customer="", after_identity="")
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def move_cursor(session: AsyncSession, *, to: datetime) -> None:
    """Put the position at ``to`` (for operators and tests: nothing before it is checked)."""
    row = await _claim(session)
    if row is not None:
        row.after_updated_at, row.after_customer, row.after_identity = to, "", _id_at(to)
        await session.flush()


async def check_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settle_seconds: float = SETTLE_SECONDS,
    batch: int = BATCH,
) -> dict[str, int]:
    """Check the next batch of changed profiles; what was done, for the worker's log."""
    async with sessionmaker() as session, session.begin():
        cursor = await _claim(session)
        if cursor is None:
            return {"matching_checked": 0}
        bound = now() - timedelta(seconds=settle_seconds)
        changed = (
            await session.execute(
                select(Customer.tenant_id, Customer.id, Customer.updated_at)
                .where(
                    tuple_(Customer.updated_at, Customer.id)
                    > tuple_(cursor.after_updated_at, cursor.after_customer),
                    Customer.updated_at <= bound,
                )
                .order_by(Customer.updated_at, Customer.id)
                .limit(batch)
            )
        ).all()
        linked = (
            await session.execute(
                select(Identity.tenant_id, Identity.customer_id, Identity.id, Identity.kind)
                .where(Identity.id > cursor.after_identity, Identity.id < _id_at(bound))
                .order_by(Identity.id)
                .limit(batch)
            )
        ).all()
        if not changed and not linked:
            return {"matching_checked": 0}
        by_tenant: dict[str, set[str]] = defaultdict(set)
        for tenant_id, customer_id, _ in changed:
            by_tenant[tenant_id].add(customer_id)
        for tenant_id, customer_id, _, kind in linked:
            if kind in (*EMAIL_KINDS, *PHONE_KINDS):
                by_tenant[tenant_id].add(customer_id)
        outcome = service.CheckOutcome()
        for tenant_id, customer_ids in sorted(by_tenant.items()):
            try:
                tenant = await load_tenant(session, tenant_id)
            except NotFound:
                continue
            # One tenant's trouble must not stop the others' checks nor the position.
            try:
                async with session.begin_nested():
                    outcome.add(await service.check_profiles(session, tenant, customer_ids))
            except Exception:
                log.exception("matching.check_failed", tenant_id=tenant_id)
        if changed:
            _, last_id, last_at = changed[-1]
            cursor.after_updated_at, cursor.after_customer = last_at, last_id
        if linked:
            cursor.after_identity = linked[-1][2]
        await session.flush()
    return {
        "matching_checked": outcome.checked,
        "matching_suggested": outcome.suggested,
        "matching_auto_merged": outcome.auto_merged,
    }

"""The transactional outbox: ``emit`` writes an event beside the change; ``relay`` publishes it.

Events leave only after their transaction commits, so no listener sees a change that was rolled
back. The relay claims rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers
share the work; each event carries its outbox id, which the bus uses to drop a re-publication
after a crash between publish and mark.

A domain that must keep durable state in step with events (SLA clocks) registers an outbox
consumer: the relay hands it each batch's events of its topics inside the relay's own
transaction, before they are marked published. Its writes commit together with the mark, so it
sees every event exactly once and in order, without a database session of its own — which a bus
listener cannot have on SQLite's single connection, and which a listener on the in-process bus
would lose in a crash after the mark.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from hilos.core import metrics
from hilos.core.bus import Bus, BusEvent
from hilos.core.clock import as_utc, now
from hilos.core.db import one_of
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent

_INSERT_EVENT = insert(cast(Table, OutboxEvent.__table__))
# A backlog this large is an incident whatever its exact size; counting further costs more.
BACKLOG_COUNT_CAP = 100_000

log = structlog.get_logger(__name__)

OutboxConsumer = Callable[[AsyncSession, Sequence[OutboxEvent]], Awaitable[None]]
_CONSUMERS: dict[str, tuple[frozenset[str], OutboxConsumer]] = {}


def register_consumer(name: str, *, topics: Iterable[str], consume: OutboxConsumer) -> None:
    """Have the relay call ``consume(session, events)`` with each batch's events of ``topics``.

    ``topics`` holds exact topics, patterns such as ``order.*`` (every topic that starts with
    ``order.``) or ``*`` (every topic); see ``topic_matcher``.

    A consumer that raises is logged and its writes are rolled back to a savepoint; the events
    are published all the same, so one broken consumer cannot hold up the outbox.
    """
    _CONSUMERS[name] = (frozenset(topics), consume)


def topic_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of whether a topic is one of ``patterns``: an exact topic, ``family.*`` (any
    topic starting with ``family.``, at any depth) or ``*`` (any topic)."""
    exact = frozenset(patterns)
    if "*" in exact:
        return lambda _topic: True
    prefixes = tuple(pattern[:-1] for pattern in exact if pattern.endswith(".*"))
    if not prefixes:
        return exact.__contains__
    return lambda topic: topic in exact or topic.startswith(prefixes)


class _ConsumerFailed(Exception):
    """A consumer raised in a batch run without savepoints: the batch runs again with them."""


async def _run_consumers(
    session: AsyncSession, events: Sequence[OutboxEvent], *, isolated: bool
) -> None:
    for name, (topics, consume) in list(_CONSUMERS.items()):
        wanted = topic_matcher(topics)
        mine = [event for event in events if wanted(event.topic)]
        if not mine:
            continue
        if not isolated:
            try:
                await consume(session, mine)
            except Exception as error:
                raise _ConsumerFailed(name) from error
            continue
        try:
            async with session.begin_nested():
                await consume(session, mine)
        except Exception:
            metrics.OUTBOX_CONSUMER_FAILURES.labels(name).inc()
            log.exception("outbox.consumer_failed", consumer=name, events=len(mine))


async def emit(
    session: AsyncSession,
    *,
    tenant_id: str,
    topic: str,
    payload: dict[str, Any],
    connection: AsyncConnection | None = None,
) -> str:
    """Write an event that the relay publishes once this transaction commits.

    ``connection`` is the session's connection when the caller already holds it (hot paths).
    """
    event_id = new_id()
    connection = connection or await session.connection()
    await connection.execute(
        _INSERT_EVENT,
        {
            "id": event_id,
            "tenant_id": tenant_id,
            "topic": topic,
            "payload": payload,
            "created_at": now(),
        },
    )
    session.info["outbox_written"] = True
    return event_id


async def relay(
    sessionmaker: async_sessionmaker[AsyncSession], bus: Bus, *, batch: int = 500
) -> int:
    """Publish up to ``batch`` unpublished events in order; return how many were published.

    The consumers run without savepoints first: a savepoint and its release for each consumer
    of each batch were two round trips apiece, for failures that almost never happen. If one
    fails, the whole batch is rolled back and runs again with each consumer in a savepoint of
    its own, so that only the failing consumer's writes are undone.
    """
    try:
        return await _relay(sessionmaker, bus, batch=batch, isolated=False)
    except _ConsumerFailed:
        return await _relay(sessionmaker, bus, batch=batch, isolated=True)


async def _relay(
    sessionmaker: async_sessionmaker[AsyncSession], bus: Bus, *, batch: int, isolated: bool
) -> int:
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        statement = (
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(batch)
        )
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        events = (await session.execute(statement)).scalars().all()
        await _run_consumers(session, events, isolated=isolated)
        await bus.publish_batch(
            [
                BusEvent(
                    topic=event.topic,
                    tenant_id=event.tenant_id,
                    event_id=event.id,
                    payload=event.payload,
                )
                for event in events
            ]
        )
        published_at = now()
        if events:
            # No "evaluate" of the session's loaded events against the statement: nothing reads
            # them after this, and that walk cost the relay 4 % of its CPU.
            await session.execute(
                update(OutboxEvent)
                .where(one_of(dialect, OutboxEvent.id, [event.id for event in events]))
                .values(published_at=published_at)
                .execution_options(synchronize_session=False)
            )
    if events:
        metrics.count_published(events, at=published_at)
        metrics.OUTBOX_RELAY_BATCH.observe(time.perf_counter() - started)
    return len(events)


async def outbox_backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many events wait to be relayed (counted up to ``BACKLOG_COUNT_CAP``) and when the
    oldest was written: one statement on the index of unpublished events."""
    waiting = select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
    counted = select(func.count()).select_from(waiting.limit(BACKLOG_COUNT_CAP).subquery())
    oldest = (
        select(OutboxEvent.created_at)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(1)
    )
    row = (await session.execute(select(counted.scalar_subquery(), oldest.scalar_subquery()))).one()
    return int(row[0] or 0), None if row[1] is None else as_utc(row[1])

"""The transactional outbox: ``emit`` writes an event beside the change; ``relay`` publishes it.

Events leave only after their transaction commits, so no listener sees a change that was rolled
back. The relay claims rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers
share the work; each event carries its outbox id, which the bus uses to drop a re-publication
after a crash between publish and mark.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from hilos.core.bus import Bus
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent

_INSERT_EVENT = insert(cast(Table, OutboxEvent.__table__))


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
    """Publish up to ``batch`` unpublished events in order; return how many were published."""
    async with sessionmaker() as session, session.begin():
        statement = (
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        events = (await session.execute(statement)).scalars().all()
        for event in events:
            await bus.publish(
                topic=event.topic,
                tenant_id=event.tenant_id,
                event_id=event.id,
                payload=event.payload,
            )
        if events:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([event.id for event in events]))
                .values(published_at=now())
            )
        return len(events)

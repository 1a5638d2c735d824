"""Outbox consumers: applied in the relay's transaction, once per event, and a broken one does
not hold up the outbox or the other consumers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core import outbox
from hilos.core.bus import BusEvent, InProcessBus
from hilos.core.models import OutboxEvent
from tests.conftest import TenantHandle


@pytest.mark.parametrize("failing_first", [True, False], ids=["failing-first", "failing-last"])
async def test_consumers_see_each_event_once_and_a_failing_one_stops_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
    failing_first: bool,
) -> None:
    applied: list[str] = []

    async def record(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        # Writes in the relay's transaction: they commit with the "published" mark.
        for event in events:
            if event.tenant_id == tenant.id:
                applied.append(event.payload["n"])
                await outbox.emit(
                    session,
                    tenant_id=tenant.id,
                    topic="test.echo",
                    payload={"n": event.payload["n"]},
                )

    async def explode(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        await outbox.emit(session, tenant_id=tenant.id, topic="test.echo", payload={"n": "lost"})
        raise RuntimeError("a broken consumer")

    # In the registry's order: when the broken one runs last, the other has already written
    # (without savepoints) when it raises, and the batch runs again, each in a savepoint.
    consumers = [("explode", explode), ("record", record)]
    for name, consume in consumers if failing_first else reversed(consumers):
        monkeypatch.setitem(outbox._CONSUMERS, name, (frozenset({"test.ping"}), consume))
    async with sessionmaker() as session, session.begin():
        for n in ("one", "two"):
            await outbox.emit(session, tenant_id=tenant.id, topic="test.ping", payload={"n": n})

    bus = InProcessBus()
    published: list[BusEvent] = []

    async def collect(event: BusEvent) -> None:
        if event.tenant_id == tenant.id:
            published.append(event)

    await bus.subscribe(durable="test", handler=collect)
    while await outbox.relay(sessionmaker, bus):
        pass

    # Ran once per event, or once more for the batch run again; written once either way.
    assert applied == (["one", "two"] if failing_first else ["one", "two", "one", "two"])
    assert [(e.topic, e.payload["n"]) for e in published] == [
        ("test.ping", "one"),
        ("test.ping", "two"),
        ("test.echo", "one"),
        ("test.echo", "two"),
    ]
    async with sessionmaker() as session:
        left = await session.execute(
            select(OutboxEvent.id).where(
                OutboxEvent.tenant_id == tenant.id, OutboxEvent.published_at.is_(None)
            )
        )
        assert left.first() is None

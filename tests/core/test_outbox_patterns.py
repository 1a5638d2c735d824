"""Outbox consumers may subscribe to topic families (``order.*``) or to everything (``*``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core import outbox
from hilos.core.bus import InProcessBus
from hilos.core.models import OutboxEvent
from tests.conftest import TenantHandle


def test_a_pattern_matches_its_family_at_any_depth_and_nothing_else() -> None:
    orders = outbox.topic_matcher(["order.*", "stock.changed"])
    assert orders("order.placed")
    assert orders("order.line.cancelled")
    assert orders("stock.changed")
    assert not orders("order")
    assert not orders("orders.placed")
    assert not orders("stock.changed.extra")
    assert not orders("return.created")
    everything = outbox.topic_matcher(["*"])
    assert everything("order.placed")
    assert everything("stock.changed")
    exact = outbox.topic_matcher(["stock.changed"])
    assert exact("stock.changed")
    assert not exact("stock.changes")


async def test_a_consumer_of_a_family_gets_only_that_family(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def record(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        seen.extend(event.topic for event in events if event.tenant_id == tenant.id)

    monkeypatch.setitem(outbox._CONSUMERS, "orders", (frozenset({"order.*"}), record))
    async with sessionmaker() as session, session.begin():
        for topic in ("order.placed", "stock.changed", "order.shipped", "orderly.thing"):
            await outbox.emit(session, tenant_id=tenant.id, topic=topic, payload={})
    while await outbox.relay(sessionmaker, InProcessBus()):
        pass
    assert seen == ["order.placed", "order.shipped"]

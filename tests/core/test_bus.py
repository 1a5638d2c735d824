"""Events leave through the outbox after commit and reach the bus once (in-process and NATS)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.bus import BusEvent, NatsBus
from hilos.core.ids import new_id
from hilos.core.outbox import emit, relay
from tests.conftest import NATS_URL, TenantHandle, add_channel, inbound


async def test_a_received_message_is_published_after_commit(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    seen: list[BusEvent] = []

    async def collect(event: BusEvent) -> None:
        if event.tenant_id == tenant.id:
            seen.append(event)

    await app.state.bus.subscribe(durable=f"test-{tenant.id}", handler=collect)
    channel = await add_channel(client, tenant, "web_chat")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id="c1",
            kind="anonymous",
            value="visitor-1",
        )
    ).json()
    bad = await inbound(
        client, tenant, channel_id=channel, external_id="c2", kind="email", value="not an email"
    )
    assert bad.status_code == 422
    await app.state.worker.run_once()
    assert [(e.topic, e.payload["message_id"]) for e in seen] == [
        ("message.received", received["message_id"])
    ]
    await app.state.worker.run_once()
    assert len(seen) == 1


class TenantEvents:
    """What a durable consumer hears of one tenant, up to its ``test.sentinel`` event."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.received: list[BusEvent] = []
        self.sentinel_seen = asyncio.Event()

    async def hear(self, event: BusEvent) -> None:
        if event.tenant_id != self.tenant_id:
            return
        if event.topic == "test.sentinel":
            self.sentinel_seen.set()
            return
        self.received.append(event)

    async def until_sentinel(self, bus: NatsBus) -> list[BusEvent]:
        """Publish the sentinel and return what was heard before it."""
        await bus.publish(
            topic="test.sentinel", tenant_id=self.tenant_id, event_id=new_id(), payload={}
        )
        await asyncio.wait_for(self.sentinel_seen.wait(), timeout=30)
        return self.received


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_jetstream_delivers_each_outbox_event_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert NATS_URL is not None
    tenant_id = new_id()
    bus = NatsBus(NATS_URL)
    await bus.start()
    heard = TenantEvents(tenant_id)
    try:
        await bus.subscribe(durable=f"test-{tenant_id}", handler=heard.hear)
        async with sessionmaker() as session, session.begin():
            ids = [
                await emit(session, tenant_id=tenant_id, topic="test.thing", payload={"n": n})
                for n in range(3)
            ]
        assert await relay(sessionmaker, bus) >= 3
        # A relay that crashed after publishing but before marking publishes again:
        await bus.publish(
            topic="test.thing", tenant_id=tenant_id, event_id=ids[0], payload={"n": 0}
        )
        received = await heard.until_sentinel(bus)
        assert [e.event_id for e in received] == ids
        assert [e.payload["n"] for e in received] == [0, 1, 2]
    finally:
        await bus.close()


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_a_batch_reaches_jetstream_in_order_and_a_repeated_batch_adds_nothing() -> None:
    assert NATS_URL is not None
    tenant_id = new_id()
    bus = NatsBus(NATS_URL)
    await bus.start()
    heard = TenantEvents(tenant_id)
    events = [
        BusEvent(topic="test.thing", tenant_id=tenant_id, event_id=new_id(), payload={"n": n})
        for n in range(300)
    ]
    try:
        await bus.subscribe(durable=f"test-{tenant_id}", handler=heard.hear)
        await bus.publish_batch(events[:200])
        # A relay that rolled back after publishing its batch publishes it again, with more.
        await bus.publish_batch(events[100:])
        received = await heard.until_sentinel(bus)
        assert [e.payload["n"] for e in received] == list(range(300))
    finally:
        await bus.close()

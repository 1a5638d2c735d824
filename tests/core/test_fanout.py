"""The fan-out: every process hears the events its browsers' pushes need, each listener once."""

from __future__ import annotations

import asyncio

import pytest

from hilos.core.bus import BusEvent, Handler, InProcessBus, NatsBus
from hilos.core.fanout import Fanout
from hilos.core.ids import new_id
from tests.conftest import NATS_URL


class Heard:
    def __init__(self) -> None:
        self.topics: list[str] = []

    async def __call__(self, event: BusEvent) -> None:
        self.topics.append(event.topic)


async def publish(bus: InProcessBus | NatsBus, topic: str, tenant_id: str) -> None:
    await bus.publish(topic=topic, tenant_id=tenant_id, event_id=new_id(), payload={})


async def test_each_listener_hears_its_topics_once_and_a_failing_one_stops_nobody() -> None:
    bus = InProcessBus()
    fanout = Fanout(bus)
    console, chat = Heard(), Heard()

    async def broken(event: BusEvent) -> None:
        raise RuntimeError("a listener with a bug")

    await fanout.listen("broken", ["message.>"], broken)
    await fanout.listen("console", ["message.>", "message.sent", "conversation.>"], console)
    await fanout.listen("chat", ["message.sent"], chat)
    for topic in ("message.sent", "conversation.resolved", "customer.merged", "messages.x"):
        await publish(bus, topic, "t1")
    assert console.topics == ["message.sent", "conversation.resolved"]
    assert chat.topics == ["message.sent"]

    await fanout.stop("chat")
    await publish(bus, "message.sent", "t1")
    assert chat.topics == ["message.sent"]
    assert console.topics[-1] == "message.sent"
    await fanout.close()
    await publish(bus, "message.sent", "t1")
    assert len(console.topics) == 3


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_every_process_hears_every_event_over_nats() -> None:
    """Unlike a durable consumer, which shares events among processes, two fan-outs (two
    processes) both hear each event."""
    assert NATS_URL is not None
    tenant_id = new_id()
    publisher = NatsBus(NATS_URL)
    await publisher.start()
    fanouts = [Fanout(NatsBus(NATS_URL)), Fanout(NatsBus(NATS_URL))]
    heard = [Heard(), Heard()]
    done = [asyncio.Event(), asyncio.Event()]

    def listener(index: int) -> Handler:
        async def hear(event: BusEvent) -> None:
            if event.tenant_id != tenant_id:
                return
            if event.topic == "message.zz_sentinel":
                done[index].set()
            else:
                await heard[index](event)

        return hear

    try:
        for index, fanout in enumerate(fanouts):
            await fanout.listen("console", ["message.>", "message.sent"], listener(index))
        await publish(publisher, "message.sent", tenant_id)
        await publish(publisher, "conversation.open", tenant_id)
        await publish(publisher, "message.zz_sentinel", tenant_id)
        for event in done:
            await asyncio.wait_for(event.wait(), 10)
        assert heard[0].topics == heard[1].topics == ["message.sent"]
    finally:
        for fanout in fanouts:
            await fanout.close()
        await publisher.close()

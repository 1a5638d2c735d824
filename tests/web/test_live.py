"""The console's live updates over HTTP: ``GET /console/events`` as a browser's EventSource
reads it, from a real Uvicorn server (the in-process transport cannot stream).

What the page does with the events is in ``tests/e2e/browser``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hilos.app import create_app
from hilos.core.bus import BusEvent, NatsBus
from hilos.core.fanout import fanout_of
from hilos.core.outbox import relay
from hilos.core.settings import Settings
from hilos.web import live
from hilos.web.live import QUEUE_SIZE, ConsoleHub
from tests.conftest import NATS_URL, TenantHandle, add_channel, inbound
from tests.serving import serving
from tests.web.test_console import csrf_of, make_agent, sign_in


class EventStream:
    """The events of an open ``text/event-stream`` response, one JSON ``data`` at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        data: list[str] = []
        while True:
            line = await asyncio.wait_for(anext(self._lines), 10)
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                event: dict[str, Any] = json.loads("\n".join(data))
                return event

    async def ended(self) -> bool:
        """Whether the server closes the stream without another event."""
        try:
            while True:
                line = await asyncio.wait_for(anext(self._lines), 10)
                if line.startswith("data:"):
                    return False
        except StopAsyncIteration:
            return True


@pytest.fixture
async def live_base(app: Any) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


@asynccontextmanager
async def signed_in_browser(
    client: httpx.AsyncClient, tenant: TenantHandle, base: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A new agent of ``tenant``, signed in through the real server ``base``."""
    agent = await make_agent(client, tenant)
    async with httpx.AsyncClient(base_url=base) as browser:
        signed_in = await sign_in(browser, agent.email)
        assert signed_in.status_code == 303, signed_in.text
        yield browser


async def whatsapp_message(
    client: httpx.AsyncClient, tenant: TenantHandle, text: str = "Hola"
) -> dict[str, Any]:
    channel = await add_channel(client, tenant, "whatsapp")
    response = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600111222",
        text=text,
    )
    assert response.status_code == 200, response.text
    received: dict[str, Any] = response.json()
    return received


async def test_an_agent_hears_what_changes_in_their_business_and_nothing_of_another(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, app: Any, live_base: str
) -> None:
    other = await make_tenant("Otra tienda")
    async with (
        signed_in_browser(client, tenant, live_base) as browser,
        browser.stream("GET", "/console/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = EventStream(response)
        assert await events.next() == {"topic": "ready"}

        # Another business's customer writes first: had it leaked, it would come first.
        await whatsapp_message(client, other, "Secreto de otra tienda")
        ours = await whatsapp_message(client, tenant, "¿Tenéis talla M?")
        await relay(app.state.sessionmaker, app.state.bus)
        assert await events.next() == {
            "topic": "message.received",
            "conversation_id": ours["conversation_id"],
            "message_id": ours["message_id"],
        }

        reply = await client.post(
            f"/v1/conversations/{ours['conversation_id']}/messages",
            json={"text": "Sí, la tenemos"},
            headers=tenant.headers,
        )
        assert reply.status_code == 201, reply.text
        resolved = await client.patch(
            f"/v1/conversations/{ours['conversation_id']}",
            json={"status": "resolved"},
            headers=tenant.headers,
        )
        assert resolved.status_code == 200, resolved.text
        await relay(app.state.sessionmaker, app.state.bus)
        # Ids and topics only: the page reads the rest with the agent's own rights.
        assert await events.next() == {
            "topic": "message.queued",
            "conversation_id": ours["conversation_id"],
            "message_id": reply.json()["id"],
        }
        assert await events.next() == {
            "topic": "conversation.resolved",
            "conversation_id": ours["conversation_id"],
        }


async def test_the_stream_needs_a_live_session(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    refused = await client.get("/console/events")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_signed_in"

    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    inbox = await client.get("/console")
    signed_out = await client.post("/logout", data={"csrf_token": csrf_of(inbox)})
    assert signed_out.status_code == 303
    # The browser still holds the old cookie; the server no longer honours it.
    client.cookies.set("hilos_session", "no-longer-valid")
    assert (await client.get("/console/events")).status_code == 401


async def test_a_stream_ends_in_time_and_a_signed_out_agent_cannot_reopen_it(
    client: httpx.AsyncClient, tenant: TenantHandle, live_base: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(live, "STREAM_LIFETIME", 0.0)
    async with signed_in_browser(client, tenant, live_base) as browser:
        async with browser.stream("GET", "/console/events") as response:
            events = EventStream(response)
            ready = await events.next()
            assert ready == {"topic": "ready"}
            assert await events.ended()
        inbox = await browser.get("/console")
        await browser.post("/logout", data={"csrf_token": csrf_of(inbox)})
        # What an EventSource does when its stream ends: it asks again, and is refused.
        async with browser.stream("GET", "/console/events") as again:
            assert again.status_code == 401


async def test_a_page_that_cannot_keep_up_is_told_to_refresh_instead() -> None:
    hub = ConsoleHub(state=None)
    slow = hub.open("tenant-a")
    other = hub.open("tenant-b")
    for n in range(QUEUE_SIZE + 10):
        await hub.on_event(
            BusEvent(
                topic="message.received",
                tenant_id="tenant-a",
                event_id=str(n),
                payload={"conversation_id": "c1", "message_id": str(n)},
            )
        )
    assert slow.queue.qsize() == QUEUE_SIZE
    assert slow.take_missed()
    assert slow.queue.empty()
    assert other.queue.empty()
    assert not other.take_missed()
    hub.close(slow)
    hub.close(other)
    assert hub.count("tenant-a") == hub.count("tenant-b") == 0


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_a_change_relayed_by_a_worker_process_reaches_the_console_of_another_over_nats(
    client: httpx.AsyncClient, tenant: TenantHandle, engine: AsyncEngine
) -> None:
    """Two processes, each with its own bus as on separate machines: one serves the console,
    the other (the worker) relays the outbox to NATS."""
    assert NATS_URL is not None
    http_process = create_app(
        Settings(database_url=str(engine.url), bus_url=NATS_URL), engine=engine
    )
    worker_bus = NatsBus(NATS_URL)
    await worker_bus.start()
    try:
        async with (
            serving(http_process) as base,
            signed_in_browser(client, tenant, base) as browser,
            browser.stream("GET", "/console/events") as response,
        ):
            events = EventStream(response)
            assert await events.next() == {"topic": "ready"}
            ours = await whatsapp_message(client, tenant)
            await relay(http_process.state.sessionmaker, worker_bus)
            change = await events.next()
            while change.get("conversation_id") != ours["conversation_id"]:
                change = await events.next()
            assert change["topic"] == "message.received"
    finally:
        await fanout_of(http_process.state).close()
        await worker_bus.close()

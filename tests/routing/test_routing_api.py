"""Routing through the API: conversations offered to one agent, accepted, passed on, timed out,
overflowed, transferred with a note; presence and freed capacity triggering offers at once;
every decision explained; other tenants' ids and bad input refused."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.core import clock
from hilos.core.errors import Forbidden
from hilos.core.ids import new_id
from hilos.core.models import User
from hilos.core.outbox import relay
from hilos.core.tenancy import TenantContext
from hilos.routing import service as routing
from hilos.routing.models import RoutingAgent
from hilos.worker import Worker
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.routing.helpers import (
    ManualClock,
    accept,
    conversation,
    create_agent,
    create_queue,
    offer_of,
    offers,
    routing_log,
    set_presence,
    stats,
)


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    manual = ManualClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def write(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    channel_id: str,
    sender: str,
    external_id: str,
    text: str = "Hola, necesito ayuda",
) -> str:
    response = await inbound(
        client,
        tenant,
        channel_id=channel_id,
        external_id=external_id,
        kind="whatsapp",
        value=sender,
        text=text,
    )
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def resolve(client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str) -> None:
    response = await client.patch(
        f"/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text


def actions(log: list[dict[str, Any]]) -> list[str]:
    return [decision["action"] for decision in log]


async def test_a_new_conversation_is_offered_to_one_agent_and_assigned_when_accepted(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    bruno = await create_agent(client, tenant, "bruno@tienda.es", skills={"es": 3})
    conversation_id = await write(client, tenant, channel, "+34600100200", "wamid.r1")

    before = await conversation(client, tenant, conversation_id)
    assert (before["assignee"], before["queue"]) == (None, None)
    await app.state.worker.run_once()

    waiting = await conversation(client, tenant, conversation_id)
    assert (waiting["assignee"], waiting["queue"]) == (None, queue["id"])
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    # Both have 3/3 free; Ana came online first, so she has been idle longest.
    assert offer["agent_id"] == ana
    assert [o for o in await offers(client, tenant) if o["agent_id"] == bruno] == []
    assert (await stats(client, tenant, queue["id"]))["offered"] == 1

    accepted = await accept(client, tenant, offer["id"])
    assert accepted["status"] == "accepted"
    assigned = await conversation(client, tenant, conversation_id)
    assert (assigned["assignee"], assigned["assignee_id"], assigned["queue"]) == (
        ana,
        ana,
        queue["id"],
    )
    log = await routing_log(client, tenant, conversation_id)
    assert actions(log) == ["queued", "offered", "accepted"]
    assert log[0]["reason"] == (
        "new conversation; channel whatsapp, language es: queue Soporte ES (skills es≥1)"
    )
    assert log[1]["agent_id"] == ana
    assert log[1]["reason"].startswith("skills es≥1; most free capacity 3/3 whatsapp; idle ")
    assert log[1]["reason"].endswith("; 2 agents with room")
    assert log[2]["reason"] == "Ana accepted after 0 s"
    figures = await stats(client, tenant, queue["id"])
    assert (figures["waiting"], figures["agents_online"]) == (0, 2)
    loads = {a["id"]: a["load"] for a in figures["agents"]}
    assert loads == {ana: {"whatsapp": 1}, bruno: {}}
    # Accepting twice is refused.
    again = await client.post(f"/v1/offers/{offer['id']}/accept", headers=tenant.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "offer_accepted"


async def test_an_agent_coming_online_is_offered_the_waiting_conversation_at_once(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, manual_clock: ManualClock
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es", online=False)
    conversation_id = await write(client, tenant, channel, "+34600100201", "wamid.p1")
    await app.state.worker.run_once()

    assert await offer_of(client, tenant, conversation_id) is None
    manual_clock.advance(seconds=90)
    figures = await stats(client, tenant, queue["id"])
    assert (figures["waiting"], figures["longest_wait_seconds"], figures["agents_online"]) == (
        1,
        90,
        0,
    )
    log = await routing_log(client, tenant, conversation_id)
    assert actions(log) == ["queued", "waiting"]
    assert log[1]["reason"] == (
        "waiting in Soporte ES: skills es≥1; 0 qualified agents online, none with room in whatsapp"
    )

    # Away is not online: still nothing.
    await set_presence(client, tenant, ana, "away")
    assert await offer_of(client, tenant, conversation_id) is None
    # Online: the offer exists when the request answers, no worker needed.
    agent = await set_presence(client, tenant, ana, "online")
    assert agent["load"] == {"whatsapp": 1}
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == ana
    log = await routing_log(client, tenant, conversation_id)
    assert log[-1]["reason"].startswith(
        "Ana has room (3/3 whatsapp free); first in line of Soporte ES they qualify for "
        "(skills es≥1), waited 90 s"
    )
    # Going offline takes the offer back.
    await set_presence(client, tenant, ana, "offline")
    assert await offer_of(client, tenant, conversation_id) is None
    assert (await routing_log(client, tenant, conversation_id))[-1]["reason"] == "Ana went offline"


async def test_an_offer_not_accepted_in_time_goes_to_the_next_agent(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, manual_clock: ManualClock
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Soporte ES", offer_timeout_seconds=30)
    ana = await create_agent(client, tenant, "ana@tienda.es")
    manual_clock.advance(seconds=5)
    bruno = await create_agent(client, tenant, "bruno@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100202", "wamid.t1")
    await app.state.worker.run_once()
    first = await offer_of(client, tenant, conversation_id)
    assert first is not None
    assert first["agent_id"] == ana

    manual_clock.advance(seconds=29)
    await app.state.worker.run_once()
    still = await offer_of(client, tenant, conversation_id)
    assert still is not None
    assert still["id"] == first["id"]

    # The timer is a row, not a task in a process: a worker started afresh (as after a
    # restart) fires it.
    manual_clock.advance(seconds=1)
    restarted = Worker(sessionmaker=app.state.sessionmaker, bus=app.state.bus, interval=1.0)
    done = await restarted.run_once()
    await restarted.close()
    assert done["routing_timers"] >= 1
    second = await offer_of(client, tenant, conversation_id)
    assert second is not None
    assert second["agent_id"] == bruno
    late = await client.post(f"/v1/offers/{first['id']}/accept", headers=tenant.headers)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "offer_expired"
    log = await routing_log(client, tenant, conversation_id)
    assert actions(log) == ["queued", "offered", "expired", "offered"]
    assert log[2]["reason"] == "Ana did not answer within 30 s"

    # Bruno lets it lapse too: with nobody else there, it comes back to Ana.
    manual_clock.advance(seconds=30)
    await app.state.worker.run_once()
    third = await offer_of(client, tenant, conversation_id)
    assert third is not None
    assert third["agent_id"] == ana


async def test_rejecting_an_offer_hands_it_to_the_next_agent_at_once(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    bruno = await create_agent(client, tenant, "bruno@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100203", "wamid.x1")
    await app.state.worker.run_once()
    first = await offer_of(client, tenant, conversation_id)
    assert first is not None
    assert first["agent_id"] == ana

    response = await client.post(f"/v1/offers/{first['id']}/reject", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    second = await offer_of(client, tenant, conversation_id)
    assert second is not None
    assert second["agent_id"] == bruno
    log = await routing_log(client, tenant, conversation_id)
    assert actions(log)[-2:] == ["rejected", "offered"]
    assert log[-2]["reason"] == "Ana rejected it"


async def test_resolving_a_conversation_frees_a_slot_and_the_next_one_is_offered(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es", capacity={"whatsapp": 1})
    first_id = await write(client, tenant, channel, "+34600100204", "wamid.f1")
    second_id = await write(client, tenant, channel, "+34600100205", "wamid.f2")
    await app.state.worker.run_once()
    first = await offer_of(client, tenant, first_id)
    assert first is not None
    await accept(client, tenant, first["id"])
    assert await offer_of(client, tenant, second_id) is None
    assert (await stats(client, tenant, queue["id"]))["waiting"] == 1

    await resolve(client, tenant, first_id)
    await app.state.worker.run_once()
    second = await offer_of(client, tenant, second_id)
    assert second is not None
    assert second["agent_id"] == ana


async def test_a_returning_customer_goes_back_to_the_agent_who_served_them(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    await create_agent(client, tenant, "ana@tienda.es")
    bruno = await create_agent(client, tenant, "bruno@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100206", "wamid.s1")
    await app.state.worker.run_once()
    to_ana = await offer_of(client, tenant, conversation_id)
    assert to_ana is not None
    await client.post(f"/v1/offers/{to_ana['id']}/reject", headers=tenant.headers)
    to_bruno = await offer_of(client, tenant, conversation_id)
    assert to_bruno is not None
    assert to_bruno["agent_id"] == bruno
    await accept(client, tenant, to_bruno["id"])
    await resolve(client, tenant, conversation_id)
    await app.state.worker.run_once()

    # The customer writes again: the conversation reopens, waits unassigned, and goes to
    # Bruno although Ana has been idle longer.
    again = await write(client, tenant, channel, "+34600100206", "wamid.s2", text="Otra cosa")
    assert again == conversation_id
    await app.state.worker.run_once()
    reopened = await conversation(client, tenant, conversation_id)
    assert (reopened["status"], reopened["assignee"], reopened["queue"]) == (
        "open",
        None,
        queue["id"],
    )
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == bruno
    log = await routing_log(client, tenant, conversation_id)
    assert log[-2]["reason"].startswith("reopened conversation; channel whatsapp")
    assert log[-2]["reason"].endswith(f"; last agent {bruno}")
    assert log[-1]["reason"] == (
        "sticky: Bruno served this customer last and is online with room (3/3 whatsapp free)"
    )


async def test_a_customer_joins_the_queue_of_their_language_and_vips_go_first(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, manual_clock: ManualClock
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    spanish = await create_queue(client, tenant, "Soporte ES")
    english = await create_queue(client, tenant, "Support EN", skills=["en"])
    await identify(client, tenant, ("whatsapp", "+447911123456"), language="en-GB")
    british = await write(client, tenant, channel, "+447911123456", "wamid.l1", text="Hello")
    await app.state.worker.run_once()
    assert (await conversation(client, tenant, british))["queue"] == english["id"]

    await write(client, tenant, channel, "+34600100207", "wamid.v1")
    manual_clock.advance(seconds=30)
    await identify(client, tenant, ("whatsapp", "+34600100208"), traits={"tier": "VIP"})
    vip = await write(client, tenant, channel, "+34600100208", "wamid.v2")
    await app.state.worker.run_once()
    assert (await stats(client, tenant, spanish["id"]))["waiting"] == 2
    ana = await create_agent(client, tenant, "ana@tienda.es", capacity={"whatsapp": 1})
    offered = await offers(client, tenant, agent_id=ana)
    assert [o["conversation_id"] for o in offered] == [vip]
    log = await routing_log(client, tenant, vip)
    assert log[0]["details"]["priority"] == 3


async def test_transfers_to_a_queue_and_to_an_agent_carry_a_note(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Soporte ES")
    billing = await create_queue(client, tenant, "Facturación", skills=["billing"])
    ana = await create_agent(client, tenant, "ana@tienda.es")
    carla = await create_agent(client, tenant, "carla@tienda.es", skills={"billing": 2})
    conversation_id = await write(client, tenant, channel, "+34600100209", "wamid.tr1")
    await app.state.worker.run_once()
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == ana
    await accept(client, tenant, offer["id"])

    response = await client.post(
        f"/v1/conversations/{conversation_id}/transfer",
        json={"queue_id": billing["id"], "note": "Pregunta por una factura duplicada"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert (moved["assignee"], moved["queue"]) == (None, billing["id"])
    to_carla = await offer_of(client, tenant, conversation_id)
    assert to_carla is not None
    assert to_carla["agent_id"] == carla
    notes = (
        await client.get(f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers)
    ).json()["items"]
    note = next(m for m in notes if m["id"] == moved["note_message_id"])
    assert (note["direction"], note["text"]) == ("note", "Pregunta por una factura duplicada")
    log = await routing_log(client, tenant, conversation_id)
    transferred = next(d for d in log if d["action"] == "transferred")
    assert transferred["reason"] == (
        "transferred to queue Facturación by a supervisor: Pregunta por una factura duplicada"
    )
    assert transferred["details"]["previous_assignee_id"] == ana

    # And straight to an agent: assigned at once, Carla's offer withdrawn.
    response = await client.post(
        f"/v1/conversations/{conversation_id}/transfer",
        json={"agent_id": ana, "note": "Ya está resuelto en Ventas"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["assignee"] == ana
    assert await offer_of(client, tenant, conversation_id) is None
    assert (await conversation(client, tenant, conversation_id))["assignee"] == ana
    log = await routing_log(client, tenant, conversation_id)
    assert actions(log)[-2:] == ["withdrawn", "transferred"]
    assert (
        log[-1]["reason"] == "transferred to agent Ana by a supervisor: Ya está resuelto en Ventas"
    )


async def test_rings_and_overflow_run_on_durable_timers_in_the_worker(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, manual_clock: ManualClock
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    general = await create_queue(client, tenant, "General", skills=[])
    experts = await create_queue(
        client,
        tenant,
        "Expertos",
        skills={"es": 3},
        rings=[{"after_seconds": 60, "skills": {"es": 2}}],
        overflow_queue_id=general["id"],
        overflow_after_seconds=120,
    )
    # General would win by no language requirement only if Expertos did not speak Spanish.
    ana = await create_agent(client, tenant, "ana@tienda.es", skills={"es": 2}, online=False)
    zoe = await create_agent(client, tenant, "zoe@tienda.es", skills={"en": 1}, online=False)
    conversation_id = await write(client, tenant, channel, "+34600100210", "wamid.o1")
    await app.state.worker.run_once()
    assert (await conversation(client, tenant, conversation_id))["queue"] == experts["id"]

    # Ana (es 2) is online but not expert enough until the ring opens at 60 s.
    await set_presence(client, tenant, ana, "online")
    assert await offer_of(client, tenant, conversation_id) is None
    manual_clock.advance(seconds=60)
    await app.state.worker.run_once()
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == ana
    reason = (await routing_log(client, tenant, conversation_id))[-1]["reason"]
    assert reason.startswith("ring 1 after 60 s: skills es≥2; most free capacity 3/3 whatsapp")

    # Ana goes away; at 120 s in the queue the conversation overflows to General, Zoe's queue.
    await set_presence(client, tenant, ana, "away")
    await set_presence(client, tenant, zoe, "online")
    assert await offer_of(client, tenant, conversation_id) is None
    manual_clock.advance(seconds=60)
    await app.state.worker.run_once()
    assert (await conversation(client, tenant, conversation_id))["queue"] == general["id"]
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == zoe
    log = await routing_log(client, tenant, conversation_id)
    overflowed = next(d for d in log if d["action"] == "overflowed")
    assert overflowed["reason"] == "waited 120 s in Expertos: moved to General"


async def test_other_tenants_ids_answer_404(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100211", "wamid.n1")
    await app.state.worker.run_once()
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    other: TenantHandle = await make_tenant("Otra tienda")
    other_queue = await create_queue(client, other, "Suya")
    h = other.headers
    for method, path, body in (
        ("GET", f"/v1/queues/{queue['id']}", None),
        ("GET", f"/v1/queues/{queue['id']}/stats", None),
        ("PATCH", f"/v1/queues/{queue['id']}", {"priority": 2}),
        ("GET", f"/v1/agents/{ana}", None),
        ("PUT", f"/v1/agents/{ana}/presence", {"status": "offline"}),
        ("POST", f"/v1/offers/{offer['id']}/accept", None),
        ("POST", f"/v1/offers/{offer['id']}/reject", None),
        ("GET", f"/v1/conversations/{conversation_id}/routing", None),
        ("POST", f"/v1/conversations/{conversation_id}/transfer", {"agent_id": ana}),
        ("POST", f"/v1/queues/{other_queue['id']}/members", {"agent_id": ana}),
    ):
        response = await client.request(method, path, json=body, headers=h)
        assert response.status_code == 404, (path, response.text)
    # Another tenant's queue or agent named in a body is as unknown as a missing one.
    response = await client.post(
        f"/v1/conversations/{conversation_id}/transfer",
        json={"queue_id": other_queue["id"]},
        headers=tenant.headers,
    )
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "queue_id"
    response = await client.post(
        "/v1/queues",
        json={
            "name": "Desborde",
            "channel_kinds": ["email"],
            "overflow_queue_id": other_queue["id"],
            "overflow_after_seconds": 60,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "overflow_queue_id"
    # Nothing changed for the first tenant.
    assert (await offer_of(client, tenant, conversation_id)) == offer


async def test_bad_input_answers_422_naming_the_field_and_writes_nothing(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100212", "wamid.b1")
    for path, body, field in (
        (
            f"/v1/conversations/{conversation_id}/transfer",
            {"agent_id": ana, "queue_id": queue["id"]},
            "body",
        ),
        (f"/v1/conversations/{conversation_id}/transfer", {"note": "sin destino"}, "body"),
        (f"/v1/agents/{ana}/presence", {"status": "busy"}, "status"),
    ):
        method = "PUT" if path.endswith("presence") else "POST"
        response = await client.request(method, path, json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    # The failed transfers wrote no note.
    messages = (
        await client.get(f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers)
    ).json()["items"]
    assert [m["direction"] for m in messages] == ["inbound"]
    missing = await client.post(
        f"/v1/conversations/{conversation_id}/transfer",
        json={"agent_id": "0" * 32, "note": "para nadie"},
        headers=tenant.headers,
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "agent_id"
    messages = (
        await client.get(f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers)
    ).json()["items"]
    assert len(messages) == 1


async def test_an_agent_key_that_is_no_ones_reads_the_queues_and_manages_nothing(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es", online=False)
    created = await client.post(
        "/v1/api-keys", json={"name": "integración", "role": "agent"}, headers=tenant.headers
    )
    agent_key = {"Authorization": f"Bearer {created.json()['key']}"}
    assert [q["id"] for q in (await client.get("/v1/queues", headers=agent_key)).json()] == [
        queue["id"]
    ]
    stats_response = await client.get(f"/v1/queues/{queue['id']}/stats", headers=agent_key)
    assert stats_response.status_code == 200
    forbidden = await client.post(
        "/v1/queues", json={"name": "Mía", "channel_kinds": ["email"]}, headers=agent_key
    )
    assert forbidden.status_code == 403
    presence = await client.put(
        f"/v1/agents/{ana}/presence", json={"status": "online"}, headers=agent_key
    )
    assert presence.status_code == 403


async def insert_agents(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, count: int
) -> None:
    """Online agents written straight to the tables (no password hashing: many, fast)."""
    moment = clock.now()
    async with sessionmaker() as session, session.begin():
        for number in range(count):
            user_id = new_id()
            await session.execute(
                insert(User).values(
                    id=user_id,
                    tenant_id=tenant.id,
                    email=f"agente{number}@tienda.es",
                    name=f"Agente {number}",
                    role="agent",
                    password_hash="-",
                    locale=None,
                    created_at=moment,
                )
            )
            await session.execute(
                insert(RoutingAgent).values(
                    id=user_id,
                    tenant_id=tenant.id,
                    skills={"es": 2},
                    secondary_skills={},
                    capacity=routing.with_default_capacity({}),
                    presence="online",
                    presence_at=moment,
                    idle_since=moment,
                    created_at=moment,
                )
            )


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            not statement.lstrip()
            .upper()
            .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
        ):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_routing_a_new_conversation_takes_the_same_statements_whatever_the_team_size(
    app: Any,
    client: httpx.AsyncClient,
    make_tenant: Any,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    counts = []
    for size in (2, 30):
        tenant: TenantHandle = await make_tenant(f"Equipo de {size}")
        channel = await add_channel(client, tenant, "whatsapp")
        await create_queue(client, tenant, "Soporte ES")
        await insert_agents(sessionmaker, tenant, size)
        conversation_id = await write(client, tenant, channel, f"+3460010{size:04d}", "wamid.q")
        # The relay's consumer marks it; this tenant's round alone is counted.
        await relay(sessionmaker, app.state.bus)
        with statements(engine) as seen:
            async with sessionmaker() as session, session.begin():
                routed, _ = await routing.route_tenant(session, TenantContext(id=tenant.id))
        assert routed == 1
        assert await offer_of(client, tenant, conversation_id) is not None
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


async def test_a_queue_assigns_at_once_by_default_and_needs_no_accept(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    # As an integrator creates it: the contract's fields only.
    created = await client.post(
        "/v1/queues",
        json={"name": "Soporte ES", "skills": ["es"], "channel_kinds": ["whatsapp"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    queue = created.json()
    assert queue["auto_assign"] is True
    ana = await create_agent(client, tenant, "ana@tienda.es")
    conversation_id = await write(client, tenant, channel, "+34600100213", "wamid.a1")
    await app.state.worker.run_once()
    assigned = await conversation(client, tenant, conversation_id)
    assert (assigned["assignee"], assigned["queue"]) == (ana, queue["id"])
    assert await offer_of(client, tenant, conversation_id) is None
    assert actions(await routing_log(client, tenant, conversation_id)) == ["queued", "assigned"]
    agent = (await client.get(f"/v1/agents/{ana}", headers=tenant.headers)).json()
    assert agent["load"] == {"whatsapp": 1}


async def test_a_hand_off_routes_a_conversation_and_agents_transfer_only_their_own(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    # The conversation starts before any queue exists: routing leaves it alone.
    conversation_id = await write(client, tenant, channel, "+34600100214", "wamid.h1")
    await app.state.worker.run_once()
    assert (await conversation(client, tenant, conversation_id))["queue"] is None
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    bruno = await create_agent(client, tenant, "bruno@tienda.es")
    # The assistant hands it off.
    async with sessionmaker() as session, session.begin():
        joined = await routing.request_routing(
            session, tenant.context, conversation_id=conversation_id, why="handed off"
        )
    assert joined == queue["id"]
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == ana
    assert (await routing_log(client, tenant, conversation_id))[0]["reason"].startswith(
        "handed off; channel whatsapp"
    )
    await accept(client, tenant, offer["id"])
    # Bruno cannot hand away Ana's conversation; Ana can.
    async with sessionmaker() as session:
        with pytest.raises(Forbidden):
            await routing.transfer(
                session,
                tenant.context,
                conversation_id=conversation_id,
                agent_id=bruno,
                queue_id=None,
                note="",
                by_user_id=bruno,
                by_agent=True,
            )
    async with sessionmaker() as session, session.begin():
        moved, _ = await routing.transfer(
            session,
            tenant.context,
            conversation_id=conversation_id,
            agent_id=bruno,
            queue_id=None,
            note="Te lo paso, habla de devoluciones",
            by_user_id=ana,
            by_agent=True,
        )
    assert moved.assignee_id == bruno
    log = await routing_log(client, tenant, conversation_id)
    assert log[-1]["reason"] == (
        "transferred to agent Bruno by Ana: Te lo paso, habla de devoluciones"
    )


async def test_a_new_conversation_taken_by_hand_before_routing_stays_with_its_agent(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Soporte ES", auto_assign=True)
    ana = await create_agent(client, tenant, "ana@tienda.es")
    bruno = await create_agent(client, tenant, "bruno@tienda.es", online=False)
    conversation_id = await write(client, tenant, channel, "+34600100299", "wamid.k1")
    taken = await client.patch(
        f"/v1/conversations/{conversation_id}",
        json={"assignee_id": bruno},
        headers=tenant.headers,
    )
    assert taken.status_code == 200, taken.text
    await app.state.worker.run_once()
    kept = await conversation(client, tenant, conversation_id)
    assert kept["assignee"] == bruno
    assert kept["assignee"] != ana
    assert actions(await routing_log(client, tenant, conversation_id)) == ["kept"]

"""The supervisor view: who may open it, the figures it shows (the page and
``GET /v1/supervisor/overview``) for a contact center whose every moment the test sets, and
moving a conversation to another agent or queue from the page.

The story of the figures, on a frozen clock (Monday 23 November 2026, 10:00 in Madrid): one
queue for WhatsApp in Spanish, Ana online with room for one WhatsApp conversation, Bruno
offline, first responses promised within 10 minutes around the clock. Three customers write a
minute apart: the first goes to Ana, the other two wait.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hilos.core import clock
from hilos.routing.supervisor import day_bounds, target_outcome
from tests.conftest import TenantHandle, add_channel, inbound
from tests.routing.helpers import (
    PASSWORD,
    ManualClock,
    conversation,
    create_agent,
    create_queue,
    routing_log,
    stats,
)
from tests.web.test_console import browser, csrf_of, sign_in

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[ManualClock]:
    moment = ManualClock(T0)
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


async def make_user(
    client: httpx.AsyncClient, tenant: TenantHandle, name: str, role: str
) -> dict[str, Any]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@tienda-prueba.es"
    response = await client.post(
        "/v1/users",
        json={"email": email, "name": name, "role": role, "password": PASSWORD},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def key_with_role(
    client: httpx.AsyncClient, tenant: TenantHandle, role: str
) -> dict[str, str]:
    response = await client.post(
        "/v1/api-keys", json={"name": role, "role": role}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


@dataclass
class Desk:
    """One tenant's WhatsApp desk: a queue, Ana (room for one WhatsApp conversation), Bruno
    (offline), and a first-response target of 10 minutes."""

    app: Any
    client: httpx.AsyncClient
    tenant: TenantHandle
    channel: str
    queue: dict[str, Any]
    ana: str
    bruno: str
    ana_email: str

    async def customer_writes(self, phone: str) -> str:
        response = await inbound(
            self.client,
            self.tenant,
            channel_id=self.channel,
            external_id=f"wamid.{uuid.uuid4().hex}",
            kind="whatsapp",
            value=phone,
        )
        assert response.status_code == 200, response.text
        await self.app.state.worker.run_once()
        conversation_id: str = response.json()["conversation_id"]
        return conversation_id

    async def reply(self, conversation_id: str) -> None:
        response = await self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Enseguida le ayudo"},
            headers=self.tenant.headers,
        )
        assert response.status_code == 201, response.text
        await self.app.state.worker.run_once()


async def open_desk(app: Any, client: httpx.AsyncClient, tenant: TenantHandle) -> Desk:
    channel = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    queue = await create_queue(client, tenant, "Soporte ES", auto_assign=True)
    policy = await client.post(
        "/v1/sla-policies",
        json={"name": "Respuesta en 10 minutos", "first_response_seconds": 600},
        headers=tenant.headers,
    )
    assert policy.status_code == 201, policy.text
    ana_email = f"ana-{uuid.uuid4().hex[:8]}@tienda-prueba.es"
    ana = await create_agent(client, tenant, ana_email, name="Ana", capacity={"whatsapp": 1})
    bruno = await create_agent(
        client, tenant, f"bruno-{uuid.uuid4().hex[:8]}@tienda-prueba.es", name="Bruno", online=False
    )
    return Desk(app, client, tenant, channel, queue, ana, bruno, ana_email)


async def signed_in(client: httpx.AsyncClient, email: str) -> None:
    response = await sign_in(client, email, PASSWORD)
    assert response.status_code == 303, response.text


def row_of(html: str, row_id: str) -> str:
    match = re.search(rf'<tr id="{re.escape(row_id)}".*?</tr>', html, re.S)
    assert match is not None, f"no row {row_id} on the page"
    return match.group(0)


def figure(row: str, name: str) -> str:
    match = re.search(rf'class="number {name}"[^>]*><span class="value">(.*?)</span>', row, re.S)
    assert match is not None, f"no {name} in {row}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- who may open it --------------------------------------------------------------------------


async def test_only_supervisors_and_admins_open_the_supervisor_view(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    desk = await open_desk(app, client, tenant)
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    admin = await make_user(client, tenant, "Alba", "admin")

    async with browser(app) as anonymous:
        refused = await anonymous.get("/console/supervisor")
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login"

    async with browser(app) as ana:
        await signed_in(ana, desk.ana_email)
        page = await ana.get("/console/supervisor")
        assert page.status_code == 403
        assert "La vista de supervisión es para supervisores y administradores." in page.text
        assert "Soporte ES" not in page.text
        move_form = await ana.get(f"/console/supervisor/conversations/{uuid.uuid4().hex}")
        assert move_form.status_code == 403
        inbox = await ana.get("/console")
        assert 'href="/console/supervisor"' not in inbox.text

    for user in (supervisor, admin):
        async with browser(app) as person:
            await signed_in(person, user["email"])
            inbox = await person.get("/console")
            assert 'href="/console/supervisor"' in inbox.text
            page = await person.get("/console/supervisor")
            assert page.status_code == 200, page.text
            assert '<a href="/console/supervisor" aria-current="page">' in page.text
            assert "Soporte ES" in page.text
            assert "Espera más larga" in page.text
            english = await person.get("/console/supervisor?lang=en")
            assert "Longest wait" in english.text
            assert "SLA attainment today" in english.text

    # The API: supervisor and admin keys, never an agent's; only the caller's tenant.
    other = await make_tenant("Otra tienda")
    await create_queue(client, other, "Cola ajena")
    agent_key = await key_with_role(client, tenant, "agent")
    forbidden = await client.get("/v1/supervisor/overview", headers=agent_key)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    for headers in (await key_with_role(client, tenant, "supervisor"), tenant.headers):
        overview = await client.get("/v1/supervisor/overview", headers=headers)
        assert overview.status_code == 200, overview.text
        assert [q["name"] for q in overview.json()["queues"]] == ["Soporte ES"]
        assert {a["id"] for a in overview.json()["agents"]} == {desk.ana, desk.bruno}


# --- the figures ------------------------------------------------------------------------------


async def test_the_figures_of_a_known_morning(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    desk = await open_desk(app, client, tenant)
    first = await desk.customer_writes("+34600200001")
    frozen.advance(seconds=60)
    second = await desk.customer_writes("+34600200002")
    frozen.advance(seconds=60)
    third = await desk.customer_writes("+34600200003")
    assert (await conversation(client, tenant, first))["assignee"] == desk.ana
    assert (await conversation(client, tenant, second))["assignee"] is None
    # Ana answers her customer in 3 minutes 20 seconds: within the 10 minutes promised.
    frozen.advance(seconds=80)
    await desk.reply(first)
    # 10:11:40 in Madrid: the second customer's 10 minutes ran out at 10:11, the third's run
    # out at 10:12.
    frozen.now = T0 + timedelta(seconds=700)
    await app.state.worker.run_once()

    response = await client.get("/v1/supervisor/overview", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["day"] == "2026-11-23"
    assert (body["sla_attainment_today"], body["sla_targets_met_today"]) == (0.5, 1)
    assert body["sla_targets_decided_today"] == 2
    [queue] = body["queues"]
    assert queue == {
        "id": desk.queue["id"],
        "name": "Soporte ES",
        "channel_kinds": ["whatsapp"],
        "waiting": 2,
        "offered": 0,
        # The second customer has waited since 10:01.
        "longest_wait_seconds": 640,
        "agents_online": 1,
        "agents_available": 0,
        "load": 1,
        "capacity": 1,
        "sla_attainment_today": 0.5,
        "sla_targets_decided_today": 2,
        "sla_targets_met_today": 1,
    }
    # The same line as the queue's own statistics.
    queue_stats = await stats(client, tenant, desk.queue["id"])
    assert (
        queue_stats["waiting"],
        queue_stats["longest_wait_seconds"],
        queue_stats["agents_online"],
    ) == (2, 640, 1)
    agents = {agent["id"]: agent for agent in body["agents"]}
    ana, bruno = agents[desk.ana], agents[desk.bruno]
    assert (ana["presence"], ana["load"], ana["capacity"]["whatsapp"]) == (
        "online",
        {"whatsapp": 1},
        1,
    )
    # Ana came online and took her conversation at 10:00.
    assert ana["idle_seconds"] == 700
    assert ana["conversation_ids"] == [first]
    assert ana["queue_ids"] == [desk.queue["id"]]
    assert (bruno["presence"], bruno["load"], bruno["idle_seconds"]) == ("offline", {}, None)

    # The page shows the same, in the supervisor's language.
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        page = (await sara.get("/console/supervisor")).text
    queue_row = row_of(page, f"queue-{desk.queue['id']}")
    assert figure(queue_row, "waiting") == "2"
    assert figure(queue_row, "longest-wait") == "10:40"
    assert figure(queue_row, "agents-online") == "1"
    assert figure(queue_row, "load") == "1 / 1"
    assert figure(queue_row, "sla") == "50 %"
    ana_row = row_of(page, f"agent-{desk.ana}")
    assert "Conectado" in ana_row
    assert "WhatsApp 1/1" in ana_row
    assert "11:40" in ana_row
    assert "Desconectado" in row_of(page, f"agent-{desk.bruno}")
    # The two waiting customers, the longest waiting first; Ana's customer in progress.
    assert page.index(f'id="waiting-{second}"') < page.index(f'id="waiting-{third}"')
    assert f'id="held-{first}"' in page
    assert "objetivos cumplidos: 1 de 2" in page

    # Half past midnight in Madrid (still the 23rd in UTC): a new day, nothing due yet.
    frozen.now = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    late = (await client.get("/v1/supervisor/overview", headers=tenant.headers)).json()
    assert late["day"] == "2026-11-24"
    assert late["sla_attainment_today"] is None
    assert late["queues"][0]["sla_attainment_today"] is None
    assert late["queues"][0]["longest_wait_seconds"] == int(
        (frozen.now - (T0 + timedelta(seconds=60))).total_seconds()
    )


async def test_a_missed_first_response_is_counted_before_the_worker_fires_it(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    """The attainment is computed at the moment of reading, like the conversation's SLA."""
    desk = await open_desk(app, client, tenant)
    await desk.customer_writes("+34600200011")
    frozen.advance(seconds=60)
    await desk.customer_writes("+34600200012")
    frozen.advance(seconds=30)
    overview = (await client.get("/v1/supervisor/overview", headers=tenant.headers)).json()
    # Both running: nothing decided yet.
    assert (overview["sla_attainment_today"], overview["sla_targets_decided_today"]) == (None, 0)
    frozen.now = T0 + timedelta(seconds=601)
    overview = (await client.get("/v1/supervisor/overview", headers=tenant.headers)).json()
    assert (overview["sla_attainment_today"], overview["sla_targets_decided_today"]) == (0.0, 1)


def test_a_day_in_madrid_is_23_or_25_hours_long_when_the_clocks_change() -> None:
    spring = day_bounds(datetime(2026, 3, 29, 12, 0, tzinfo=UTC), "Europe/Madrid")
    autumn = day_bounds(datetime(2026, 10, 25, 12, 0, tzinfo=UTC), "Europe/Madrid")
    assert spring[1:] == (
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
    )
    assert autumn[2] - autumn[1] == timedelta(hours=25)
    # Just before midnight in Madrid is already the next day there.
    assert str(day_bounds(datetime(2026, 7, 1, 22, 30, tzinfo=UTC), "Europe/Madrid")[0]) == (
        "2026-07-02"
    )


def test_a_target_is_met_missed_or_still_open() -> None:
    due = T0 + timedelta(minutes=10)
    later = due + timedelta(minutes=1)
    met = target_outcome(due=due, done_at=due, breached=False, reference=later)
    late = target_outcome(due=due, done_at=later, breached=False, reference=later)
    running = target_outcome(due=due, done_at=None, breached=False, reference=T0)
    # Paused (waiting on the customer) before it fell due: the clock has not run out.
    paused = target_outcome(
        due=due, done_at=None, breached=False, reference=due - timedelta(minutes=1)
    )
    fired = target_outcome(due=later, done_at=None, breached=True, reference=T0)
    assert (met, late, running, paused, fired) == (True, False, None, None, False)


# --- reassignment -----------------------------------------------------------------------------


async def test_a_supervisor_moves_conversations_with_the_forms_token(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    desk = await open_desk(app, client, tenant)
    returns = await create_queue(
        client, tenant, "Devoluciones", skills={"returns": 1}, auto_assign=True
    )
    first = await desk.customer_writes("+34600200021")
    waiting = await desk.customer_writes("+34600200022")
    assert (await conversation(client, tenant, waiting))["assignee"] is None
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    move_url = f"/console/supervisor/conversations/{waiting}/move"

    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        form = await sara.get(f"/console/supervisor/conversations/{waiting}")
        assert form.status_code == 200, form.text
        assert f'value="agent:{desk.bruno}"' in form.text
        assert f'value="queue:{returns["id"]}"' in form.text
        token = csrf_of(form)

        # Without the form's token: refused, nothing moves.
        forged = await sara.post(move_url, data={"target": f"agent:{desk.bruno}"})
        assert forged.status_code == 403
        assert "Este formulario ha caducado" in forged.text
        assert (await conversation(client, tenant, waiting))["assignee"] is None

        # Bad input: a message on the page, a way back to the form, nothing moves.
        nothing = await sara.post(move_url, data={"csrf_token": token, "target": ""})
        assert nothing.status_code == 422
        assert "Elige un agente o una cola a la que moverla." in nothing.text
        assert f'href="/console/supervisor/conversations/{waiting}"' in nothing.text
        unknown = await sara.post(
            move_url, data={"csrf_token": token, "target": f"queue:{uuid.uuid4().hex}"}
        )
        assert unknown.status_code == 422
        assert "Ese agente o esa cola ya no existe." in unknown.text
        assert (await conversation(client, tenant, waiting))["assignee"] is None

        # To Bruno, with a note for the team.
        moved = await sara.post(
            move_url,
            data={
                "csrf_token": token,
                "target": f"agent:{desk.bruno}",
                "note": "Pregunta por una devolución",
            },
        )
        assert moved.status_code == 303
        assert moved.headers["location"] == f"/console/supervisor?moved={waiting}"
        assert (await conversation(client, tenant, waiting))["assignee"] == desk.bruno
        log = await routing_log(client, tenant, waiting)
        assert log[-1]["reason"] == (
            "transferred to agent Bruno by Sara: Pregunta por una devolución"
        )
        messages = await client.get(f"/v1/conversations/{waiting}/messages", headers=tenant.headers)
        note = messages.json()["items"][-1]
        assert (note["text"], note["direction"]) == ("Pregunta por una devolución", "note")
        after = await sara.get(moved.headers["location"])
        assert "La conversación se ha movido." in after.text

        # Ana's conversation to the returns queue, where nobody has the skill yet: it waits.
        to_queue = await sara.post(
            f"/console/supervisor/conversations/{first}/move",
            data={"csrf_token": token, "target": f"queue:{returns['id']}"},
        )
        assert to_queue.status_code == 303
        moved_first = await conversation(client, tenant, first)
        assert (moved_first["assignee"], moved_first["queue"]) == (None, returns["id"])
        assert (await stats(client, tenant, returns["id"]))["waiting"] == 1

        # A closed conversation cannot be moved.
        resolved = await client.patch(
            f"/v1/conversations/{waiting}", json={"status": "resolved"}, headers=tenant.headers
        )
        assert resolved.status_code == 200, resolved.text
        closed = await sara.post(
            move_url, data={"csrf_token": token, "target": f"agent:{desk.ana}"}
        )
        assert closed.status_code == 409
        assert "Esta conversación está cerrada: no hay nada que mover." in closed.text
        assert (await conversation(client, tenant, waiting))["assignee"] == desk.bruno

    # An agent's own valid token does not make them a supervisor.
    async with browser(app) as ana:
        await signed_in(ana, desk.ana_email)
        inbox = await ana.get("/console")
        refused = await ana.post(
            f"/console/supervisor/conversations/{first}/move",
            data={"csrf_token": csrf_of(inbox), "target": f"agent:{desk.ana}"},
        )
        assert refused.status_code == 403
    assert (await conversation(client, tenant, first))["assignee"] is None


async def test_another_tenants_conversation_is_not_found_on_the_supervisor_pages(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    other = await make_tenant("Otra tienda")
    foreign = await open_desk(app, client, other)
    theirs = await foreign.customer_writes("+34600200031")
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        form = await sara.get(f"/console/supervisor/conversations/{theirs}")
        assert form.status_code == 404
        page = await sara.get("/console/supervisor")
        moved = await sara.post(
            f"/console/supervisor/conversations/{theirs}/move",
            data={"csrf_token": csrf_of(page), "target": f"agent:{foreign.bruno}"},
        )
        assert moved.status_code == 404
    assert (await conversation(client, other, theirs))["assignee"] == foreign.ana

"""The agent console's views and actions through HTTP, as a browser without JavaScript uses
them: who sees what, the inbox views, the composer's channels and canned responses, status,
snooze, assignment and transfer, presence and the screen pop of a ringing call.

The agents here are routing agents (``POST /v1/agents``) in queues; a supervisor is a user with
that role and no agent profile.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hilos.core import clock
from hilos.core.outbox import relay
from tests.channels.conftest import add_configured_channel
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.routing.helpers import PASSWORD as AGENT_PASSWORD
from tests.routing.helpers import create_agent, create_queue
from tests.serving import serving
from tests.web.test_console import browser, csrf_of, make_agent, messages_of, sign_in
from tests.web.test_live import EventStream

PBX_TOKEN = "pbx-token-for-the-console"


def unique(name: str) -> str:
    """An email no other test uses: sign-in looks an email up across every tenant."""
    return f"{name}-{uuid.uuid4().hex[:10]}@tienda-prueba.es"


@dataclass
class Center:
    """Two queues (sales on WhatsApp, returns by email) with one agent each, both offline, and a
    conversation waiting in each queue."""

    whatsapp: str
    email: str
    sales: str
    returns: str
    ana: str
    ana_email: str
    bruno: str
    bruno_email: str
    sales_conversation: str
    sales_customer: str
    returns_conversation: str
    returns_customer: str


async def contact_center(app: Any, client: httpx.AsyncClient, tenant: TenantHandle) -> Center:
    whatsapp = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    email = await add_channel(client, tenant, "email", "Atención al cliente")
    sales = await create_queue(
        client, tenant, "Ventas", skills=["ventas"], channel_kinds=["whatsapp"], auto_assign=True
    )
    returns = await create_queue(
        client,
        tenant,
        "Devoluciones",
        skills=["devoluciones"],
        channel_kinds=["email"],
        auto_assign=True,
    )
    ana_email, bruno_email = unique("ana"), unique("bruno")
    ana = await create_agent(client, tenant, ana_email, skills={"ventas": 2}, online=False)
    bruno = await create_agent(
        client, tenant, bruno_email, skills={"devoluciones": 2}, online=False
    )
    on_whatsapp = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600111222",
        name="Ana García",
        text="¿Tenéis la chaqueta en talla M?",
    )
    by_email = await inbound(
        client,
        tenant,
        channel_id=email,
        external_id=f"em-{uuid.uuid4().hex}",
        kind="email",
        value="beatriz@example.es",
        name="Beatriz Soler",
        text="Quiero devolver unas botas",
    )
    assert on_whatsapp.status_code == by_email.status_code == 200, by_email.text
    # Routing puts each in its queue's line (nobody is online to take them).
    await app.state.worker.run_once()
    return Center(
        whatsapp=whatsapp,
        email=email,
        sales=sales["id"],
        returns=returns["id"],
        ana=ana,
        ana_email=ana_email,
        bruno=bruno,
        bruno_email=bruno_email,
        sales_conversation=on_whatsapp.json()["conversation_id"],
        sales_customer=on_whatsapp.json()["customer_id"],
        returns_conversation=by_email.json()["conversation_id"],
        returns_customer=by_email.json()["customer_id"],
    )


@asynccontextmanager
async def signed_in(
    app: Any, email: str, password: str = AGENT_PASSWORD
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own, signed in as ``email``."""
    async with browser(app) as client:
        response = await sign_in(client, email, password)
        assert response.status_code == 303, response.text
        yield client


async def conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rows_of(page: httpx.Response) -> list[str]:
    """The conversations an inbox page lists, in order."""
    return re.findall(r'<tr id="conversation-([0-9a-f]+)"', page.text)


@pytest.fixture
def frozen() -> Iterator[list[datetime]]:
    moment = [datetime(2026, 11, 23, 10, 0, tzinfo=UTC)]
    clock.set_now(lambda: moment[0])
    yield moment
    clock.set_now(None)


# --- who sees what ----------------------------------------------------------------------------


async def test_an_agent_sees_only_their_queues_and_every_action_elsewhere_is_not_found(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    center = await contact_center(app, client, tenant)
    supervisor = await make_agent(client, tenant)

    async with signed_in(app, center.ana_email) as ana:
        inbox = await ana.get("/console?status=all")
        assert rows_of(inbox) == [center.sales_conversation]
        assert "Ana García" in inbox.text
        assert "Beatriz Soler" not in inbox.text
        mine = await ana.get(f"/console/conversations/{center.sales_conversation}")
        assert mine.status_code == 200
        token = csrf_of(mine)

        elsewhere = f"/console/conversations/{center.returns_conversation}"
        page = await ana.get(elsewhere)
        assert page.status_code == 404
        assert "Quiero devolver unas botas" not in page.text
        for action, data in (
            ("reply", {"text": "Hola"}),
            ("reply", {"text": "Nota", "private": "1"}),
            ("status", {"status": "resolved"}),
            ("snooze", {"until": "2030-01-01T09:00"}),
            ("transfer", {"target": f"agent:{center.ana}", "note": "mía"}),
            ("take", {}),
        ):
            refused = await ana.post(f"{elsewhere}/{action}", data={"csrf_token": token, **data})
            assert refused.status_code == 404, action
        # The customer's page shows Beatriz, but not the conversation Ana may not open.
        customer = await ana.get(f"/console/customers/{center.returns_customer}")
        assert customer.status_code == 200
        assert "Beatriz Soler" in customer.text
        assert "Quiero devolver unas botas" not in customer.text
        assert center.returns_conversation not in customer.text

    returns = await conversation(client, tenant, center.returns_conversation)
    assert (returns["status"], returns["assignee"]) == ("open", None)
    assert len(await messages_of(client, tenant, center.returns_conversation)) == 1

    async with signed_in(app, center.bruno_email) as bruno:
        assert rows_of(await bruno.get("/console")) == [center.returns_conversation]
        assert (
            await bruno.get(f"/console/conversations/{center.sales_conversation}")
        ).status_code == 404
    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        assert set(rows_of(await boss.get("/console"))) == {
            center.sales_conversation,
            center.returns_conversation,
        }
        customer = await boss.get(f"/console/customers/{center.returns_customer}")
        assert "Quiero devolver unas botas" in customer.text


# --- the inbox's views ------------------------------------------------------------------------


async def test_inbox_views_mine_unassigned_queues_and_by_channel(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    center = await contact_center(app, client, tenant)
    supervisor = await make_agent(client, tenant)

    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        assert rows_of(await boss.get("/console?view=mine")) == []
        unassigned = await boss.get("/console?view=unassigned")
        assert set(rows_of(unassigned)) == {center.sales_conversation, center.returns_conversation}
        whatsapp = await boss.get("/console?view=channel&channel=whatsapp")
        assert rows_of(whatsapp) == [center.sales_conversation]
        by_email = await boss.get("/console?view=channel&channel=email")
        assert rows_of(by_email) == [center.returns_conversation]
        # Without a channel, the first the business has.
        assert rows_of(await boss.get("/console?view=channel")) == [center.returns_conversation]
        no_queues = await boss.get("/console?view=queues")
        assert rows_of(no_queues) == []
        assert "Todavía no estás en ninguna cola." in no_queues.text
        # Each view is a link, the current one marked.
        assert re.search(
            r'href="/console\?view=unassigned&amp;status=open" id="view-unassigned"',
            unassigned.text,
        )
        assert 'id="view-unassigned" aria-current="page"' in unassigned.text
        # The queue of each conversation is shown.
        assert "Ventas" in unassigned.text
        assert "Devoluciones" in unassigned.text
        for bad in ("/console?view=everything", "/console?view=channel&channel=fax"):
            answer = await boss.get(bad)
            assert answer.status_code == 422, bad
            assert "no existe" in answer.text

    async with signed_in(app, center.ana_email) as ana:
        assert rows_of(await ana.get("/console?view=queues")) == [center.sales_conversation]
        assert rows_of(await ana.get("/console?view=unassigned")) == [center.sales_conversation]
        page = await ana.get(f"/console/conversations/{center.sales_conversation}")
        taken = await ana.post(
            f"/console/conversations/{center.sales_conversation}/take",
            data={"csrf_token": csrf_of(page)},
        )
        assert taken.status_code == 303
        assert rows_of(await ana.get("/console?view=mine")) == [center.sales_conversation]
        assert rows_of(await ana.get("/console?view=unassigned")) == []
        # Ana cannot see the returns conversation in any view.
        assert rows_of(await ana.get("/console?view=channel&channel=email")) == []
    assert (await conversation(client, tenant, center.sales_conversation))["assignee"] == center.ana


async def test_the_sla_at_risk_view_lists_warnings_and_breaches_soonest_due_first(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: list[datetime]
) -> None:
    policy = await client.post(
        "/v1/sla-policies",
        json={"name": "Respuesta en 10 minutos", "first_response_seconds": 600},
        headers=tenant.headers,
    )
    assert policy.status_code == 201, policy.text
    channel = await add_channel(client, tenant, "whatsapp")
    supervisor = await make_agent(client, tenant)

    async def customer_writes(phone: str, name: str) -> str:
        response = await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value=phone,
            name=name,
        )
        assert response.status_code == 200, response.text
        await app.state.worker.run_once()
        conversation_id: str = response.json()["conversation_id"]
        return conversation_id

    first = await customer_writes("+34600000101", "Primera")
    frozen[0] += timedelta(minutes=5)
    second = await customer_writes("+34600000102", "Segunda")
    frozen[0] += timedelta(minutes=1)
    third = await customer_writes("+34600000103", "Tercera")

    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        # 10:09: the first is at 9 of its 10 minutes (past the 80 % warning), the others not.
        frozen[0] = datetime(2026, 11, 23, 10, 9, tzinfo=UTC)
        at_risk = await boss.get("/console?view=at_risk")
        assert rows_of(at_risk) == [first]
        assert "En riesgo" in at_risk.text
        # 10:13: the first is overdue, the second warned; the third still on time.
        frozen[0] = datetime(2026, 11, 23, 10, 13, tzinfo=UTC)
        await app.state.worker.run_once()
        at_risk = await boss.get("/console?view=at_risk")
        assert rows_of(at_risk) == [first, second]
        assert "Incumplido" in at_risk.text
        assert third not in at_risk.text
        # Replying meets the first response: it leaves the view.
        page = await boss.get(f"/console/conversations/{first}")
        replied = await boss.post(
            f"/console/conversations/{first}/reply",
            data={"csrf_token": csrf_of(page), "text": "Perdona la espera"},
        )
        assert replied.status_code == 303
        await app.state.worker.run_once()
        assert rows_of(await boss.get("/console?view=at_risk")) == [second]
        # The open inbox shows every conversation's SLA state.
        assert "En plazo" in (await boss.get("/console")).text


# --- the composer -----------------------------------------------------------------------------


async def test_the_composer_lists_every_channel_with_the_reason_it_cannot_be_used(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    sms = await add_channel(client, tenant, "sms", "SMS Tienda")
    email = await add_channel(client, tenant, "email", "Correo Tienda")
    telegram = await add_channel(client, tenant, "telegram", "Telegram Tienda")
    disabled = await client.patch(
        f"/v1/channels/{telegram}", json={"disabled": True}, headers=tenant.headers
    )
    assert disabled.status_code == 200, disabled.text
    received = (
        await inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600222333",
            name="Ana García",
        )
    ).json()
    customer_id, conversation_id = received["customer_id"], received["conversation_id"]
    for purpose, kind in (("service", "sms"), ("marketing", "whatsapp")):
        consent = await client.post(
            f"/v1/customers/{customer_id}/consents",
            json={"purpose": purpose, "channel_kind": kind, "granted": False},
            headers=tenant.headers,
        )
        assert consent.status_code == 201, consent.text
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{conversation_id}"

    page = await client.get(url)

    text = page.text
    # WhatsApp, where Ana wrote, is the default; refusing marketing does not stop a service reply.
    assert f'<option value="{whatsapp}" selected>' in text
    for channel_id in (sms, email, telegram):
        assert f'<option value="{channel_id}" disabled>' in text
    reasons = {
        sms: "El cliente pidió no recibir mensajes de atención en este canal.",
        email: "El cliente no tiene dirección en este canal.",
        telegram: "Este canal está desactivado.",
    }
    for channel_id, reason in reasons.items():
        item = re.search(rf'<li id="reason-{channel_id}"[^>]*>(.*?)</li>', text, re.S)
        assert item is not None, channel_id
        assert reason in item.group(1)
    assert f'id="reason-{whatsapp}"' not in text

    refused = await client.post(
        f"{url}/reply", data={"csrf_token": csrf_of(page), "text": "Hola", "channel_id": sms}
    )
    assert refused.status_code == 422
    assert "SMS · SMS Tienda: El cliente pidió no recibir mensajes de atención" in refused.text
    assert len(await messages_of(client, tenant, conversation_id)) == 1


async def test_whatsapps_closed_window_is_explained_and_the_reply_defaults_elsewhere(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: list[datetime]
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    email = await add_channel(client, tenant, "email", "Correo Tienda")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600222444",
            name="Ana García",
        )
    ).json()
    await identify(client, tenant, ("whatsapp", "+34600222444"), ("email", "ana@example.es"))
    frozen[0] += timedelta(hours=25)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{received['conversation_id']}"

    page = await client.get(url)

    assert f'<option value="{whatsapp}" disabled>' in page.text
    assert f'<option value="{email}" selected>' in page.text
    reason = re.search(rf'<li id="reason-{whatsapp}"[^>]*>(.*?)</li>', page.text, re.S)
    assert reason is not None
    assert "La ventana de 24 horas de WhatsApp está cerrada" in reason.group(1)
    assert "plantilla aprobada" in reason.group(1)
    assert "El cliente escribió por allí por última vez hace 1 día" in reason.group(1)

    token = csrf_of(page)
    refused = await client.post(
        f"{url}/reply", data={"csrf_token": token, "text": "Hola", "channel_id": whatsapp}
    )
    assert refused.status_code == 422
    assert "La ventana de 24 horas de WhatsApp está cerrada" in refused.text
    sent = await client.post(f"{url}/reply", data={"csrf_token": token, "text": "Te escribo aquí"})
    assert sent.status_code == 303
    *_, reply = await messages_of(client, tenant, received["conversation_id"])
    assert (reply["text"], reply["channel_id"]) == ("Te escribo aquí", email)


async def test_canned_responses_are_offered_rendered_for_the_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600222555",
            name="Marta Ruiz",
        )
    ).json()
    for language, text in (
        ("es", "Hola {{customer.first_name}}, soy {{agent.first_name}} de {{business.name}}."),
        ("en", "Hi {{customer.first_name}}!"),
    ):
        created = await client.post(
            "/v1/canned-responses",
            json={"shortcut": "saludo", "title": "Saludo", "text": text, "language": language},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
    other = await make_tenant("Otra tienda")
    theirs = await client.post(
        "/v1/canned-responses",
        json={"shortcut": "secreto", "title": "Secreto", "text": "De otra tienda"},
        headers=other.headers,
    )
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{received['conversation_id']}"

    page = await client.get(url)

    # One per shortcut, in the customer's language (here the console's: Spanish).
    rendered = "Hola Marta, soy Lucía de Tienda de prueba."
    assert f'data-shortcut="saludo" data-text="{rendered}"' in page.text
    assert "Hi Marta!" not in page.text
    assert "De otra tienda" not in page.text
    listed = await client.get("/v1/canned-responses", headers=tenant.headers)
    [spanish] = [r for r in listed.json() if r["language"] == "es"]
    # Without JavaScript, the picker reloads the page with the response in the composer.
    chosen = await client.get(f"{url}?canned={spanish['id']}")
    assert re.search(
        rf"<textarea id=\"reply-text\"[^>]*>{re.escape(rendered)}</textarea>", chosen.text
    )
    assert (await client.get(f"{url}?canned={theirs.json()['id']}")).status_code == 404


# --- status, snooze, assignment ---------------------------------------------------------------


async def test_snoozing_takes_a_time_in_the_tenants_zone_and_refuses_bad_times(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: list[datetime]
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600222666",
        )
    ).json()
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{received['conversation_id']}"
    page = await client.get(url)
    token = csrf_of(page)
    # The form proposes tomorrow at 9 in Madrid, and no earlier than now there.
    assert 'value="2026-11-24T09:00"' in page.text
    assert 'min="2026-11-23T11:00"' in page.text

    for until, message in (
        ("2026-11-23T10:30", "Elige un momento futuro hasta el que posponer."),
        ("mañana a las 9", "Elige el día y la hora hasta la que posponer."),
        ("2026-13-40T25:00", "Elige el día y la hora hasta la que posponer."),
        ("2026-11-24T09:00+05:00", "Elige el día y la hora hasta la que posponer."),
        ("", "Elige el día y la hora hasta la que posponer."),
    ):
        refused = await client.post(f"{url}/snooze", data={"csrf_token": token, "until": until})
        assert refused.status_code == 422, until
        assert message in refused.text
        assert f'href="{url}"' in refused.text
    forged = await client.post(f"{url}/snooze", data={"until": "2026-11-24T09:00"})
    assert forged.status_code == 403
    assert (await conversation(client, tenant, received["conversation_id"]))["status"] == "open"

    # 09:00 in Madrid in November is 08:00 UTC.
    snoozed = await client.post(
        f"{url}/snooze", data={"csrf_token": token, "until": "2026-11-24T09:00"}
    )
    assert snoozed.status_code == 303
    stored = await conversation(client, tenant, received["conversation_id"])
    assert stored["status"] == "snoozed"
    assert stored["snoozed_until"].startswith("2026-11-24T08:00:00")
    page = await client.get(url)
    assert "Pospuesta hasta" in page.text


async def test_a_supervisor_assigns_and_transfers_with_a_note_and_an_agent_only_their_own(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    center = await contact_center(app, client, tenant)
    supervisor = await make_agent(client, tenant)
    url = f"/console/conversations/{center.sales_conversation}"

    async with signed_in(app, center.ana_email) as ana:
        page = await ana.get(url)
        # Not hers yet: she can take it, not transfer it.
        assert 'id="take-conversation"' in page.text
        assert 'id="transfer-form"' not in page.text
        refused = await ana.post(
            f"{url}/transfer",
            data={"csrf_token": csrf_of(page), "target": f"queue:{center.returns}", "note": "x"},
        )
        assert refused.status_code == 403
    assert (await conversation(client, tenant, center.sales_conversation))["assignee"] is None

    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        page = await boss.get(url)
        assert 'id="transfer-form"' in page.text
        assert f'<option value="agent:{center.bruno}">' in page.text
        assert f'<option value="queue:{center.returns}">Devoluciones</option>' in page.text
        token = csrf_of(page)
        for target, status in (("robot:1", 422), ("agent:", 422), ("agent:nadie", 404)):
            answer = await boss.post(
                f"{url}/transfer", data={"csrf_token": token, "target": target}
            )
            assert answer.status_code == status, target
        too_long = await boss.post(
            f"{url}/transfer",
            data={"csrf_token": token, "target": f"agent:{center.bruno}", "note": "x" * 5001},
        )
        assert too_long.status_code == 422
        assert (await conversation(client, tenant, center.sales_conversation))["assignee"] is None

        moved = await boss.post(
            f"{url}/transfer",
            data={
                "csrf_token": token,
                "target": f"agent:{center.bruno}",
                "note": "Pregunta por una devolución",
            },
        )
        assert moved.status_code == 303
        assert moved.headers["location"] == url
        assert (await conversation(client, tenant, center.sales_conversation))[
            "assignee"
        ] == center.bruno
        note = (await messages_of(client, tenant, center.sales_conversation))[-1]
        assert (note["direction"], note["text"]) == ("note", "Pregunta por una devolución")
        page = await boss.get(url)
        assert "Pregunta por una devolución" in page.text
        # Why it is there: the routing log, with the note.
        assert "transferred to agent" in page.text

    # Bruno has it now, and hands it to the returns queue: out of his hands, still his queue's.
    async with signed_in(app, center.bruno_email) as bruno:
        page = await bruno.get(url)
        assert 'id="transfer-form"' in page.text
        handed = await bruno.post(
            f"{url}/transfer",
            data={"csrf_token": csrf_of(page), "target": f"queue:{center.returns}", "note": ""},
        )
        assert handed.status_code == 303
    after = await conversation(client, tenant, center.sales_conversation)
    assert after["queue"] == center.returns
    # Ana (sales) no longer sees it: it is in the returns queue now.
    async with signed_in(app, center.ana_email) as ana:
        assert (await ana.get(url)).status_code == 404


async def test_status_buttons_check_who_asks(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    center = await contact_center(app, client, tenant)
    url = f"/console/conversations/{center.sales_conversation}"
    async with signed_in(app, center.ana_email) as ana:
        token = csrf_of(await ana.get(url))
        for status in ("pending", "resolved"):
            answer = await ana.post(f"{url}/status", data={"csrf_token": token, "status": status})
            assert answer.status_code == 303
            assert (await conversation(client, tenant, center.sales_conversation))[
                "status"
            ] == status
        bad = await ana.post(f"{url}/status", data={"csrf_token": token, "status": "snoozed"})
        assert bad.status_code == 422


# --- presence -----------------------------------------------------------------------------------


async def test_the_presence_switch_sets_the_agents_presence(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    center = await contact_center(app, client, tenant)
    supervisor = await make_agent(client, tenant)

    async with signed_in(app, center.ana_email) as ana:
        inbox = await ana.get("/console?view=mine")
        assert 'id="presence-switch"' in inbox.text
        assert 'id="presence-offline" class="segment presence-offline" aria-pressed="true"' in (
            inbox.text
        )
        assert 'name="next" value="/console?view=mine"' in inbox.text
        token = csrf_of(inbox)
        online = await ana.post(
            "/console/presence",
            data={"csrf_token": token, "status": "online", "next": "/console?view=mine"},
        )
        assert online.status_code == 303
        assert online.headers["location"] == "/console?view=mine"
        agent = await client.get(f"/v1/agents/{center.ana}", headers=tenant.headers)
        assert agent.json()["presence"] == "online"
        # Coming online, she is given the conversation waiting in her queue at once.
        assert (await conversation(client, tenant, center.sales_conversation))[
            "assignee"
        ] == center.ana
        page = await ana.get("/console")
        assert 'id="presence-online" class="segment presence-online" aria-pressed="true"' in (
            page.text
        )
        elsewhere = await ana.post(
            "/console/presence",
            data={"csrf_token": token, "status": "away", "next": "https://evil.example/"},
        )
        assert elsewhere.headers["location"] == "/console"
        bad = await ana.post("/console/presence", data={"csrf_token": token, "status": "asleep"})
        assert bad.status_code == 422
        forged = await ana.post("/console/presence", data={"status": "offline"})
        assert forged.status_code == 403
    agent = await client.get(f"/v1/agents/{center.ana}", headers=tenant.headers)
    assert agent.json()["presence"] == "away"

    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        inbox = await boss.get("/console")
        assert 'id="presence-switch"' not in inbox.text
        refused = await boss.post(
            "/console/presence", data={"csrf_token": csrf_of(inbox), "status": "online"}
        )
        assert refused.status_code == 409


# --- the screen pop -----------------------------------------------------------------------------


async def ring(
    client: httpx.AsyncClient, channel_id: str, *, call_id: str, caller: str, event: str
) -> None:
    body = {
        "call_id": call_id,
        "event": event,
        "from": caller,
        "occurred_at": clock.now().isoformat(),
    }
    response = await client.post(
        f"/webhooks/voice/{channel_id}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {PBX_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def call_message(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str
) -> tuple[str, str]:
    """The customer's conversation and the call's entry in it."""
    response = await client.get(
        "/v1/conversations", params={"customer_id": customer_id}, headers=tenant.headers
    )
    [found] = response.json()["items"]
    messages = await messages_of(client, tenant, found["id"])
    [call] = [m for m in messages if m["kind"] == "call"]
    return found["id"], call["id"]


async def test_a_ringing_call_pops_up_for_those_who_take_calls(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    phone = await add_configured_channel(client, tenant, "voice", {"auth_token": PBX_TOKEN})
    await create_queue(client, tenant, "Teléfono", skills=["llamadas"], channel_kinds=["phone"])
    carla_email = unique("carla")
    await create_agent(client, tenant, carla_email, skills={"llamadas": 1}, online=False)
    center = await contact_center(app, client, tenant)
    supervisor = await make_agent(client, tenant)
    known = await identify(client, tenant, ("phone", "+34600999888"), name="Carmen Vidal")
    await ring(client, phone, call_id="c-1", caller="+34600999888", event="ringing")
    conversation_id, call_id = await call_message(client, tenant, known["customer_id"])

    async with signed_in(app, carla_email) as carla:
        pop = await carla.get(f"/console/calls/{call_id}")
        assert pop.status_code == 200
        assert "Llamada entrante" in pop.text
        assert "Carmen Vidal" in pop.text
        assert "+34600999888" in pop.text
        assert f'href="/console/customers/{known["customer_id"]}"' in pop.text
        # The conversation is not routed to her queue yet: the 360 view, not the thread.
        assert f'href="/console/conversations/{conversation_id}"' not in pop.text
    async with signed_in(app, supervisor.email, "clave-de-prueba-1") as boss:
        pop = await boss.get(f"/console/calls/{call_id}")
        assert pop.status_code == 200
        assert f'href="/console/conversations/{conversation_id}"' in pop.text
        # A message that is no call pops nothing.
        first_message = (await messages_of(client, tenant, center.sales_conversation))[0]["id"]
        assert (await boss.get(f"/console/calls/{first_message}")).status_code == 404
    async with signed_in(app, center.ana_email) as ana:
        assert (await ana.get(f"/console/calls/{call_id}")).status_code == 404

    await ring(client, phone, call_id="c-1", caller="+34600999888", event="answered")
    async with signed_in(app, carla_email) as carla:
        assert (await carla.get(f"/console/calls/{call_id}")).status_code == 404


async def test_the_live_stream_carries_ringing_calls_and_sla_events(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    phone = await add_configured_channel(client, tenant, "voice", {"auth_token": PBX_TOKEN})
    known = await identify(client, tenant, ("phone", "+34600999777"), name="Carmen Vidal")
    agent = await make_agent(client, tenant)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as web:
        assert (await sign_in(web, agent.email)).status_code == 303
        async with web.stream("GET", "/console/events") as response:
            events = EventStream(response)
            assert await events.next() == {"topic": "ready"}
            await ring(client, phone, call_id="c-9", caller="+34600999777", event="ringing")
            await relay(app.state.sessionmaker, app.state.bus)
            conversation_id, call_id = await call_message(client, tenant, known["customer_id"])
            seen = [await events.next()]
            while seen[-1]["topic"] != "call.ringing":
                seen.append(await events.next())
            assert seen[-1] == {
                "topic": "call.ringing",
                "conversation_id": conversation_id,
                "message_id": call_id,
            }

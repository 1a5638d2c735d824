"""Surveys: CSAT after a resolved conversation on the channel it ended on, NPS after a delivery,
CES after CSAT; answered by a number in any channel ("4" by SMS, "un 9 porque..." on WhatsApp,
a button), on the email link's page in Spanish and English, or through the API; one answer per
survey per customer; delays on the clock; another tenant's ids are not found."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import extract_from_file
from sqlalchemy import func, select

from hilos.analytics import survey_pages, surveys
from hilos.analytics.survey_models import SurveyResponse
from hilos.core import clock
from hilos.core.models import OutboxEvent
from hilos.core.outbox import relay
from hilos.web.i18n import translations
from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel, deliver
from tests.channels.test_whatsapp import post_signed
from tests.commerce.orders_helpers import advance, location, place, product, receive
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.routing.helpers import ManualClock

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE = "+34600111222"

# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def moment() -> Iterator[ManualClock]:
    manual = ManualClock(START)
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def settle(app: Any) -> int:
    """Relay the outbox (the survey consumer runs there) and send due invitations, until
    nothing is left; return how many invitations were sent."""
    sent = 0
    for _ in range(10):
        published = 0
        while (batch := await relay(app.state.sessionmaker, app.state.bus)) > 0:
            published += batch
        now_sent = await surveys.send_due(app.state.sessionmaker)
        sent += now_sent
        if not published and not now_sent:
            break
    return sent


async def turn_on(client: httpx.AsyncClient, tenant: TenantHandle, **body: Any) -> dict[str, Any]:
    response = await client.put("/v1/surveys/settings", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def write(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    channel_id: str,
    text: str,
    *,
    external_id: str,
    kind: str = "whatsapp",
    value: str = PHONE,
) -> dict[str, Any]:
    response = await inbound(
        client, tenant, channel_id=channel_id, external_id=external_id, kind=kind, value=value,
        text=text,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def resolve(client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str) -> None:
    response = await client.patch(
        f"/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text


async def conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def messages(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def by_surveys(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m
        for m in items
        if m["direction"] == "outbound"
        and ((m["data"] or {}).get("automated") or {}).get("by") == "surveys"
    ]


def questions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in by_surveys(items) if "invitation_id" in m["data"]["automated"]]


async def invitations(
    client: httpx.AsyncClient, tenant: TenantHandle, **query: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/surveys/invitations", params=query, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def answers(
    client: httpx.AsyncClient, tenant: TenantHandle, **query: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/surveys/responses", params=query, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def answer(client: httpx.AsyncClient, tenant: TenantHandle, **body: Any) -> httpx.Response:
    return await client.post("/v1/surveys/responses", json=body, headers=tenant.headers)


def link_in(message: dict[str, Any]) -> str:
    match = re.search(r"http://[^\s]+/survey/([0-9a-f]{32}\.[\w-]+)", message["text"])
    assert match is not None, message["text"]
    return f"/survey/{match.group(1)}"


async def count_responses(app: Any, tenant: TenantHandle) -> int:
    async with app.state.sessionmaker() as session:
        total = await session.scalar(
            select(func.count())
            .select_from(SurveyResponse)
            .where(SurveyResponse.tenant_id == tenant.id)
        )
    return int(total or 0)


# --- sending ------------------------------------------------------------------------------------


async def test_csat_goes_after_its_delay_on_the_channel_the_conversation_ended_on(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    settings = await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 30})
    assert settings["csat"] == {"enabled": True, "delay_minutes": 30}
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")

    # Ana writes on WhatsApp only.
    ana = await write(client, tenant, whatsapp, "Hola, ¿dónde está mi pedido?", external_id="a1")
    # Bruno starts on WhatsApp and ends by email.
    bruno_phone = "+34600333444"
    await identify(
        client, tenant, ("whatsapp", bruno_phone), ("email", "bruno@example.com"), name="Bruno"
    )
    bruno = await write(client, tenant, whatsapp, "Hola", external_id="b1", value=bruno_phone)
    await write(
        client, tenant, email, "Os mando la factura", external_id="b2", kind="email",
        value="bruno@example.com",
    )  # fmt: skip
    for started in (ana, bruno):
        await resolve(client, tenant, started["conversation_id"])
    await settle(app)

    # Not before its delay.
    moment.advance(minutes=29)
    await settle(app)
    assert questions(await messages(client, tenant, ana["conversation_id"])) == []
    pending = await invitations(client, tenant, status="pending")
    assert {i["conversation_id"] for i in pending} == {
        ana["conversation_id"],
        bruno["conversation_id"],
    }

    moment.advance(minutes=2)
    assert await settle(app) == 2
    [to_ana] = questions(await messages(client, tenant, ana["conversation_id"]))
    assert to_ana["channel_id"] == whatsapp
    assert to_ana["text"] == (
        "¿Cómo valorarías la atención que has recibido? "
        "Responde con un número del 1 (muy mala) al 5 (excelente)."
    )
    [to_bruno] = questions(await messages(client, tenant, bruno["conversation_id"]))
    assert to_bruno["channel_id"] == email
    assert to_bruno["data"]["subject"] == "Una pregunta rápida sobre tu experiencia"
    link = link_in(to_bruno)
    assert link in to_bruno["data"]["html"]
    # One link per score in the email, each opening the page with that score chosen.
    assert all(f"{link}?score={n}" in to_bruno["data"]["html"] for n in range(1, 6))
    sent = {i["conversation_id"]: i for i in await invitations(client, tenant, status="sent")}
    assert sent[ana["conversation_id"]]["channel_kind"] == "whatsapp"
    assert sent[bruno["conversation_id"]]["channel_kind"] == "email"
    # Nothing is sent twice.
    moment.advance(hours=1)
    assert await settle(app) == 0


async def test_surveys_are_off_until_switched_on(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    defaults = (await client.get("/v1/surveys/settings", headers=tenant.headers)).json()
    assert defaults["csat"]["enabled"] is False
    assert defaults["nps"]["enabled"] is False
    assert defaults["scales"] == {"csat": [1, 5], "nps": [0, 10], "ces": [1, 7]}
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="off-1")
    await resolve(client, tenant, started["conversation_id"])
    moment.advance(days=1)
    await settle(app)
    assert await invitations(client, tenant) == []
    assert questions(await messages(client, tenant, started["conversation_id"])) == []


async def test_an_sms_reply_4_is_the_answer_and_the_next_message_its_comment(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 5})
    sms = await add_channel(client, tenant, "sms")
    started = await write(
        client, tenant, sms, "Mi pedido llegó roto", external_id="s1", kind="phone"
    )
    conversation_id = started["conversation_id"]
    await resolve(client, tenant, conversation_id)
    moment.advance(minutes=5)
    await settle(app)
    [question] = questions(await messages(client, tenant, conversation_id))
    assert question["channel_id"] == sms
    assert "del 1 (muy mala) al 5 (excelente)" in question["text"]

    moment.advance(minutes=3)
    await write(client, tenant, sms, "4", external_id="s2", kind="phone")
    await settle(app)
    [recorded] = await answers(client, tenant, kind="csat")
    assert recorded["score"] == 4
    assert recorded["channel"] == "sms"
    assert recorded["source"] == "message"
    assert recorded["conversation_id"] == conversation_id
    assert recorded["comment"] is None
    # The answer does not reopen the conversation, and the customer is thanked and asked why.
    assert (await conversation(client, tenant, conversation_id))["status"] == "resolved"
    thanks = [
        m
        for m in by_surveys(await messages(client, tenant, conversation_id))
        if m["id"] != question["id"]
    ]
    assert [m["text"] for m in thanks] == [
        "¡Gracias por tu respuesta! Si quieres, cuéntanos el motivo en tu próximo mensaje."
    ]
    assert thanks[0]["channel_id"] == sms

    # The next message is the comment; it reopens nothing either.
    moment.advance(minutes=10)
    await write(client, tenant, sms, "El repartidor fue muy amable", external_id="s3", kind="phone")
    await settle(app)
    [recorded] = await answers(client, tenant, kind="csat")
    assert recorded["comment"] == "El repartidor fue muy amable"
    assert (await conversation(client, tenant, conversation_id))["status"] == "resolved"

    # A message after that is an ordinary message: it reopens the conversation.
    moment.advance(minutes=10)
    await write(
        client, tenant, sms, "Otra cosa: quiero cambiar la talla", external_id="s4", kind="phone"
    )
    await settle(app)
    [recorded] = await answers(client, tenant, kind="csat")
    assert recorded["comment"] == "El repartidor fue muy amable"
    assert (await conversation(client, tenant, conversation_id))["status"] == "open"

    # survey.answered went out, and the answer is on the customer's timeline.
    async with app.state.sessionmaker() as session:
        events = (
            (
                await session.execute(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == "survey.answered"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [
        {k: e[k] for k in ("kind", "score", "customer_id", "channel", "conversation_id")}
        for e in events
    ] == [
        {
            "kind": "csat",
            "score": 4,
            "customer_id": started["customer_id"],
            "channel": "sms",
            "conversation_id": conversation_id,
        }
    ]
    profile = (
        await client.get(f"/v1/customers/{started['customer_id']}", headers=tenant.headers)
    ).json()
    surveyed = [item for item in profile["timeline"] if item["type"] == "survey"]
    assert {(item["name"], item["properties"].get("score")) for item in surveyed} == {
        ("csat", 4),
        ("comment", 4),
    }


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("4", "csat", (4, None)),
        ("un 9 porque el envío fue rápido", "nps", (9, "porque el envío fue rápido")),
        ("9/10", "nps", (9, None)),
        ("10/10!! genial", "nps", (10, "genial")),
        ("4 de 5, bien", "csat", (4, "bien")),
        ("Le doy un 8", "nps", (8, None)),
        ("I'd give it a 4 - quick answer", "csat", (4, "quick answer")),
        ("0", "nps", (0, None)),
        ("7", "ces", (7, None)),
        # Out of range, another scale, or no number first: not an answer.
        ("9", "csat", None),
        ("0", "csat", None),
        ("3/10", "csat", None),
        ("Mi pedido 12345 no llegó", "csat", None),
        ("Tengo 2 preguntas", "csat", None),
        ("", "nps", None),
    ],
)
def test_reading_a_number_as_the_answer(
    text: str, kind: str, expected: tuple[int, str | None] | None
) -> None:
    assert surveys.parse_answer(text, kind) == expected


async def test_nps_after_delivery_answered_on_another_channel_with_its_comment(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, nps={"enabled": True, "after_order": True, "delay_days": 2})
    email = await add_channel(client, tenant, "email")
    whatsapp = await add_channel(client, tenant, "whatsapp")
    customer = await identify(
        client, tenant, ("email", "lucia@example.com"), ("whatsapp", PHONE), name="Lucía",
        traits={"preferred_channel": "email"},
    )  # fmt: skip
    await location(client, tenant, "ALM")
    await product(client, tenant, "TAZA")
    await receive(client, tenant, "TAZA", "ALM", 5)
    placed = await place(client, tenant, {"sku": "TAZA", "quantity": 1})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    await advance(client, tenant, order_id, "shipped")
    await settle(app)
    assert await invitations(client, tenant) == []  # shipped is not delivered
    await advance(client, tenant, order_id, "delivered")
    await settle(app)
    [invitation] = await invitations(client, tenant)
    assert (invitation["kind"], invitation["status"], invitation["order_id"]) == (
        "nps",
        "pending",
        order_id,
    )
    assert invitation["trigger"] == "order.delivered"

    moment.advance(days=2)
    assert await settle(app) == 1
    [invitation] = await invitations(client, tenant)
    assert invitation["channel_kind"] == "email"  # her preferred channel
    question = next(
        m
        for m in await messages(client, tenant, invitation["conversation_id"])
        if m["id"] == invitation["message_id"]
    )
    assert question["channel_id"] == email
    assert "Tienda de prueba" in question["text"]

    # She answers on WhatsApp, a day later.
    moment.advance(days=1)
    reply = await write(
        client, tenant, whatsapp, "un 9 porque el envío fue rapidísimo", external_id="n1"
    )
    await settle(app)
    [recorded] = await answers(client, tenant, kind="nps")
    assert recorded["customer_id"] == customer["customer_id"]
    assert (recorded["score"], recorded["comment"]) == (9, "porque el envío fue rapidísimo")
    assert recorded["channel"] == "whatsapp"
    assert recorded["order_id"] == order_id
    [invitation] = await invitations(client, tenant, kind="nps")
    assert invitation["status"] == "answered"
    # The conversation her answer started is resolved again, and asks no CSAT of its own.
    assert (await conversation(client, tenant, reply["conversation_id"]))["status"] == "resolved"
    moment.advance(hours=1)
    await settle(app)
    assert {i["status"] for i in await invitations(client, tenant, kind="csat")} <= {"skipped"}

    # Another delivered order within the NPS period asks nothing more.
    again = await place(client, tenant, {"sku": "TAZA", "quantity": 1}, key="order-2")
    await advance(client, tenant, again.json()["id"], "shipped")
    await advance(client, tenant, again.json()["id"], "delivered")
    moment.advance(days=3)
    await settle(app)
    assert len(await invitations(client, tenant, kind="nps")) == 1


async def test_ces_waits_for_the_csat_answer_one_question_at_a_time(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(
        client,
        tenant,
        csat={"enabled": True, "delay_minutes": 10},
        ces={"enabled": True, "delay_minutes": 10},
    )
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Quiero devolver unas botas", external_id="c1")
    conversation_id = started["conversation_id"]
    await resolve(client, tenant, conversation_id)
    moment.advance(minutes=11)
    assert await settle(app) == 1
    [csat] = questions(await messages(client, tenant, conversation_id))
    assert csat["data"]["automated"]["kind"] == "csat"
    [ces] = await invitations(client, tenant, kind="ces")
    assert ces["status"] == "pending"

    # The CES waits while the CSAT waits for its answer.
    moment.advance(minutes=30)
    assert await settle(app) == 0
    assert (await invitations(client, tenant, kind="ces"))[0]["status"] == "pending"
    await write(client, tenant, whatsapp, "5", external_id="c3")
    await settle(app)
    asked = questions(await messages(client, tenant, conversation_id))
    assert [m["data"]["automated"]["kind"] for m in asked] == ["csat", "ces"]
    assert "del 1 (muy difícil) al 7 (muy fácil)" in asked[1]["text"]
    moment.advance(minutes=1)
    await write(client, tenant, whatsapp, "6", external_id="c4")
    await settle(app)
    assert {(a["kind"], a["score"]) for a in await answers(client, tenant)} == {
        ("csat", 5),
        ("ces", 6),
    }


async def test_a_number_out_of_range_is_an_ordinary_message(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 0})
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="o1")
    await resolve(client, tenant, started["conversation_id"])
    await settle(app)
    moment.advance(minutes=1)
    await write(client, tenant, whatsapp, "7", external_id="o2")
    await settle(app)
    assert await answers(client, tenant) == []
    assert (await invitations(client, tenant))[0]["status"] == "sent"
    assert (await conversation(client, tenant, started["conversation_id"]))["status"] == "open"
    # Past the answer window, a number answers nothing either.
    moment.advance(hours=73)
    await write(client, tenant, whatsapp, "5", external_id="o3")
    await settle(app)
    assert await answers(client, tenant) == []


async def test_a_conversation_reopened_before_its_csat_is_asked_about_when_resolved_again(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 30})
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="r1")
    conversation_id = started["conversation_id"]
    await resolve(client, tenant, conversation_id)
    await settle(app)
    moment.advance(minutes=10)
    await write(client, tenant, whatsapp, "Perdona, otra pregunta", external_id="r2")
    moment.advance(minutes=25)
    await settle(app)
    [invitation] = await invitations(client, tenant)
    assert (invitation["status"], invitation["reason"]) == ("skipped", "conversation_reopened")
    await resolve(client, tenant, conversation_id)
    await settle(app)
    moment.advance(minutes=30)
    assert await settle(app) == 1
    assert len(questions(await messages(client, tenant, conversation_id))) == 1


async def test_a_refusal_of_service_messages_on_the_channel_is_respected(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 0})
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="x1")
    refused = await client.post(
        f"/v1/customers/{started['customer_id']}/consents",
        json={"purpose": "service", "channel_kind": "whatsapp", "granted": False},
        headers=tenant.headers,
    )
    assert refused.status_code == 201, refused.text
    await resolve(client, tenant, started["conversation_id"])
    await settle(app)
    [invitation] = await invitations(client, tenant)
    assert (invitation["status"], invitation["reason"]) == ("skipped", "no_service_consent")
    assert questions(await messages(client, tenant, started["conversation_id"])) == []


async def test_the_worker_sends_due_invitations_in_its_loop(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 1})
    chat = await add_channel(client, tenant, "web_chat")
    started = await write(
        client, tenant, chat, "Hola", external_id="w1", kind="anonymous", value="device-w1"
    )
    await resolve(client, tenant, started["conversation_id"])
    await app.state.worker.run_once()
    moment.advance(minutes=2)
    done = await app.state.worker.run_once()
    assert done.get("surveys_sent", 0) >= 1
    [question] = questions(await messages(client, tenant, started["conversation_id"]))
    assert question["channel_id"] == chat


# --- a WhatsApp button, the adapter's text --------------------------------------------------------


async def test_whatsapp_gets_the_question_as_text_and_a_survey_button_reply_is_read(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 0})
    whatsapp = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    wa_id = "34612000111"
    hello = fake_whatsapp.text_webhook(
        wa_id=wa_id, wamid="wamid.hello", text="Hola", timestamp=int(START.timestamp())
    )
    posted = await post_signed(client, whatsapp, hello)
    assert posted.status_code == 200, posted.text
    [stored] = posted.json()["messages"]
    await resolve(client, tenant, stored["conversation_id"])
    await settle(app)
    [invitation] = await invitations(client, tenant)

    # The adapter sends text (it has no interactive messages): the question reaches Meta so.
    provider = fake_whatsapp.FakeWhatsApp()
    await deliver(app, provider, tenant)
    [sent] = provider.sent
    assert sent["type"] == "text"
    assert "Responde con un número del 1" in sent["text"]["body"]

    tap = fake_whatsapp.message_webhook(
        wa_id=wa_id,
        name="Carmen",
        message={
            "from": wa_id,
            "id": "wamid.tap",
            "timestamp": str(int(START.timestamp()) + 60),
            "type": "interactive",
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": f"survey:{invitation['id']}:5", "title": "Excelente"},
            },
        },
    )
    assert (await post_signed(client, whatsapp, tap)).status_code == 200
    await settle(app)
    [recorded] = await answers(client, tenant)
    assert (recorded["kind"], recorded["score"], recorded["comment"]) == ("csat", 5, None)
    assert recorded["invitation_id"] == invitation["id"]


# --- the answer page ------------------------------------------------------------------------------


async def email_invitation(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    moment: ManualClock,
    *,
    address: str,
    language: str | None = None,
) -> tuple[dict[str, Any], str]:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 0})
    email = await add_channel(client, tenant, "email")
    if language:
        await identify(client, tenant, ("email", address), language=language)
    started = await write(
        client, tenant, email, "Necesito una factura", external_id=f"e-{address}", kind="email",
        value=address,
    )  # fmt: skip
    await resolve(client, tenant, started["conversation_id"])
    await settle(app)
    [question] = questions(await messages(client, tenant, started["conversation_id"]))
    return started, link_in(question)


async def test_the_email_link_opens_a_page_that_records_the_answer_in_spanish_and_english(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    started, link = await email_invitation(client, tenant, app, moment, address="marta@example.com")
    page = await client.get(link)  # no API key: the signed link is enough
    assert page.status_code == 200
    assert "¿Cómo valorarías la atención que has recibido?" in page.text
    assert page.text.count('type="radio" name="score"') == 5
    assert "Muy mala" in page.text
    assert "<script" not in page.text
    english = await client.get(link, params={"lang": "en"})
    assert "How would you rate the help you received?" in english.text
    assert "Anything you would like to add? (optional)" in english.text
    chosen = await client.get(link, params={"score": "4"})
    assert 'value="4" checked' in chosen.text
    # Opening the page answers nothing.
    assert await answers(client, tenant) == []

    missing = await client.post(link, data={"comment": "sin nota"})
    assert missing.status_code == 422
    assert "Elige una puntuación del 1 al 5." in missing.text
    out_of_range = await client.post(link, data={"score": "9"})
    assert out_of_range.status_code == 422
    assert await answers(client, tenant) == []

    sent = await client.post(link, data={"score": "5", "comment": "Muy rápidos"})
    assert sent.status_code == 200
    assert "¡Gracias por tu respuesta!" in sent.text
    [recorded] = await answers(client, tenant)
    assert (recorded["score"], recorded["comment"], recorded["source"]) == (
        5,
        "Muy rápidos",
        "page",
    )
    assert recorded["channel"] == "email"
    assert recorded["conversation_id"] == started["conversation_id"]

    again = await client.post(link, data={"score": "1"}, params={"lang": "en"})
    assert again.status_code == 409
    assert "You have already answered this survey. Thank you!" in again.text
    assert (await client.get(link)).status_code == 200
    assert [a["score"] for a in await answers(client, tenant)] == [5]

    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert (await client.get(forged)).status_code == 404
    assert (await client.post(forged, data={"score": "5"})).status_code == 404
    assert (await client.get("/survey/nothing")).status_code == 404


async def test_the_page_and_the_question_speak_the_customers_language(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    started, link = await email_invitation(
        client, tenant, app, moment, address="john@example.com", language="en"
    )
    [question] = questions(await messages(client, tenant, started["conversation_id"]))
    assert question["data"]["subject"] == "A quick question about your experience"
    assert question["text"].startswith("How would you rate the help you received?")
    page = await client.get(link)
    assert '<html lang="en">' in page.text
    sent = await client.post(link, data={"score": "3"})
    assert "Thank you for your answer!" in sent.text


# --- the API ----------------------------------------------------------------------------------


async def test_the_responses_api_records_refuses_twice_and_out_of_range(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    customer = {"identities": [{"kind": "email", "value": "pablo@example.com"}]}
    first = await answer(
        client, tenant, customer=customer, kind="nps", score=9, channel="web_chat",
        comment="Todo bien",
    )  # fmt: skip
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["kind"], body["score"], body["comment"], body["channel"]) == (
        "nps",
        9,
        "Todo bien",
        "web_chat",
    )
    # The same customer, NPS about nothing in particular, within the NPS period: refused.
    moment.advance(days=30)
    twice = await answer(client, tenant, customer=customer, kind="nps", score=3, channel="email")
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_answered"

    too_high = await answer(client, tenant, customer=customer, kind="csat", score=6, channel="sms")
    assert too_high.status_code == 422
    assert too_high.json()["error"]["field"] == "score"
    assert "from 1 to 5" in too_high.json()["error"]["message"]
    below = await answer(client, tenant, customer=customer, kind="ces", score=0, channel="sms")
    assert "from 1 to 7" in below.json()["error"]["message"]
    # A bad score creates no customer either.
    unknown = {"identities": [{"kind": "email", "value": "nadie@example.com"}]}
    assert (
        await answer(client, tenant, customer=unknown, kind="nps", score=11, channel="sms")
    ).status_code == 422
    search = await client.get(
        "/v1/customers", params={"identity": "email:nadie@example.com"}, headers=tenant.headers
    )
    assert search.status_code == 200
    assert search.json()["items"] == []
    bad_channel = await answer(
        client, tenant, customer=customer, kind="nps", score=5, channel="fax"
    )
    assert bad_channel.status_code == 422
    assert await count_responses(app, tenant) == 1

    # After the period, the customer may answer NPS again.
    moment.advance(days=61)
    later = await answer(client, tenant, customer=customer, kind="nps", score=10, channel="email")
    assert later.status_code == 201, later.text
    assert [a["score"] for a in await answers(client, tenant, kind="nps")] == [10, 9]


async def test_one_answer_per_conversation_survey_even_from_simultaneous_requests(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="p1")
    body = {
        "customer_id": started["customer_id"],
        "kind": "csat",
        "score": 4,
        "channel": "whatsapp",
        "conversation_id": started["conversation_id"],
    }
    results = await asyncio.gather(*(answer(client, tenant, **body) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409, 409]
    assert await count_responses(app, tenant) == 1
    # Another kind about the same conversation is another survey.
    ces = await answer(client, tenant, **{**body, "kind": "ces", "score": 6})
    assert ces.status_code == 201, ces.text


async def test_an_answer_through_the_api_closes_its_invitation(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 60})
    whatsapp = await add_channel(client, tenant, "whatsapp")
    started = await write(client, tenant, whatsapp, "Hola", external_id="i1")
    await resolve(client, tenant, started["conversation_id"])
    await settle(app)
    [invitation] = await invitations(client, tenant)
    # The web chat widget asked first: the invitation is answered, and never sent.
    recorded = await answer(
        client, tenant, customer_id=started["customer_id"], kind="csat", score=2,
        channel="web_chat", conversation_id=started["conversation_id"],
    )  # fmt: skip
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["invitation_id"] == invitation["id"]
    moment.advance(hours=2)
    assert await settle(app) == 0
    assert questions(await messages(client, tenant, started["conversation_id"])) == []
    by_invitation = await answer(
        client, tenant, invitation_id=invitation["id"], kind="csat", score=5, channel="sms"
    )
    assert by_invitation.status_code == 409
    wrong_kind = await answer(
        client, tenant, invitation_id=invitation["id"], kind="nps", score=5, channel="sms"
    )
    assert wrong_kind.status_code == 422


async def test_listing_answers_by_kind_and_dates_and_bad_filters(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    for n, score in enumerate((10, 9, 3)):
        customer = {"identities": [{"kind": "email", "value": f"c{n}@example.com"}]}
        response = await answer(
            client, tenant, customer=customer, kind="nps", score=score, channel="email"
        )
        assert response.status_code == 201, response.text
        moment.advance(days=1)
    window = {"from": START.isoformat(), "to": (START + timedelta(days=2)).isoformat()}
    assert [a["score"] for a in await answers(client, tenant, kind="nps", **window)] == [9, 10]
    page = await client.get(
        "/v1/surveys/responses", params={"kind": "nps", "limit": 2}, headers=tenant.headers
    )
    assert len(page.json()["items"]) == 2
    assert page.json()["next_cursor"]
    rest = await client.get(
        "/v1/surveys/responses",
        params={"kind": "nps", "limit": 2, "cursor": page.json()["next_cursor"]},
        headers=tenant.headers,
    )
    assert [a["score"] for a in rest.json()["items"]] == [10]

    upside_down = await client.get(
        "/v1/surveys/responses",
        params={"from": window["to"], "to": window["from"]},
        headers=tenant.headers,
    )
    assert upside_down.status_code == 422
    assert "upside down" in upside_down.json()["error"]["message"]
    unknown = await client.get(
        "/v1/surveys/responses", params={"store": "SOL"}, headers=tenant.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_filter"

    # The service KPIs read.
    async with app.state.sessionmaker() as session:
        rows = await surveys.responses(
            session, tenant.context, kind="nps", start=START, end=START + timedelta(days=3)
        )
    assert [(r.score, r.channel) for r in rows] == [(10, "email"), (9, "email"), (3, "email")]


async def test_bad_settings_are_refused_and_kept_as_they_were(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 15})
    for body in (
        {"csat": {"enabled": True, "delay_minutes": -1}},
        {"nps": {"enabled": True, "period_days": 0}},
        {"answer_window_hours": 0},
        {"sms": {"enabled": True}},
    ):
        response = await client.put("/v1/surveys/settings", json=body, headers=tenant.headers)
        assert response.status_code == 422, body
    kept = (await client.get("/v1/surveys/settings", headers=tenant.headers)).json()
    assert kept["csat"] == {"enabled": True, "delay_minutes": 15}


async def test_another_tenants_ids_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, app: Any, moment: ManualClock
) -> None:
    other = await make_tenant("Otra tienda")
    await turn_on(client, other, csat={"enabled": True, "delay_minutes": 0})
    whatsapp = await add_channel(client, other, "whatsapp")
    theirs = await write(client, other, whatsapp, "Hola", external_id="t1")
    await resolve(client, other, theirs["conversation_id"])
    await settle(app)
    [invitation] = await invitations(client, other)

    mine = {"identities": [{"kind": "phone", "value": PHONE}]}
    about_theirs = await answer(
        client, tenant, customer=mine, kind="csat", score=5, channel="whatsapp",
        conversation_id=theirs["conversation_id"],
    )  # fmt: skip
    assert about_theirs.status_code == 404
    their_invitation = await answer(
        client, tenant, invitation_id=invitation["id"], kind="csat", score=5, channel="whatsapp"
    )
    assert their_invitation.status_code == 404
    their_customer = await answer(
        client, tenant, customer_id=theirs["customer_id"], kind="nps", score=5, channel="sms"
    )
    assert their_customer.status_code == 404
    assert await invitations(client, tenant) == []
    assert await count_responses(app, tenant) == 0
    assert (await invitations(client, other))[0]["status"] == "sent"


def test_every_message_of_surveys_has_a_spanish_translation() -> None:
    spanish = translations("es")
    untranslated = []
    for module in (surveys, survey_pages):
        for _line, message, _comments, _context in extract_from_file(
            "python", str(Path(module.__file__ or ""))
        ):
            text = message if isinstance(message, str) else message[0]
            if spanish.gettext(text) == text:
                untranslated.append(text)
    assert untranslated == []


async def test_the_assistant_leaves_a_survey_answer_alone(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, moment: ManualClock
) -> None:
    await turn_on(client, tenant, csat={"enabled": True, "delay_minutes": 0})
    on = await client.put(
        "/v1/assistant/settings",
        json={"enabled": True, "channel_kinds": ["whatsapp"]},
        headers=tenant.headers,
    )
    assert on.status_code == 200, on.text
    whatsapp = await add_channel(client, tenant, "whatsapp")
    first = await write(client, tenant, whatsapp, "Hola", external_id="w-1")
    await app.state.worker.run_once()
    await resolve(client, tenant, first["conversation_id"])
    await settle(app)
    before = await messages(client, tenant, first["conversation_id"])

    await write(client, tenant, whatsapp, "4", external_id="w-2")
    await settle(app)
    await app.state.worker.run_once()
    [recorded] = await answers(client, tenant)
    assert (recorded["kind"], recorded["score"]) == ("csat", 4)
    after = await messages(client, tenant, first["conversation_id"])
    seen = {m["id"] for m in before}
    said = [m for m in after if m["direction"] == "outbound" and m["id"] not in seen]
    # Only the survey's thanks: no answer from the assistant, no hand-off to a person.
    assert len(said) == 1, [m["text"] for m in said]
    assert "assistant" not in str(said[0].get("data", {}).get("automated", {}))

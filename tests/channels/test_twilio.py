"""Twilio both ways: signed SMS/WhatsApp webhooks in, Messages API out, receipts, and calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels import delivery
from hilos.conversations.models import Message
from hilos.core.models import OutboxEvent
from hilos.core.settings import get_settings
from hilos.tasks.models import Task
from tests.channels import fake_twilio as fake
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.conftest import TenantHandle, identify

SAMPLES = Path(__file__).resolve().parent / "samples"
PUBLIC_URL = "https://hilos.example.com"


@pytest.fixture
def public_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Hilos deployed behind a proxy at ``PUBLIC_URL`` (``HILOS_BASE_URL``)."""
    monkeypatch.setenv("HILOS_BASE_URL", PUBLIC_URL)
    get_settings.cache_clear()
    yield PUBLIC_URL
    monkeypatch.delenv("HILOS_BASE_URL")
    get_settings.cache_clear()


@pytest.fixture
def no_public_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("HILOS_BASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def sample(name: str) -> list[tuple[str, str]]:
    return parse_qsl((SAMPLES / name).read_text().strip(), keep_blank_values=True)


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: Any, **where: Any) -> int:
    async with sessionmaker() as session:
        statement = select(func.count()).select_from(model)
        for column, value in where.items():
            statement = statement.where(getattr(model, column) == value)
        return int(await session.scalar(statement) or 0)


async def outbox(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, topic: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.id)
        )
        return list(rows)


async def customer(client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str) -> Any:
    response = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- messages in --------------------------------------------------------------------------


async def test_the_documented_sms_is_stored_and_answered_with_empty_twiml(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await add_configured_channel(client, tenant, "twilio_sms", fake.SMS_CONFIG)
    response = await fake.post_webhook(client, channel_id, sample("twilio-sms.form"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response/>")
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    [message] = await messages(client, tenant, conversation["id"])
    assert message["text"] == "Quiero cambiar la hora de entrega"
    assert message["external_id"] == "SM5f3a1c2b9d8e7f6a5b4c3d2e1f0a9b8c"
    assert message["address"] == "phone:+34622334455"


async def test_an_mms_keeps_its_media_with_their_types(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    media = [
        (
            f"https://api.twilio.com/2010-04-01/Accounts/{fake.ACCOUNT_SID}/Messages/MM1/Media/ME1",
            "image/jpeg",
        ),
        (
            f"https://api.twilio.com/2010-04-01/Accounts/{fake.ACCOUNT_SID}/Messages/MM1/Media/ME2",
            "application/pdf",
        ),
    ]
    form = fake.sms_form(sid="MM1", body="La factura y la foto", media=media)
    response = await fake.post_webhook(client, channel_id, form)
    assert response.status_code == 200, response.text
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    [message] = await messages(client, tenant, conversation["id"])
    assert message["text"] == "La factura y la foto"
    assert [(a["type"], a["mime_type"], a["url"]) for a in message["attachments"]] == [
        ("image", "image/jpeg", media[0][0]),
        ("file", "application/pdf", media[1][0]),
    ]


async def test_whatsapp_through_twilio_proves_the_whatsapp_id_and_the_phone(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    known = await identify(client, tenant, ("phone", "611 22 23 33"))
    channel_id = await add_configured_channel(
        client, tenant, "twilio_whatsapp", fake.WHATSAPP_CONFIG
    )
    form = fake.whatsapp_form(sid="SMwa1", wa_id="34611222333", body="¿Abrís el domingo?")
    response = await fake.post_webhook(client, channel_id, form)
    assert response.status_code == 200, response.text
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    assert conversation["customer_id"] == known["customer_id"]
    profile = await customer(client, tenant, known["customer_id"])
    assert profile["name"] == "Lucía Pérez"
    assert {(i["kind"], i["value"]) for i in profile["identities"]} == {
        ("phone", "+34611222333"),
        ("whatsapp", "+34611222333"),
    }
    [message] = await messages(client, tenant, conversation["id"])
    assert message["address"] == "whatsapp:+34611222333"
    assert message["text"] == "¿Abrís el domingo?"


@pytest.mark.parametrize(
    "tamper",
    ["missing", "garbage", "other_token", "other_url", "changed_body"],
)
async def test_a_bad_or_missing_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    tamper: str,
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    form = fake.sms_form(sid="SMbad1", body="Hola")
    url = f"{client.base_url}/webhooks/twilio/{channel_id}"
    signature: str | None = {
        "missing": None,
        "garbage": "bm90IGEgc2lnbmF0dXJl",
        "other_token": fake.sign(url, form, "someone-elses-token"),
        "other_url": fake.sign(f"https://evil.example/webhooks/twilio/{channel_id}", form),
        "changed_body": fake.sign(url, fake.sms_form(sid="SMbad1", body="Otra cosa")),
    }[tamper]
    response = await fake.post_webhook(client, channel_id, form, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert await count(sessionmaker, Message, channel_id=channel_id) == 0


async def test_behind_a_proxy_the_public_url_signature_is_accepted(
    client: httpx.AsyncClient, tenant: TenantHandle, public_url: str
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    form = fake.sms_form(sid="SMproxy1")
    signed_url = f"{public_url}/webhooks/twilio/{channel_id}"
    accepted = await fake.post_webhook(client, channel_id, form, signed_url=signed_url)
    assert accepted.status_code == 200, accepted.text
    with_port = f"https://hilos.example.com:443/webhooks/twilio/{channel_id}"
    form = fake.sms_form(sid="SMproxy2")
    assert (
        await fake.post_webhook(client, channel_id, form, signed_url=with_port)
    ).status_code == 200
    elsewhere = f"https://other.example.com/webhooks/twilio/{channel_id}"
    form = fake.sms_form(sid="SMproxy3")
    refused = await fake.post_webhook(client, channel_id, form, signed_url=elsewhere)
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("form", "complaint"),
    [
        (fake.sms_form(sid="SMm1", media=[("https://x/1", "image/png")])[:-2], "MediaUrl0"),
        (
            [(k, "dos" if k == "NumMedia" else v) for k, v in fake.sms_form(sid="SMm2")],
            "NumMedia",
        ),
        ([(k, v) for k, v in fake.sms_form(sid="SMm3") if k != "From"], "From"),
        (fake.sms_form(sid="SMm4", sender="not-a-number"), "sender"),
        (fake.call_form(sid="CAm5", status="completed", CallDuration="long"), "CallDuration"),
        (fake.call_form(sid="CAm6", status="ringing", timestamp="yesterday"), "Timestamp"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    form: list[tuple[str, str]],
    complaint: str,
) -> None:
    kind = "phone" if any(k == "CallSid" for k, _ in form) else "sms"
    config = fake.PHONE_CONFIG if kind == "phone" else fake.SMS_CONFIG
    channel_id = await add_configured_channel(client, tenant, kind, config)
    response = await fake.post_webhook(client, channel_id, form)
    assert response.status_code == 400, response.text
    assert complaint in response.json()["error"]["message"]
    assert await count(sessionmaker, Message, channel_id=channel_id) == 0


async def test_a_json_body_is_not_a_twilio_webhook(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    url = f"{client.base_url}/webhooks/twilio/{channel_id}"
    response = await client.post(
        f"/webhooks/twilio/{channel_id}",
        json={"MessageSid": "SMj1", "From": "+34622334455", "Body": "x"},
        headers={"X-Twilio-Signature": fake.sign(url, [])},
    )
    assert response.status_code == 400
    assert "form" in response.json()["error"]["message"]
    assert await count(sessionmaker, Message, channel_id=channel_id) == 0


async def test_callbacks_it_does_not_handle_are_acknowledged_and_store_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    for form in (
        fake.status_form(sid="SMq1", status="queued"),
        fake.status_form(sid="SMq1", status="accepted"),
        [("AccountSid", fake.ACCOUNT_SID), ("ApiVersion", "2010-04-01")],
        fake.sms_form(sid="SMempty", body=""),
        fake.call_form(sid="CAonsms", status="ringing"),
    ):
        response = await fake.post_webhook(client, channel_id, form)
        assert response.status_code == 200, response.text
        assert response.text.endswith("<Response/>")
    assert await count(sessionmaker, Message, channel_id=channel_id) == 0


async def test_redeliveries_in_sequence_and_at_the_same_moment_store_one_message(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    form = fake.sms_form(sid="SMdup1", body="¿Hay stock?")
    first = await fake.post_webhook(client, channel_id, form)
    assert first.status_code == 200
    together = await asyncio.gather(
        *(fake.post_webhook(client, channel_id, form) for _ in range(8))
    )
    assert {r.status_code for r in together} == {200}
    new_sender = fake.sms_form(sid="SMdup2", sender="+34699000111")
    racing = await asyncio.gather(
        *(fake.post_webhook(client, channel_id, new_sender) for _ in range(8))
    )
    assert {r.status_code for r in racing} == {200}
    assert await count(sessionmaker, Message, channel_id=channel_id) == 2
    async with sessionmaker() as session:
        conversations = await session.scalar(
            select(func.count(func.distinct(Message.conversation_id))).where(
                Message.channel_id == channel_id
            )
        )
    assert conversations == 2


# --- messages out -------------------------------------------------------------------------


async def _sms_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, channel_id: str, sid: str = "SMin1"
) -> str:
    response = await fake.post_webhook(client, channel_id, fake.sms_form(sid=sid))
    assert response.status_code == 200, response.text
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    conversation_id: str = conversation["id"]
    return conversation_id


async def reply(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, **body: Any
) -> httpx.Response:
    response = await client.post(
        f"/v1/conversations/{conversation_id}/messages", json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return response


async def test_an_sms_reply_goes_out_through_the_messages_api(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, no_public_url: None
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    conversation_id = await _sms_conversation(client, tenant, channel_id)
    await reply(
        client,
        tenant,
        conversation_id,
        text="Te llamamos a las 17:00",
        attachments=[{"type": "image", "url": "https://cdn.example/mapa.png"}],
    )
    provider = fake.FakeTwilio()
    assert (await deliver(app, provider, tenant))["sent"] == 1
    assert provider.requests == [
        {
            "To": "+34622334455",
            "From": fake.SMS_NUMBER,
            "Body": "Te llamamos a las 17:00",
            "MediaUrl": "https://cdn.example/mapa.png",
        }
    ]
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "sent"
    assert sent["external_id"].startswith("SM")


async def test_the_status_callback_url_is_given_when_the_public_url_is_known(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, public_url: str
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    conversation_id = await _sms_conversation(client, tenant, channel_id)
    await reply(client, tenant, conversation_id, text="Hola")
    provider = fake.FakeTwilio()
    await deliver(app, provider, tenant)
    assert provider.requests[0]["StatusCallback"] == f"{public_url}/webhooks/twilio/{channel_id}"


async def test_status_callbacks_move_a_reply_forward_and_undelivered_is_failed(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    conversation_id = await _sms_conversation(client, tenant, channel_id)
    await reply(client, tenant, conversation_id, text="Uno")
    provider = fake.FakeTwilio()
    await deliver(app, provider, tenant)
    [_, sent] = await messages(client, tenant, conversation_id)
    for status in ("delivered", "sent", "delivered"):
        form = fake.status_form(sid=sent["external_id"], status=status)
        assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    [_, delivered] = await messages(client, tenant, conversation_id)
    assert delivered["status"] == "delivered", "a late 'sent' does not undo 'delivered'"

    await reply(client, tenant, conversation_id, text="Dos")
    await deliver(app, provider, tenant)
    [*_, second] = await messages(client, tenant, conversation_id)
    form = fake.status_form(sid=second["external_id"], status="undelivered", error_code="30003")
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "twilio_30003"
    assert "Unreachable destination handset" in failed["error"]["message"]


async def test_a_receipt_that_overtakes_the_send_answer_is_applied_afterwards(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    conversation_id = await _sms_conversation(client, tenant, channel_id)
    await reply(client, tenant, conversation_id, text="Ya lo miro")
    provider = fake.FakeTwilio()

    async def callback_before_the_answer(request: httpx.Request) -> httpx.Response:
        # Twilio's "delivered" callback reaches Hilos before the API call's answer does.
        response = provider(request)
        form = fake.status_form(sid=response.json()["sid"], status="delivered")
        assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
        return response

    assert (await deliver(app, callback_before_the_answer, tenant))["sent"] == 1
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "delivered"


async def test_a_whatsapp_reply_through_twilio_sends_one_media_per_message(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, no_public_url: None
) -> None:
    channel_id = await add_configured_channel(
        client, tenant, "twilio_whatsapp", fake.WHATSAPP_CONFIG
    )
    form = fake.whatsapp_form(sid="SMwa2", wa_id="34611222333")
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    conversation_id = (await client.get("/v1/conversations", headers=tenant.headers)).json()[
        "items"
    ][0]["id"]
    await reply(
        client,
        tenant,
        conversation_id,
        text="Aquí tienes",
        attachments=[
            {"type": "image", "url": "https://cdn.example/a.jpg"},
            {"type": "file", "url": "https://cdn.example/b.pdf", "name": "b.pdf"},
        ],
    )
    provider = fake.FakeTwilio()
    assert (await deliver(app, provider, tenant))["sent"] == 1
    assert provider.requests == [
        {
            "To": "whatsapp:+34611222333",
            "From": f"whatsapp:{fake.WHATSAPP_NUMBER}",
            "Body": "Aquí tienes",
            "MediaUrl": "https://cdn.example/a.jpg",
        },
        {
            "To": "whatsapp:+34611222333",
            "From": f"whatsapp:{fake.WHATSAPP_NUMBER}",
            "MediaUrl": "https://cdn.example/b.pdf",
        },
    ]
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "sent"
    assert sent["data"]["provider_ids"][0] == sent["external_id"]


async def test_a_whatsapp_template_goes_as_a_content_template(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, no_public_url: None
) -> None:
    config = {**fake.WHATSAPP_CONFIG, "content_sids": {"pedido_enviado": "HX" + "a" * 32}}
    channel_id = await add_configured_channel(client, tenant, "twilio_whatsapp", config)
    await fake.post_webhook(client, channel_id, fake.whatsapp_form(sid="SMwa3"))
    conversation_id = (await client.get("/v1/conversations", headers=tenant.headers)).json()[
        "items"
    ][0]["id"]
    template = {"name": "pedido_enviado", "language": "es", "parameters": ["Lucía", "A-1042"]}
    await reply(client, tenant, conversation_id, template=template)
    await reply(client, tenant, conversation_id, template={**template, "name": "desconocida"})
    provider = fake.FakeTwilio()
    assert await deliver(app, provider, tenant) == {
        "sent": 1,
        "retried": 0,
        "failed": 1,
        "expired": 0,
    }
    assert provider.requests[0]["ContentSid"] == "HX" + "a" * 32
    assert provider.requests[0]["ContentVariables"] == '{"1": "Lucía", "2": "A-1042"}'
    [*_, unknown] = await messages(client, tenant, conversation_id)
    assert unknown["status"] == "failed"
    assert "content_sids" in unknown["error"]["message"]


async def test_5xx_and_429_are_retried_with_backoff_and_a_400_fails_with_twilios_words(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    conversation_id = await _sms_conversation(client, tenant, channel_id)
    await reply(client, tenant, conversation_id, text="Uno")
    provider = fake.FakeTwilio()
    provider.fail_next(500, 20500, "An internal server error has occurred")
    provider.fail_next(429, 20429, "Too Many Requests", {"Retry-After": "120"})
    assert (await deliver(app, provider, tenant))["retried"] == 1
    [_, waiting] = await messages(client, tenant, conversation_id)
    assert waiting["status"] == "queued"
    assert "An internal server error has occurred" in waiting["error"]["message"]
    assert (await deliver(app, provider, tenant))["retried"] == 0, "not due yet"
    frozen_clock.advance(seconds=delivery.backoff(1, None) + 1)
    assert (await deliver(app, provider, tenant))["retried"] == 1
    frozen_clock.advance(seconds=60)
    assert (await deliver(app, provider, tenant))["sent"] == 0, "Retry-After: 120 is honoured"
    frozen_clock.advance(seconds=61)
    assert (await deliver(app, provider, tenant))["sent"] == 1
    assert [r["Body"] for r in provider.requests] == ["Uno"]

    await reply(client, tenant, conversation_id, text="Dos")
    provider.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    assert (await deliver(app, provider, tenant))["failed"] == 1
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "twilio_21610"
    assert "Attempt to send to unsubscribed recipient" in failed["error"]["message"]
    assert len(provider.requests) == 1


async def test_wrong_credentials_fail_the_reply_with_twilios_answer(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    config = {**fake.SMS_CONFIG, "auth_token": "a-token-twilio-does-not-know"}
    channel_id = await add_configured_channel(client, tenant, "sms", config)
    response = await fake.post_webhook(
        client, channel_id, fake.sms_form(sid="SMcred"), token="a-token-twilio-does-not-know"
    )
    assert response.status_code == 200
    conversation_id = (await client.get("/v1/conversations", headers=tenant.headers)).json()[
        "items"
    ][0]["id"]
    await reply(client, tenant, conversation_id, text="Hola")
    assert (await deliver(app, fake.FakeTwilio(), tenant))["failed"] == 1
    [_, failed] = await messages(client, tenant, conversation_id)
    assert failed["error"]["code"] == "twilio_20003"
    assert "Authenticate" in failed["error"]["message"]


# --- calls ----------------------------------------------------------------------------------


async def phone_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    return await add_configured_channel(client, tenant, "phone", fake.PHONE_CONFIG)


async def call_entries(client: httpx.AsyncClient, tenant: TenantHandle) -> list[Any]:
    found = []
    conversations = (await client.get("/v1/conversations", headers=tenant.headers)).json()
    for conversation in conversations["items"]:
        found += [
            m for m in await messages(client, tenant, conversation["id"]) if m["kind"] == "call"
        ]
    return found


async def test_a_call_that_rings_is_answered_and_ends_is_one_entry_with_its_duration(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await phone_channel(client, tenant)
    sid = "CA9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    ringing = fake.call_form(sid=sid, status="ringing", timestamp="Sat, 22 Nov 2026 10:01:50 +0000")
    answered = fake.call_form(
        sid=sid, status="in-progress", timestamp="Sat, 22 Nov 2026 10:01:58 +0000"
    )
    for form in (ringing, answered, sample("twilio-voice-status.form")):
        response = await fake.post_webhook(client, channel_id, form)
        assert response.status_code == 200, response.text
        assert response.text.endswith("<Response/>")
    [call] = await call_entries(client, tenant)
    assert call["external_id"] == sid
    assert call["direction"] == "inbound"
    assert call["address"] == "phone:+34633445566"
    assert call["sent_at"].startswith("2026-11-22T10:01:50")
    assert call["data"]["status"] == "ended"
    assert call["data"]["duration_seconds"] == 187
    assert [e["event"] for e in call["data"]["events"]] == ["ringing", "answered", "ended"]
    assert await count(sessionmaker, Task, tenant_id=tenant.id) == 0


async def test_ringing_pops_the_callers_profile(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    known = await identify(client, tenant, ("phone", "+34633445566"), ("email", "ana@example.es"))
    channel_id = await phone_channel(client, tenant)
    form = fake.call_form(sid="CApop1", status="ringing")
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    [pop] = await outbox(sessionmaker, tenant, "call.ringing")
    assert pop["customer_id"] == known["customer_id"]
    assert pop["caller"] == "+34633445566"
    assert pop["channel_id"] == channel_id
    [call] = await call_entries(client, tenant)
    assert pop["conversation_id"] == call["conversation_id"]


async def test_a_known_caller_lands_in_their_open_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await identify(client, tenant, ("phone", "+34633445566"), ("email", "ana@example.es"))
    sms_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    await fake.post_webhook(client, sms_id, fake.sms_form(sid="SMk1", sender="+34633445566"))
    channel_id = await phone_channel(client, tenant)
    await fake.post_webhook(client, channel_id, fake.call_form(sid="CAk1", status="ringing"))
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    kinds = [m["kind"] for m in await messages(client, tenant, conversation["id"])]
    assert sorted(kinds) == ["call", "message"]


async def test_a_missed_call_opens_one_call_back_task_however_often_twilio_retries(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await phone_channel(client, tenant)
    ringing = fake.call_form(sid="CAmiss1", status="ringing")
    missed = fake.call_form(
        sid="CAmiss1", status="no-answer", timestamp="Sat, 22 Nov 2026 10:05:30 +0000"
    )
    await fake.post_webhook(client, channel_id, ringing)
    await fake.post_webhook(client, channel_id, missed)
    retries = await asyncio.gather(
        *(fake.post_webhook(client, channel_id, missed) for _ in range(4))
    )
    assert {r.status_code for r in retries} == {200}
    [call] = await call_entries(client, tenant)
    assert call["data"]["status"] == "missed"
    tasks = (
        await client.get("/v1/tasks?status=open&kind=call_back", headers=tenant.headers)
    ).json()["items"]
    assert len(tasks) == 1
    assert tasks[0]["source_id"] == call["id"]
    assert (
        tasks[0]["customer_id"]
        == (await outbox(sessionmaker, tenant, "call.ringing"))[0]["customer_id"]
    )
    assert len(await outbox(sessionmaker, tenant, "task.created")) == 1


async def test_a_voicemail_recording_marks_the_call_and_keeps_the_message(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await phone_channel(client, tenant)
    sid = "CAvm1"
    recording = f"https://api.twilio.com/2010-04-01/Accounts/{fake.ACCOUNT_SID}/Recordings/RE1"
    for form in (
        fake.call_form(sid=sid, status="ringing"),
        fake.call_form(sid=sid, status="in-progress"),
        # The <Record> verb's action callback, then its transcription.
        fake.call_form(sid=sid, status="in-progress", RecordingUrl=recording),
        fake.call_form(
            sid=sid,
            status="completed",
            CallDuration="41",
            TranscriptionText="Llamo por el pedido A-1042",
            TranscriptionStatus="completed",
            RecordingUrl=recording,
        ),
    ):
        assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    [call] = await call_entries(client, tenant)
    assert call["data"]["status"] == "voicemail"
    assert call["data"]["recording_url"] == recording
    assert call["data"]["duration_seconds"] == 41
    assert call["text"] == "Llamo por el pedido A-1042"
    [task] = (await client.get("/v1/tasks?kind=call_back", headers=tenant.headers)).json()["items"]
    assert task["data"]["reason"] == "voicemail"


async def test_withheld_numbers_and_agent_legs_are_acknowledged_without_an_entry(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await phone_channel(client, tenant)
    for form in (
        fake.call_form(sid="CAanon", status="no-answer", caller="+266696687"),
        fake.call_form(sid="CAleg", status="ringing", direction="outbound-dial"),
        fake.call_form(sid="CAq", status="queued"),
        fake.sms_form(sid="SMonphone"),
    ):
        response = await fake.post_webhook(client, channel_id, form)
        assert response.status_code == 200, response.text
    assert await count(sessionmaker, Message, channel_id=channel_id) == 0


async def test_dial_outcomes_answering_machines_and_recordings_map_to_call_events(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await phone_channel(client, tenant)
    recording = f"https://api.twilio.com/2010-04-01/Accounts/{fake.ACCOUNT_SID}/Recordings/RE2"
    for form in (
        # The <Dial> action: no agent picked up.
        fake.call_form(sid="CAd1", status="in-progress", DialCallStatus="no-answer"),
        # An agent's call-back reached the customer's answering machine.
        fake.call_form(
            sid="CAd2",
            status="in-progress",
            caller="+34644556677",
            direction="outbound-api",
            AnsweredBy="machine_end_beep",
        ),
        # A recorded conversation is not a voicemail.
        fake.call_form(
            sid="CAd3",
            status="completed",
            caller="+34655667788",
            CallDuration="60",
            RecordingUrl=recording,
            RecordingSource="DialVerb",
        ),
        # A recordingStatusCallback names no caller: acknowledged, nothing to file.
        [
            ("AccountSid", fake.ACCOUNT_SID),
            ("CallSid", "CAd3"),
            ("RecordingSid", "RE3"),
            ("RecordingUrl", recording + "3"),
            ("RecordingStatus", "completed"),
            ("RecordingSource", "RecordVerb"),
        ],
    ):
        response = await fake.post_webhook(client, channel_id, form)
        assert response.status_code == 200, response.text
    calls = {c["external_id"]: c for c in await call_entries(client, tenant)}
    assert calls["CAd1"]["data"]["status"] == "missed"
    assert calls["CAd2"]["data"]["status"] == "voicemail"
    assert calls["CAd2"]["direction"] == "outbound"
    assert calls["CAd2"]["address"] == "phone:+34644556677"
    assert calls["CAd3"]["data"]["status"] == "ended"
    assert calls["CAd3"]["data"]["recording_url"] == recording
    tasks = (await client.get("/v1/tasks", headers=tenant.headers)).json()["items"]
    assert [t["source_id"] for t in tasks] == [calls["CAd1"]["id"]], "only the missed inbound call"


async def test_a_received_status_is_read_as_the_incoming_message(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await add_configured_channel(client, tenant, "sms", fake.SMS_CONFIG)
    form = fake.sms_form(sid="SMrec1", body="Hola") + [("MessageStatus", "received")]
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    assert (await fake.post_webhook(client, channel_id, form)).status_code == 200
    assert await count(sessionmaker, Message, channel_id=channel_id) == 1

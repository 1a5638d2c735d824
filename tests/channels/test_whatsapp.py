"""WhatsApp Cloud API both ways: signed webhooks in, Graph API replies out, receipts, window."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels import delivery
from hilos.conversations.models import Message
from hilos.core.settings import get_settings
from tests.channels import fake_whatsapp as fake
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.conftest import TenantHandle, identify

SAMPLES = Path(__file__).resolve().parent / "samples"
WA_ID = "34612345678"


async def whatsapp_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    return await add_configured_channel(client, tenant, "whatsapp", fake.CONFIG)


async def post_signed(
    client: httpx.AsyncClient, channel_id: str, payload: Any, *, signature: str | None = "good"
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Hub-Signature-256"] = fake.sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(f"/webhooks/whatsapp/{channel_id}", content=body, headers=headers)


async def stored_messages(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(count or 0)


async def test_meta_subscription_check_echoes_the_challenge_only_for_the_right_token(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    good = await client.get(
        f"/webhooks/whatsapp/{channel_id}",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": fake.VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert good.status_code == 200
    assert good.text == "1158201444"
    bad = await client.get(
        f"/webhooks/whatsapp/{channel_id}",
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    assert bad.status_code == 403


async def test_the_documented_payload_becomes_a_customer_with_whatsapp_and_phone(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    sample = (SAMPLES / "whatsapp-text.json").read_bytes()
    response = await post_signed(client, channel_id, sample)
    assert response.status_code == 200, response.text
    [stored] = response.json()["messages"]
    customer = (
        await client.get(f"/v1/customers/{stored['customer_id']}", headers=tenant.headers)
    ).json()
    assert customer["name"] == "Marina Gil"
    assert {(i["kind"], i["value"]) for i in customer["identities"]} >= {
        ("whatsapp", "+34612345678"),
        ("phone", "+34612345678"),
    }
    [message] = await messages(client, tenant, stored["conversation_id"])
    assert message["text"] == "Hola, ¿cuándo llega mi pedido?"
    assert message["sent_at"].startswith("2025-11-22T10:00:00")


async def test_a_customer_known_by_phone_is_recognised_on_whatsapp(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    known = await identify(
        client, tenant, ("phone", "612 34 56 78"), ("email", "marina@example.org")
    )
    channel_id = await whatsapp_channel(client, tenant)
    response = await post_signed(
        client,
        channel_id,
        fake.text_webhook(wa_id=WA_ID, wamid="wamid.A1", text="Hola", timestamp=1_763_805_600),
    )
    assert response.json()["messages"][0]["customer_id"] == known["customer_id"]


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc"])
async def test_a_wrong_or_missing_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    signature: str | None,
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    payload = fake.text_webhook(wa_id=WA_ID, wamid="wamid.S1", text="Hola", timestamp=1_763_805_600)
    response = await post_signed(client, channel_id, payload, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_a_body_signed_with_another_apps_secret_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    body = json.dumps(fake.text_webhook(wa_id=WA_ID, wamid="w", text="x", timestamp=1)).encode()
    response = await post_signed(client, channel_id, body, signature=fake.sign(body, "other"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"object": "whatsapp_business_account", "entry": "x"}).encode(), "entry"),
        (
            json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {
                                        "messages": [
                                            {
                                                "from": WA_ID,
                                                "id": "w1",
                                                "type": "text",
                                                "timestamp": "yesterday",
                                                "text": {"body": "x"},
                                            }
                                        ]
                                    },
                                }
                            ]
                        }
                    ],
                }
            ).encode(),
            "timestamp",
        ),
        (
            json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {
                                        "messages": [
                                            {
                                                "from": "not-a-number",
                                                "id": "w2",
                                                "type": "text",
                                                "timestamp": "1",
                                                "text": {"body": "x"},
                                            }
                                        ]
                                    },
                                }
                            ]
                        }
                    ],
                }
            ).encode(),
            "sender",
        ),
    ],
)
async def test_a_malformed_body_is_400_naming_the_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: bytes,
    complaint: str,
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    response = await post_signed(client, channel_id, body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]["message"]
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_payload_types_it_does_not_handle_are_acknowledged(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    unsupported = fake.message_webhook(
        wa_id=WA_ID,
        name="M",
        message={
            "from": WA_ID,
            "id": "wamid.U",
            "timestamp": "1",
            "type": "unsupported",
            "errors": [{"code": 131051}],
        },
    )
    other_field = {
        "object": "whatsapp_business_account",
        "entry": [{"changes": [{"field": "account_update", "value": {}}]}],
    }
    for payload in (unsupported, other_field):
        response = await post_signed(client, channel_id, payload)
        assert response.status_code == 200
        assert response.json()["ignored"]
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_redeliveries_in_sequence_and_at_the_same_moment_store_one_message(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    payload = fake.text_webhook(wa_id=WA_ID, wamid="wamid.R1", text="¿Hay stock?", timestamp=1)
    first = await post_signed(client, channel_id, payload)
    together = await asyncio.gather(*(post_signed(client, channel_id, payload) for _ in range(8)))
    assert {r.status_code for r in together} == {200}
    ids = {r.json()["messages"][0]["message_id"] for r in together}
    assert ids == {first.json()["messages"][0]["message_id"]}
    assert all(r.json()["messages"][0]["duplicate"] for r in together)
    new_sender = fake.text_webhook(wa_id="34699000111", wamid="wamid.R2", text="Hola", timestamp=1)
    racing = await asyncio.gather(*(post_signed(client, channel_id, new_sender) for _ in range(8)))
    assert len({r.json()["messages"][0]["customer_id"] for r in racing}) == 1
    assert await stored_messages(sessionmaker, channel_id) == 2


async def test_media_locations_and_button_replies_keep_what_the_customer_sent(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    image = {
        "from": WA_ID,
        "id": "wamid.M1",
        "timestamp": "1763805600",
        "type": "image",
        "image": {
            "id": "1479537139650973",
            "mime_type": "image/jpeg",
            "sha256": "abc=",
            "caption": "La caja llegó rota",
        },
    }
    location = {
        "from": WA_ID,
        "id": "wamid.M2",
        "timestamp": "1763805601",
        "type": "location",
        "location": {"latitude": 40.4168, "longitude": -3.7038, "name": "Tienda Sol"},
    }
    button = {
        "from": WA_ID,
        "id": "wamid.M3",
        "timestamp": "1763805602",
        "type": "interactive",
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": "track", "title": "Seguir pedido"},
        },
    }
    conversation_id = ""
    for message in (image, location, button):
        response = await post_signed(
            client, channel_id, fake.message_webhook(wa_id=WA_ID, name="Marina", message=message)
        )
        assert response.status_code == 200, response.text
        conversation_id = response.json()["messages"][0]["conversation_id"]
    first, second, third = await messages(client, tenant, conversation_id)
    assert first["text"] == "La caja llegó rota"
    assert first["attachments"][0]["type"] == "image"
    assert first["attachments"][0]["data"]["media_id"] == "1479537139650973"
    assert second["attachments"][0]["data"]["latitude"] == 40.4168
    assert third["text"] == "Seguir pedido"
    assert third["data"]["reply"]["id"] == "track"


async def _conversation_with_recent_message(
    client: httpx.AsyncClient, tenant: TenantHandle, channel_id: str, *, at: datetime
) -> str:
    response = await post_signed(
        client,
        channel_id,
        fake.text_webhook(
            wa_id=WA_ID,
            wamid=f"wamid.in{at.timestamp():.0f}",
            text="Hola",
            timestamp=int(at.timestamp()),
        ),
    )
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["messages"][0]["conversation_id"]
    return conversation_id


async def reply(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/conversations/{conversation_id}/messages", json=body, headers=tenant.headers
    )


async def test_a_reply_goes_out_through_the_graph_api_and_receipts_move_it_forward_only(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now - timedelta(minutes=5)
    )
    queued = await reply(client, tenant, conversation_id, text="Llega mañana")
    assert queued.status_code == 201, queued.text
    provider = fake.FakeWhatsApp()
    assert (await deliver(app, provider, tenant))["sent"] == 1
    assert provider.sent == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": WA_ID,
            "type": "text",
            "text": {"preview_url": False, "body": "Llega mañana"},
        }
    ]
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "sent"
    wamid = sent["external_id"]
    moment = int(frozen_clock.now.timestamp())
    for status in ("read", "delivered", "read"):
        webhook = fake.status_webhook(wamid=wamid, status=status, timestamp=moment, recipient=WA_ID)
        assert (await post_signed(client, channel_id, webhook)).status_code == 200
    [_, after] = await messages(client, tenant, conversation_id)
    assert after["status"] == "read"
    assert (await deliver(app, provider, tenant))["sent"] == 0
    assert len(provider.sent) == 1


async def test_a_receipt_that_overtakes_the_send_answer_is_applied_afterwards(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now
    )
    await reply(client, tenant, conversation_id, text="Ya lo miro")
    provider = fake.FakeWhatsApp()

    async def answer_after_the_webhook(request: httpx.Request) -> httpx.Response:
        # Meta's "delivered" webhook reaches Hilos before the send call's answer does.
        response = provider(request)
        wamid = response.json()["messages"][0]["id"]
        webhook = fake.status_webhook(wamid=wamid, status="delivered", timestamp=1, recipient=WA_ID)
        assert (await post_signed(client, channel_id, webhook)).status_code == 200
        return response

    await deliver(app, answer_after_the_webhook, tenant)
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "delivered"


async def test_a_failed_status_carries_metas_reason(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now
    )
    await reply(client, tenant, conversation_id, text="Hola")
    await deliver(app, fake.FakeWhatsApp(), tenant)
    [_, sent] = await messages(client, tenant, conversation_id)
    error = {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {"details": "More than 24 hours have passed"},
    }
    webhook = fake.status_webhook(
        wamid=sent["external_id"], status="failed", timestamp=1, recipient=WA_ID, errors=[error]
    )
    await post_signed(client, channel_id, webhook)
    [_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "whatsapp_131047"
    assert "More than 24 hours" in failed["error"]["message"]


async def test_free_text_after_24_hours_is_refused_and_a_template_goes_out(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now - timedelta(hours=23, minutes=59)
    )
    assert (await reply(client, tenant, conversation_id, text="Dentro")).status_code == 201
    frozen_clock.advance(minutes=2)
    refused = await reply(client, tenant, conversation_id, text="Fuera de plazo")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "whatsapp_window_closed"
    assert "template" in error["message"]
    template = {"name": "pedido_enviado", "language": "es", "parameters": ["Marina", "A-1042"]}
    accepted = await reply(client, tenant, conversation_id, template=template)
    assert accepted.status_code == 201, accepted.text
    provider = fake.FakeWhatsApp()
    await deliver(app, provider, tenant)
    [sent_template] = [m for m in provider.sent if m["type"] == "template"]
    assert sent_template["template"] == {
        "name": "pedido_enviado",
        "language": {"code": "es"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Marina"},
                    {"type": "text", "text": "A-1042"},
                ],
            }
        ],
    }


async def test_5xx_and_429_are_retried_with_backoff_and_a_4xx_fails_with_metas_words(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now
    )
    await reply(client, tenant, conversation_id, text="Uno")
    provider = fake.FakeWhatsApp()
    provider.fail_next(503, 2, "Service temporarily unavailable")
    provider.fail_next(429, 130429, "Rate limit hit", {"Retry-After": "120"})
    assert (await deliver(app, provider, tenant))["retried"] == 1
    [_, waiting] = await messages(client, tenant, conversation_id)
    assert waiting["status"] == "queued"
    assert "Service temporarily unavailable" in waiting["error"]["message"]
    assert (await deliver(app, provider, tenant)) == {
        "sent": 0,
        "retried": 0,
        "failed": 0,
        "expired": 0,
    }
    frozen_clock.advance(seconds=delivery.backoff(1, None) + 1)
    assert (await deliver(app, provider, tenant))["retried"] == 1
    frozen_clock.advance(seconds=60)
    assert (await deliver(app, provider, tenant))["sent"] == 0, "Retry-After: 120 is honoured"
    frozen_clock.advance(seconds=61)
    assert (await deliver(app, provider, tenant))["sent"] == 1
    assert [m["text"]["body"] for m in provider.sent] == ["Uno"]

    await reply(client, tenant, conversation_id, text="Dos")
    provider.fail_next(400, 131026, "Message undeliverable")
    assert (await deliver(app, provider, tenant))["failed"] == 1
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert "Message undeliverable" in failed["error"]["message"]


async def test_a_worker_that_dies_mid_send_never_sends_twice(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    frozen_clock: Any,
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    conversation_id = await _conversation_with_recent_message(
        client, tenant, channel_id, at=frozen_clock.now
    )
    await reply(client, tenant, conversation_id, text="¿Me oyes?")
    # A worker claims the reply and dies before recording what the provider answered.
    async with sessionmaker() as session, session.begin():
        claimed = await delivery._claim(session, batch=50, tenant_id=tenant.id)
    assert [c.message_id for c in claimed]
    provider = fake.FakeWhatsApp()
    assert (await deliver(app, provider, tenant))["sent"] == 0, "a live claim is left alone"
    frozen_clock.advance(seconds=get_settings().delivery_claim_seconds + 1)
    assert (await deliver(app, provider, tenant))["expired"] == 1
    assert provider.sent == []
    [_, message] = await messages(client, tenant, conversation_id)
    assert message["status"] == "failed"
    assert message["error"]["code"] == "delivery_unknown"


async def test_another_providers_path_or_an_unknown_channel_is_404(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    payload = fake.text_webhook(wa_id=WA_ID, wamid="wamid.X", text="x", timestamp=1)
    assert (await post_signed(client, "0" * 32, payload)).status_code == 404
    body = json.dumps(payload).encode()
    response = await client.post(
        f"/webhooks/nonexistent/{channel_id}",
        content=body,
        headers={"X-Hub-Signature-256": fake.sign(body)},
    )
    assert response.status_code == 404
    disabled = await client.patch(
        f"/v1/channels/{channel_id}", json={"disabled": True}, headers=tenant.headers
    )
    assert disabled.status_code == 200
    assert (await post_signed(client, channel_id, payload)).status_code == 404


async def test_a_known_sender_without_the_phone_identity_gets_it_linked(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    # Known on WhatsApp only (an import through the generic API), with an open conversation.
    earlier = await client.post(
        "/v1/messages/inbound",
        json={
            "channel_id": channel_id,
            "external_id": "import-1",
            "text": "Hola",
            "sender": {"kind": "whatsapp", "value": "+34655443322"},
        },
        headers=tenant.headers,
    )
    assert earlier.status_code == 200, earlier.text
    also_phone = await identify(
        client, tenant, ("phone", "+34655443322"), ("email", "x@example.org")
    )
    assert also_phone["customer_id"] != earlier.json()["customer_id"]
    webhook = fake.text_webhook(
        wa_id="34655443322", wamid="wamid.K1", text="Sigo aquí", timestamp=1_763_805_600
    )
    stored = (await post_signed(client, channel_id, webhook)).json()["messages"][0]
    survivor = stored["customer_id"]
    assert stored["conversation_id"] == earlier.json()["conversation_id"]
    profile = (await client.get(f"/v1/customers/{survivor}", headers=tenant.headers)).json()
    assert {("phone", "+34655443322"), ("email", "x@example.org")} <= {
        (i["kind"], i["value"]) for i in profile["identities"]
    }

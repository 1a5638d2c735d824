"""Messenger and Instagram both ways: signed webhooks in, Send API replies out, receipts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels import delivery
from hilos.conversations.models import Message
from tests.channels import fake_meta_send as fake
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parent / "samples"
PSID = "7310247185942311"
IGSID = "6843125579023456"
# (path and channel kind, webhook object, the sender id in the samples, its channel config)
NETWORKS = {
    "messenger": ("page", PSID, fake.MESSENGER_CONFIG),
    "instagram": ("instagram", IGSID, fake.INSTAGRAM_CONFIG),
}


@pytest.fixture(params=sorted(NETWORKS))
def network(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def meta_channel(client: httpx.AsyncClient, tenant: TenantHandle, network: str) -> str:
    return await add_configured_channel(client, tenant, network, NETWORKS[network][2])


async def post_signed(
    client: httpx.AsyncClient,
    network: str,
    channel_id: str,
    payload: Any,
    *,
    signature: str | None = "good",
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Hub-Signature-256"] = fake.sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(f"/webhooks/{network}/{channel_id}", content=body, headers=headers)


def webhook(network: str, *events: dict[str, Any]) -> dict[str, Any]:
    return fake.webhook(NETWORKS[network][0], *events)


def sender_of(network: str) -> str:
    return NETWORKS[network][1]


async def stored_messages(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(count or 0)


async def reply(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, **body: Any
) -> httpx.Response:
    response = await client.post(
        f"/v1/conversations/{conversation_id}/messages", json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return response


async def conversation_with_message(
    client: httpx.AsyncClient, network: str, channel_id: str, mid: str = "m_in1"
) -> str:
    payload = webhook(network, fake.text_message(sender_of(network), mid, "Hola"))
    response = await post_signed(client, network, channel_id, payload)
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["messages"][0]["conversation_id"]
    return conversation_id


def provider_for(network: str) -> fake.FakeSendApi:
    return fake.FakeSendApi(token=NETWORKS[network][2]["page_access_token"])


# --- webhooks in ----------------------------------------------------------------------------


async def test_the_subscription_check_echoes_the_challenge_only_for_the_right_token(
    client: httpx.AsyncClient, tenant: TenantHandle, network: str
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    query = {"hub.mode": "subscribe", "hub.verify_token": fake.VERIFY_TOKEN}
    good = await client.get(
        f"/webhooks/{network}/{channel_id}", params={**query, "hub.challenge": "8412"}
    )
    assert good.status_code == 200
    assert good.text == "8412"
    bad = await client.get(
        f"/webhooks/{network}/{channel_id}",
        params={**query, "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    assert bad.status_code == 403


@pytest.mark.parametrize(
    ("network", "sample", "identity", "text"),
    [
        ("messenger", "messenger-text.json", ("messenger", PSID), "¿Tenéis tienda en Bilbao?"),
        (
            "instagram",
            "instagram-text.json",
            ("instagram", IGSID),
            "Me encanta el abrigo verde, ¿queda en S?",
        ),
    ],
)
async def test_the_documented_payload_becomes_a_customer_with_the_scoped_id(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    network: str,
    sample: str,
    identity: tuple[str, str],
    text: str,
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    response = await post_signed(client, network, channel_id, (SAMPLES / sample).read_bytes())
    assert response.status_code == 200, response.text
    [stored] = response.json()["messages"]
    customer = (
        await client.get(f"/v1/customers/{stored['customer_id']}", headers=tenant.headers)
    ).json()
    assert identity in {(i["kind"], i["value"]) for i in customer["identities"]}
    [message] = await messages(client, tenant, stored["conversation_id"])
    assert message["text"] == text
    assert message["channel_id"] == channel_id
    assert message["sent_at"].startswith("2025-11-22T10:00:00")


async def test_one_channels_webhook_is_not_taken_on_the_other_networks_path(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    messenger = await meta_channel(client, tenant, "messenger")
    payload = webhook("instagram", fake.text_message(IGSID, "m_x", "Hola"))
    response = await post_signed(client, "instagram", messenger, payload)
    assert response.status_code == 404


async def test_media_stickers_locations_replies_postbacks_and_reactions_are_kept(
    client: httpx.AsyncClient, tenant: TenantHandle, network: str
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    sender = sender_of(network)
    image_url = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=abc"
    events = [
        fake.event(
            sender,
            1763805600000,
            message={
                "mid": "m_img",
                "attachments": [{"type": "image", "payload": {"url": image_url}}],
            },
        ),
        fake.event(
            sender,
            1763805601000,
            message={
                "mid": "m_sticker",
                "attachments": [
                    {
                        "type": "image",
                        "payload": {"url": "https://x/s.png", "sticker_id": 369239263222822},
                    }
                ],
            },
        ),
        fake.event(
            sender,
            1763805602000,
            message={
                "mid": "m_loc",
                "attachments": [
                    {
                        "type": "location",
                        "title": "Tienda Gran Vía",
                        "payload": {"coordinates": {"lat": 43.263, "long": -2.935}},
                    }
                ],
            },
        ),
        fake.event(
            sender,
            1763805603000,
            message={
                "mid": "m_quick",
                "text": "Sí, en talla S",
                "quick_reply": {"payload": "SIZE_S"},
                "reply_to": {"mid": "m_earlier"},
            },
        ),
        fake.event(
            sender,
            1763805604000,
            postback={"mid": "m_postback", "title": "Ver pedido", "payload": "ORDER_STATUS"},
        ),
        fake.event(
            sender,
            1763805605000,
            reaction={"mid": "m_earlier", "action": "react", "reaction": "love", "emoji": "❤️"},
        ),
    ]
    response = await post_signed(client, network, channel_id, webhook(network, *events))
    assert response.status_code == 200, response.text
    stored = response.json()["messages"]
    assert len(stored) == 6
    image, sticker, location, quick, postback, reaction = await messages(
        client, tenant, stored[0]["conversation_id"]
    )
    assert image["external_id"] == "m_img"
    assert image["attachments"] == [
        {"type": "image", "url": image_url, "data": {"provider": "meta", "meta_type": "image"}}
    ]
    assert sticker["attachments"][0]["type"] == "sticker"
    assert sticker["attachments"][0]["data"]["sticker_id"] == 369239263222822
    assert location["attachments"][0]["data"] == {
        "latitude": 43.263,
        "longitude": -2.935,
        "name": "Tienda Gran Vía",
    }
    assert quick["text"] == "Sí, en talla S"
    assert quick["data"] == {"reply": {"payload": "SIZE_S"}, "in_reply_to": "m_earlier"}
    assert postback["text"] == "Ver pedido"
    assert postback["data"]["postback"] == {"title": "Ver pedido", "payload": "ORDER_STATUS"}
    assert reaction["text"] == "❤️"
    assert reaction["data"]["reaction"]["message_id"] == "m_earlier"
    assert reaction["data"]["reaction"]["action"] == "react"


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc"])
async def test_a_wrong_or_missing_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    network: str,
    signature: str | None,
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    payload = webhook(network, fake.text_message(sender_of(network), "m_s1", "Hola"))
    response = await post_signed(client, network, channel_id, payload, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_a_body_signed_with_another_apps_secret_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, network: str
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    body = json.dumps(webhook(network, fake.text_message(sender_of(network), "m", "x"))).encode()
    signature = fake.sign(body, "someone-elses-secret")
    response = await post_signed(client, network, channel_id, body, signature=signature)
    assert response.status_code == 401


def _malformed(network: str) -> list[tuple[bytes, str]]:
    object_name = NETWORKS[network][0]
    sender = sender_of(network)

    def body(*events: Any) -> bytes:
        return json.dumps(
            {"object": object_name, "entry": [{"id": "1", "messaging": list(events)}]}
        ).encode()

    return [
        (b"{not json", "not JSON"),
        (json.dumps({"object": object_name, "entry": "x"}).encode(), "entry"),
        (body(fake.event(sender, "yesterday", message={"mid": "m1", "text": "x"})), "timestamp"),
        (body(fake.event(sender, 1, message={"text": "no mid"})), "mid"),
        (body({"recipient": {"id": "1"}, "timestamp": 1, "message": {"mid": "m2"}}), "sender"),
        # A good message and a bad one in one delivery: nothing of it is stored.
        (
            body(
                fake.text_message(sender, "m_good", "ok"),
                fake.event("not a valid id!", 1, message={"mid": "m3", "text": "x"}),
            ),
            "sender",
        ),
    ]


@pytest.mark.parametrize("case", range(6))
async def test_a_malformed_body_is_400_naming_the_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    network: str,
    case: int,
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    body, complaint = _malformed(network)[case]
    response = await post_signed(client, network, channel_id, body)
    assert response.status_code == 400, response.text
    assert complaint in response.json()["error"]["message"]
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_echoes_watermarks_and_other_events_are_acknowledged_and_not_stored(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    network: str,
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    sender = sender_of(network)
    echo = {
        "sender": {"id": fake.PAGE_ID},
        "recipient": {"id": sender},
        "timestamp": 1763805600000,
        "message": {"mid": "m_echo", "is_echo": True, "app_id": 1517776481860111, "text": "Hola"},
    }
    payloads = [
        webhook(network, echo),
        webhook(network, fake.event(sender, 1, optin={"ref": "landing"})),
        webhook(network, fake.event(sender, 1, message={"mid": "m_del", "is_deleted": True})),
        {"object": NETWORKS[network][0], "entry": [{"id": "1", "time": 1, "changes": []}]},
        {"object": "user", "entry": []},
    ]
    for payload in payloads:
        response = await post_signed(client, network, channel_id, payload)
        assert response.status_code == 200, response.text
        assert response.json()["ignored"], payload
        assert response.json()["messages"] == []
    # A watermark covering nothing Hilos sent is acknowledged and changes nothing.
    for watermark in (
        {"read": {"watermark": 1763805600000}},
        {"delivery": {"watermark": 1763805600000}},
    ):
        response = await post_signed(
            client, network, channel_id, webhook(network, fake.event(sender, 1, **watermark))
        )
        assert response.status_code == 200, response.text
        assert response.json()["receipts"] == 0
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_redeliveries_in_sequence_and_at_the_same_moment_store_one_message(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    network: str,
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    payload = webhook(network, fake.text_message(sender_of(network), "m_R1", "¿Hay stock?"))
    first = await post_signed(client, network, channel_id, payload)
    together = await asyncio.gather(
        *(post_signed(client, network, channel_id, payload) for _ in range(8))
    )
    assert {r.status_code for r in together} == {200}
    assert {r.json()["messages"][0]["message_id"] for r in together} == {
        first.json()["messages"][0]["message_id"]
    }
    assert all(r.json()["messages"][0]["duplicate"] for r in together)
    new_sender = webhook(network, fake.text_message("5550001112223334", "m_R2", "Hola"))
    racing = await asyncio.gather(
        *(post_signed(client, network, channel_id, new_sender) for _ in range(8))
    )
    assert len({r.json()["messages"][0]["customer_id"] for r in racing}) == 1
    assert await stored_messages(sessionmaker, channel_id) == 2


# --- replies out ----------------------------------------------------------------------------


async def test_a_reply_goes_out_through_the_send_api_to_the_customers_scoped_id(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, network: str, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    conversation_id = await conversation_with_message(client, network, channel_id)
    await reply(
        client,
        tenant,
        conversation_id,
        text="Sí, nos queda en S",
        attachments=[{"type": "image", "url": "https://cdn.tienda.test/abrigo-verde.jpg"}],
    )
    provider = provider_for(network)
    assert (await deliver(app, provider))["sent"] == 1
    attachment_payload: dict[str, Any] = {"url": "https://cdn.tienda.test/abrigo-verde.jpg"}
    if network == "messenger":
        attachment_payload["is_reusable"] = False
    assert provider.sent == [
        {
            "recipient": {"id": sender_of(network)},
            "messaging_type": "RESPONSE",
            "message": {"text": "Sí, nos queda en S"},
        },
        {
            "recipient": {"id": sender_of(network)},
            "messaging_type": "RESPONSE",
            "message": {"attachment": {"type": "image", "payload": attachment_payload}},
        },
    ]
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "sent"
    assert sent["external_id"] == "m_FAKE000001"
    assert sent["data"] == {"provider_ids": ["m_FAKE000001", "m_FAKE000002"]}
    assert (await deliver(app, provider))["sent"] == 0
    assert len(provider.sent) == 2


async def test_a_long_reply_is_cut_into_messages_meta_accepts(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, "messenger")
    conversation_id = await conversation_with_message(client, "messenger", channel_id)
    long_text = " ".join(f"palabra{i}" for i in range(500))
    await reply(client, tenant, conversation_id, text=long_text)
    provider = provider_for("messenger")
    assert (await deliver(app, provider))["sent"] == 1
    pieces = [body["message"]["text"] for body in provider.sent]
    assert len(pieces) > 1
    assert all(len(p) <= 2000 for p in pieces)
    assert " ".join(pieces) == long_text


async def test_delivery_and_read_receipts_move_a_reply_forward_only(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, network: str, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    conversation_id = await conversation_with_message(client, network, channel_id)
    await reply(client, tenant, conversation_id, text="Te lo reservo")
    await deliver(app, provider_for(network))
    [_, sent] = await messages(client, tenant, conversation_id)
    mid = sent["external_id"]
    sender = sender_of(network)
    delivered = fake.event(
        sender, 1763805700000, delivery={"mids": [mid], "watermark": 1763805700000}
    )
    response = await post_signed(client, network, channel_id, webhook(network, delivered))
    assert response.json()["receipts"] == 1
    [_, after] = await messages(client, tenant, conversation_id)
    assert after["status"] == "delivered"
    # Instagram names the message read; Messenger sends a watermark: "all you sent me until
    # this moment". One from before the reply was sent does not cover it; a later one does.
    sent_at_ms = int(frozen_clock.now.timestamp() * 1000)
    if network == "messenger":
        early = fake.event(sender, sent_at_ms - 60_000, read={"watermark": sent_at_ms - 60_000})
        response = await post_signed(client, network, channel_id, webhook(network, early))
        assert response.json()["receipts"] == 0
    read = {"mid": mid} if network == "instagram" else {"watermark": sent_at_ms + 60_000}
    response = await post_signed(
        client, network, channel_id, webhook(network, fake.event(sender, sent_at_ms, read=read))
    )
    assert response.status_code == 200
    assert response.json()["receipts"] == 1
    [_, after] = await messages(client, tenant, conversation_id)
    assert after["status"] == "read"
    # A late "delivered" never undoes "read".
    await post_signed(client, network, channel_id, webhook(network, delivered))
    [_, after] = await messages(client, tenant, conversation_id)
    assert after["status"] == "read"


async def test_a_receipt_that_overtakes_the_send_answer_is_applied_afterwards(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, network: str, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    conversation_id = await conversation_with_message(client, network, channel_id)
    await reply(client, tenant, conversation_id, text="Ya lo miro")
    provider = provider_for(network)

    async def answer_after_the_webhook(request: httpx.Request) -> httpx.Response:
        # Meta's receipt reaches Hilos before the Send API's answer does.
        response = provider(request)
        mid = response.json()["message_id"]
        receipt = (
            {"read": {"mid": mid}}
            if network == "instagram"
            else {"delivery": {"mids": [mid], "watermark": 1763805700000}}
        )
        early = webhook(network, fake.event(sender_of(network), 1763805700000, **receipt))
        assert (await post_signed(client, network, channel_id, early)).status_code == 200
        return response

    await deliver(app, answer_after_the_webhook)
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == ("read" if network == "instagram" else "delivered")


async def test_throttling_is_retried_after_the_backoff_and_a_refusal_fails_with_metas_words(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, network: str, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, network)
    conversation_id = await conversation_with_message(client, network, channel_id)
    await reply(client, tenant, conversation_id, text="Uno")
    provider = provider_for(network)
    provider.fail_next(429, 613, "Calls to this api have exceeded the rate limit.")
    # Meta reports its page-level throttling with an HTTP 400 and code 32.
    provider.fail_next(400, 32, "Page request limit reached")
    provider.fail_next(500, 2, "An unexpected error has occurred.")
    assert (await deliver(app, provider))["retried"] == 1
    [_, waiting] = await messages(client, tenant, conversation_id)
    assert waiting["status"] == "queued"
    assert "exceeded the rate limit" in waiting["error"]["message"]
    assert (await deliver(app, provider)) == {"sent": 0, "retried": 0, "failed": 0, "expired": 0}
    for attempt in (1, 2):
        frozen_clock.advance(seconds=delivery.backoff(attempt, None) + 1)
        assert (await deliver(app, provider))["retried"] == 1
    frozen_clock.advance(seconds=delivery.backoff(3, None) + 1)
    assert (await deliver(app, provider))["sent"] == 1
    assert [body["message"]["text"] for body in provider.sent] == ["Uno"]
    [_, sent] = await messages(client, tenant, conversation_id)
    assert sent["status"] == "sent"
    assert sent["error"] is None

    await reply(client, tenant, conversation_id, text="Dos")
    provider.fail_next(400, 10, "This message is sent outside of allowed window.", subcode=2018278)
    assert (await deliver(app, provider))["failed"] == 1
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "meta_10"
    assert "outside of allowed window" in failed["error"]["message"]
    assert "2018278" in failed["error"]["message"]


async def test_a_wrong_page_token_fails_the_reply_with_the_reason(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, "messenger")
    conversation_id = await conversation_with_message(client, "messenger", channel_id)
    await reply(client, tenant, conversation_id, text="Hola")
    assert (await deliver(app, fake.FakeSendApi(token="another-token")))["failed"] == 1
    [_, failed] = await messages(client, tenant, conversation_id)
    assert failed["error"]["code"] == "meta_190"
    assert "Invalid OAuth access token" in failed["error"]["message"]


async def test_a_reply_cut_short_by_an_error_is_not_sent_again(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await meta_channel(client, tenant, "messenger")
    conversation_id = await conversation_with_message(client, "messenger", channel_id)
    await reply(
        client,
        tenant,
        conversation_id,
        text="Aquí tienes la factura",
        attachments=[{"type": "file", "url": "https://cdn.tienda.test/factura.pdf"}],
    )
    provider = provider_for("messenger")

    def text_then_outage(request: httpx.Request) -> httpx.Response:
        if provider.sent:
            provider.fail_next(503, 2, "Service temporarily unavailable")
        return provider(request)

    assert (await deliver(app, text_then_outage))["failed"] == 1
    frozen_clock.advance(hours=2)
    assert (await deliver(app, provider))["sent"] == 0
    assert [body["message"].get("text") for body in provider.sent] == ["Aquí tienes la factura"]
    [_, failed] = await messages(client, tenant, conversation_id)
    assert failed["error"]["code"] == "partially_sent"

"""Telegram both ways: Bot API updates in (secret token), sendMessage and friends out."""

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
from tests.channels import fake_telegram as fake
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.conftest import TenantHandle, identify

SAMPLES = Path(__file__).resolve().parent / "samples"
USER_ID = "918273645"


async def telegram_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    return await add_configured_channel(client, tenant, "telegram", fake.CONFIG)


async def post_update(
    client: httpx.AsyncClient, channel_id: str, payload: Any, *, secret: str | None = "good"
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret == "good":
        headers["X-Telegram-Bot-Api-Secret-Token"] = fake.SECRET_TOKEN
    elif secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return await client.post(f"/webhooks/telegram/{channel_id}", content=body, headers=headers)


async def stored_messages(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(count or 0)


async def send_text(
    client: httpx.AsyncClient, channel_id: str, message_id: int, text: str, **extra: Any
) -> dict[str, Any]:
    update = fake.update(message_id, message=fake.message(message_id, text=text, **extra))
    response = await post_update(client, channel_id, update)
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()["messages"][0]
    return stored


async def reply(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, **body: Any
) -> None:
    response = await client.post(
        f"/v1/conversations/{conversation_id}/messages", json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text


# --- updates in -----------------------------------------------------------------------------


async def test_the_documented_update_becomes_a_customer_with_a_telegram_identity(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await telegram_channel(client, tenant)
    sample = (SAMPLES / "telegram-update.json").read_bytes()
    response = await post_update(client, channel_id, sample)
    assert response.status_code == 200, response.text
    [stored] = response.json()["messages"]
    assert stored["external_id"] == "918273645:1042"
    customer = (
        await client.get(f"/v1/customers/{stored['customer_id']}", headers=tenant.headers)
    ).json()
    assert customer["name"] == "Iker Etxeberria"
    assert ("telegram", USER_ID) in {(i["kind"], i["value"]) for i in customer["identities"]}
    [message] = await messages(client, tenant, stored["conversation_id"])
    assert message["text"] == "Buenas tardes, quiero devolver unas zapatillas"
    assert message["sent_at"].startswith("2025-11-22T10:00:00")


@pytest.mark.parametrize("secret", [None, "", "guess", fake.SECRET_TOKEN + "x"])
async def test_a_wrong_or_missing_secret_token_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    secret: str | None,
) -> None:
    channel_id = await telegram_channel(client, tenant)
    update = fake.update(1, message=fake.message(1, text="Hola"))
    response = await post_update(client, channel_id, update, secret=secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert await stored_messages(sessionmaker, channel_id) == 0


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (json.dumps([1, 2]).encode(), "update_id"),
        (json.dumps({"message": {"message_id": 1}}).encode(), "update_id"),
        (json.dumps(fake.update(1, message={"message_id": 1, "text": "x"})).encode(), "chat"),
        (
            json.dumps(
                fake.update(1, message=fake.message(1, date="yesterday", text="x"))
            ).encode(),
            "date",
        ),
        (
            json.dumps(fake.update(1, message=fake.message(1, photo=[{"width": 90}]))).encode(),
            "file_id",
        ),
        (
            json.dumps(
                fake.update(
                    1,
                    message={
                        "message_id": 1,
                        "chat": {"id": 5, "type": "private"},
                        "date": 1,
                        "text": "x",
                    },
                )
            ).encode(),
            "from",
        ),
    ],
)
async def test_a_malformed_update_is_400_naming_the_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: bytes,
    complaint: str,
) -> None:
    channel_id = await telegram_channel(client, tenant)
    response = await post_update(client, channel_id, body)
    assert response.status_code == 400, response.text
    assert complaint in response.json()["error"]["message"]
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_group_messages_channel_posts_and_other_updates_are_acknowledged_not_stored(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await telegram_channel(client, tenant)
    group = fake.message(7, text="hola a todos")
    group["chat"] = {"id": -1001234567890, "title": "Clientes", "type": "supergroup"}
    updates = [
        fake.update(1, message=group),
        fake.update(
            2,
            channel_post={
                "message_id": 3,
                "chat": {"id": -1009, "type": "channel"},
                "date": 1,
                "text": "x",
            },
        ),
        fake.update(
            3,
            my_chat_member={
                "chat": {"id": 918273645, "type": "private"},
                "from": fake.USER,
                "date": 1,
                "old_chat_member": {"status": "member"},
                "new_chat_member": {"status": "kicked"},
            },
        ),
        fake.update(4, message=fake.message(8, dice={"emoji": "🎲", "value": 3})),
        fake.update(5, message=fake.message(9, user={**fake.USER, "is_bot": True}, text="x")),
    ]
    for update in updates:
        response = await post_update(client, channel_id, update)
        assert response.status_code == 200, response.text
        assert response.json()["ignored"], update
    assert await stored_messages(sessionmaker, channel_id) == 0


async def test_redeliveries_in_sequence_and_at_the_same_moment_store_one_message(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await telegram_channel(client, tenant)
    update = fake.update(10, message=fake.message(77, text="¿Abrís el domingo?"))
    first = await post_update(client, channel_id, update)
    together = await asyncio.gather(*(post_update(client, channel_id, update) for _ in range(8)))
    assert {r.status_code for r in together} == {200}
    assert {r.json()["messages"][0]["message_id"] for r in together} == {
        first.json()["messages"][0]["message_id"]
    }
    assert all(r.json()["messages"][0]["duplicate"] for r in together)
    stranger = {**fake.USER, "id": 555000111, "first_name": "Ane", "last_name": "Goikoetxea"}
    racing_update = fake.update(11, message=fake.message(1, user=stranger, text="Hola"))
    racing = await asyncio.gather(
        *(post_update(client, channel_id, racing_update) for _ in range(8))
    )
    assert len({r.json()["messages"][0]["customer_id"] for r in racing}) == 1
    assert await stored_messages(sessionmaker, channel_id) == 2


async def test_the_same_message_id_in_two_chats_is_two_messages(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await telegram_channel(client, tenant)
    other = {**fake.USER, "id": 123456789, "first_name": "Jon", "last_name": "Arana"}
    first = await send_text(client, channel_id, 5, "Hola")
    update = fake.update(6, message=fake.message(5, user=other, text="Hola también"))
    second = (await post_update(client, channel_id, update)).json()["messages"][0]
    assert first["external_id"] == "918273645:5"
    assert second["external_id"] == "123456789:5"
    assert not second["duplicate"]
    assert first["customer_id"] != second["customer_id"]
    assert await stored_messages(sessionmaker, channel_id) == 2


async def test_photos_voice_documents_and_places_keep_what_the_customer_sent(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await telegram_channel(client, tenant)
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 67, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960},
        {"file_id": "medium", "file_unique_id": "m", "width": 320, "height": 240},
    ]
    contents = [
        {"photo": photo, "caption": "La suela está despegada"},
        {
            "voice": {
                "file_id": "voice-1",
                "file_unique_id": "v1",
                "duration": 4,
                "mime_type": "audio/ogg",
            }
        },
        {
            "document": {
                "file_id": "doc-1",
                "file_unique_id": "d1",
                "file_name": "ticket.pdf",
                "mime_type": "application/pdf",
            }
        },
        {
            "venue": {
                "location": {"latitude": 43.263, "longitude": -2.935},
                "title": "Tienda Gran Vía",
                "address": "Gran Vía 12, Bilbao",
            },
            "location": {"latitude": 43.263, "longitude": -2.935},
        },
        {"sticker": {"file_id": "stk-1", "file_unique_id": "k1", "emoji": "👍", "type": "regular"}},
    ]
    conversation_id = ""
    for number, content in enumerate(contents, start=100):
        response = await post_update(
            client, channel_id, fake.update(number, message=fake.message(number, **content))
        )
        assert response.status_code == 200, response.text
        conversation_id = response.json()["messages"][0]["conversation_id"]
    image, voice, document, venue, sticker = await messages(client, tenant, conversation_id)
    assert image["text"] == "La suela está despegada"
    assert image["attachments"][0]["type"] == "image"
    assert image["attachments"][0]["data"]["file_id"] == "large"
    assert voice["attachments"][0]["type"] == "audio"
    assert voice["attachments"][0]["mime_type"] == "audio/ogg"
    assert voice["attachments"][0]["data"]["file_id"] == "voice-1"
    assert document["attachments"][0]["name"] == "ticket.pdf"
    assert document["attachments"][0]["type"] == "file"
    assert venue["text"] == "Tienda Gran Vía Gran Vía 12, Bilbao"
    assert venue["attachments"] == [
        {
            "type": "location",
            "data": {
                "latitude": 43.263,
                "longitude": -2.935,
                "name": "Tienda Gran Vía",
                "address": "Gran Vía 12, Bilbao",
            },
        }
    ]
    assert sticker["attachments"][0]["type"] == "sticker"
    assert sticker["attachments"][0]["data"]["emoji"] == "👍"


async def test_a_contact_shared_of_oneself_links_the_phone_a_customer_is_known_by(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    known = await identify(
        client, tenant, ("phone", "+34 612 34 56 78"), ("email", "iker@example.org")
    )
    channel_id = await telegram_channel(client, tenant)
    first = await send_text(client, channel_id, 1, "Hola, soy Iker")
    assert first["customer_id"] != known["customer_id"]
    someone_else = {
        "phone_number": "34699111222",
        "first_name": "Amaia",
        "user_id": 111222333,
    }
    shared = await post_update(
        client, channel_id, fake.update(2, message=fake.message(2, contact=someone_else))
    )
    assert shared.json()["messages"][0]["customer_id"] == first["customer_id"]
    own = {
        "phone_number": "34612345678",
        "first_name": "Iker",
        "last_name": "Etxeberria",
        "user_id": int(USER_ID),
    }
    linked = await post_update(
        client, channel_id, fake.update(3, message=fake.message(3, contact=own))
    )
    assert linked.status_code == 200, linked.text
    customer_id = linked.json()["messages"][0]["customer_id"]
    # The Telegram profile and the one known by phone are one customer now.
    profile = (
        await client.get(
            f"/v1/customers/{customer_id}", headers=tenant.headers, follow_redirects=True
        )
    ).json()
    identities = {(i["kind"], i["value"]) for i in profile["identities"]}
    assert {("telegram", USER_ID), ("phone", "+34612345678"), ("email", "iker@example.org")} <= (
        identities
    )
    assert ("phone", "+34699111222") not in identities
    [*_, contact_message] = await messages(
        client, tenant, linked.json()["messages"][0]["conversation_id"]
    )
    assert contact_message["data"]["linked_identities"] == [
        {"kind": "phone", "value": "+34612345678"}
    ]
    assert contact_message["attachments"][0]["type"] == "contact"
    for earlier in (known["customer_id"], first["customer_id"]):
        response = await client.get(
            f"/v1/customers/{earlier}", headers=tenant.headers, follow_redirects=True
        )
        assert response.json()["id"] == profile["id"]
    later = await send_text(client, channel_id, 4, "¿Lo habéis recibido?")
    assert later["customer_id"] == profile["id"]


async def test_an_edit_is_kept_next_to_the_original(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await telegram_channel(client, tenant)
    original = await send_text(client, channel_id, 20, "Quiero la talla 24")
    edited = fake.message(20, text="Quiero la talla 42")
    edited["edit_date"] = 1763805660
    response = await post_update(client, channel_id, fake.update(21, edited_message=edited))
    assert response.status_code == 200, response.text
    again = await post_update(client, channel_id, fake.update(21, edited_message=edited))
    assert again.json()["messages"][0]["duplicate"]
    first, correction = await messages(client, tenant, original["conversation_id"])
    assert first["text"] == "Quiero la talla 24"
    assert correction["text"] == "Quiero la talla 42"
    assert correction["data"]["edit_of"] == "918273645:20"
    assert correction["sent_at"].startswith("2025-11-22T10:01:00")


async def test_a_button_tap_is_a_message_and_the_webhook_answers_the_callback(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen_clock: Any
) -> None:
    channel_id = await telegram_channel(client, tenant)
    query = {
        "id": "4382bfdwdsb323b2d9",
        "from": fake.USER,
        "message": {
            "message_id": 501,
            "from": {"id": 7012345678, "is_bot": True, "first_name": "Hilos"},
            "chat": {"id": 918273645, "type": "private"},
            "date": 1763805600,
            "text": "¿Quieres devolverlo en tienda o por mensajería?",
        },
        "chat_instance": "-8201",
        "data": "return:store",
    }
    response = await post_update(client, channel_id, fake.update(30, callback_query=query))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4382bfdwdsb323b2d9",
    }
    conversations = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    [message] = await messages(client, tenant, conversations[0]["id"])
    assert message["text"] == "return:store"
    assert message["data"]["in_reply_to"] == "918273645:501"
    assert message["sent_at"] == frozen_clock.now.isoformat().replace("+00:00", "Z")


# --- replies out ----------------------------------------------------------------------------


async def test_a_reply_goes_out_with_sendmessage_and_sendphoto_to_the_users_chat(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await telegram_channel(client, tenant)
    stored = await send_text(client, channel_id, 1, "¿Tenéis estas en el 42?")
    provider = fake.FakeBotApi()
    await reply(client, tenant, stored["conversation_id"], text="Sí, te la reservo")
    assert (await deliver(app, provider))["sent"] == 1
    frozen_clock.advance(seconds=1)
    await reply(
        client,
        tenant,
        stored["conversation_id"],
        text="Mira qué color",
        attachments=[{"type": "image", "url": "https://cdn.tienda.test/zapa.jpg"}],
    )
    assert (await deliver(app, provider))["sent"] == 1
    assert provider.sent == [
        ("sendMessage", {"chat_id": 918273645, "text": "Sí, te la reservo"}),
        (
            "sendPhoto",
            {
                "chat_id": 918273645,
                "photo": "https://cdn.tienda.test/zapa.jpg",
                "caption": "Mira qué color",
            },
        ),
    ]
    _, text, photo = await messages(client, tenant, stored["conversation_id"])
    assert (text["status"], text["external_id"]) == ("sent", "918273645:501")
    assert (photo["status"], photo["external_id"]) == ("sent", "918273645:502")
    assert (await deliver(app, provider))["sent"] == 0


async def test_too_many_requests_waits_retry_after_and_a_refusal_fails_with_the_description(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await telegram_channel(client, tenant)
    stored = await send_text(client, channel_id, 1, "Hola")
    conversation_id = stored["conversation_id"]
    await reply(client, tenant, conversation_id, text="Uno")
    provider = fake.FakeBotApi()
    provider.fail_next(429, "Too Many Requests: retry after 90", retry_after=90)
    assert (await deliver(app, provider))["retried"] == 1
    [_, waiting] = await messages(client, tenant, conversation_id)
    assert waiting["status"] == "queued"
    assert "Too Many Requests" in waiting["error"]["message"]
    frozen_clock.advance(seconds=delivery.backoff(1, None) + 1)
    assert (await deliver(app, provider))["sent"] == 0, "retry_after 90 is honoured"
    frozen_clock.advance(seconds=90)
    assert (await deliver(app, provider))["sent"] == 1
    provider.fail_next(502, "Bad Gateway")
    await reply(client, tenant, conversation_id, text="Dos")
    assert (await deliver(app, provider))["retried"] == 1
    frozen_clock.advance(seconds=delivery.backoff(1, None) + 1)
    assert (await deliver(app, provider))["sent"] == 1
    assert [payload["text"] for _, payload in provider.sent] == ["Uno", "Dos"]

    await reply(client, tenant, conversation_id, text="Tres")
    provider.fail_next(403, "Forbidden: bot was blocked by the user")
    assert (await deliver(app, provider))["failed"] == 1
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "telegram_403"
    assert "bot was blocked by the user" in failed["error"]["message"]

    await reply(client, tenant, conversation_id, text="Cuatro")
    provider.fail_next(400, "Bad Request: chat not found")
    assert (await deliver(app, provider))["failed"] == 1
    [*_, failed] = await messages(client, tenant, conversation_id)
    assert failed["error"] == {
        "code": "telegram_400",
        "message": "400: Bad Request: chat not found",
    }


async def test_a_wrong_bot_token_fails_without_writing_the_token_anywhere(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await telegram_channel(client, tenant)
    stored = await send_text(client, channel_id, 1, "Hola")
    await reply(client, tenant, stored["conversation_id"], text="Hola")
    assert (await deliver(app, fake.FakeBotApi(token="123:other")))["failed"] == 1
    [_, failed] = await messages(client, tenant, stored["conversation_id"])
    assert failed["error"]["code"] == "telegram_401"

    await reply(client, tenant, stored["conversation_id"], text="¿Sigues ahí?")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    assert (await deliver(app, unreachable))["retried"] == 1
    [*_, waiting] = await messages(client, tenant, stored["conversation_id"])
    assert "ConnectError" in waiting["error"]["message"]
    assert fake.BOT_TOKEN not in waiting["error"]["message"]

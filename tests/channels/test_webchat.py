"""The embeddable web chat: the widget's script and words, visitors, messages both ways.

HTTP calls go through the app in-process; WebSockets go through a real Uvicorn server on a free
port (the same app, the same event loop), with the ``websockets`` client a browser stands in for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hilos.app import create_app
from hilos.core.bus import NatsBus
from hilos.core.outbox import relay
from hilos.core.settings import Settings
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.conftest import NATS_URL, TenantHandle, add_channel, inbound
from tests.serving import serving as serve_http

SHOP = "https://tienda.example"
AT_SHOP = {"Origin": SHOP}


async def webchat_channel(client: httpx.AsyncClient, tenant: TenantHandle, **config: Any) -> str:
    return await add_configured_channel(
        client, tenant, "web_chat", {"allowed_origins": [SHOP], **config}
    )


async def start_session(
    client: httpx.AsyncClient, channel: str, token: str | None = None, **fields: Any
) -> httpx.Response:
    headers = {**AT_SHOP, **({"Authorization": f"Bearer {token}"} if token else {})}
    return await client.post(f"/webchat/{channel}/sessions", json=fields, headers=headers)


async def new_visitor(client: httpx.AsyncClient, channel: str, **fields: Any) -> dict[str, Any]:
    response = await start_session(client, channel, **fields)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def as_visitor(token: str) -> dict[str, str]:
    return {**AT_SHOP, "Authorization": f"Bearer {token}"}


async def visitor_writes(
    client: httpx.AsyncClient, channel: str, token: str, text: str, client_id: str
) -> httpx.Response:
    return await client.post(
        f"/webchat/{channel}/messages",
        json={"text": text, "client_id": client_id},
        headers=as_visitor(token),
    )


async def customer_of_visitor(
    client: httpx.AsyncClient, tenant: TenantHandle, visitor_id: str
) -> dict[str, Any]:
    response = await client.get(
        "/v1/customers", params={"identity": f"anonymous:{visitor_id}"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    (customer,) = response.json()["items"]
    result: dict[str, Any] = customer
    return result


async def conversation_of(client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str) -> str:
    response = await client.get(
        "/v1/conversations", params={"customer_id": customer_id}, headers=tenant.headers
    )
    (conversation,) = response.json()["items"]
    conversation_id: str = conversation["id"]
    return conversation_id


def no_provider(request: httpx.Request) -> httpx.Response:
    """Every provider is down: a web chat reply that needed one would stay queued. (Other
    tests' leftover replies in the shared database may reach it; they are only retried.)"""
    return httpx.Response(503, json={"error": {"message": "no provider in web chat tests"}})


# --- a real server for WebSockets ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by Uvicorn on a free local port; yields its ws:// base."""
    async with serve_http(app) as base:
        yield base.replace("http://", "ws://", 1)


@pytest.fixture
async def live(app: Any) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


def socket_url(live: str, channel: str, token: str) -> str:
    return f"{live}/webchat/{channel}/ws?token={token}"


async def next_frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind`` (others, such as echoes, are skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == kind:
            return frame


# --- the script and its words ----------------------------------------------------------------


async def test_widget_script_is_our_own_javascript_and_loads_nothing_from_elsewhere(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await webchat_channel(client, tenant)
    response = await client.get(f"/webchat/{channel}/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    script = response.text
    assert "attachShadow" in script
    assert ".hw-launcher" in script
    for external in (r"https?://", r"(?<![:\w])//[\w-]+\.[\w.-]+/", r"url\(", r"@import"):
        assert not re.search(external, script), external
    cached = await client.get(
        f"/webchat/{channel}/widget.js", headers={"If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304

    assert (await client.get("/webchat/nope/widget.js")).status_code == 404
    whatsapp = await add_channel(client, tenant, "whatsapp")
    assert (await client.get(f"/webchat/{whatsapp}/widget.js")).status_code == 404


async def test_widget_words_come_in_spanish_or_english(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await webchat_channel(
        client,
        tenant,
        title="Tienda Sol",
        color="#aa3300",
        greeting={"es": "¡Hola! Soy Sol.", "en": "Hi! I am Sol."},
        prechat_fields=["name", "phone"],
    )
    spanish = (await client.get(f"/webchat/{channel}/config?lang=es-ES", headers=AT_SHOP)).json()
    english = (await client.get(f"/webchat/{channel}/config?lang=en-GB", headers=AT_SHOP)).json()
    assert spanish["lang"] == "es"
    assert english["lang"] == "en"
    assert spanish["strings"]["launcher"] == "Habla con nosotros"
    assert english["strings"]["launcher"] == "Chat with us"
    assert spanish["strings"]["phone"] == "Teléfono"
    assert english["strings"]["phone"] == "Phone"
    assert set(spanish["strings"]) == set(english["strings"])
    differing = [k for k in spanish["strings"] if spanish["strings"][k] != english["strings"][k]]
    assert len(differing) == len(spanish["strings"])
    assert (spanish["greeting"], english["greeting"]) == ("¡Hola! Soy Sol.", "Hi! I am Sol.")
    assert spanish["title"] == "Tienda Sol"
    assert spanish["color"] == "#aa3300"
    assert spanish["prechat_fields"] == ["name", "phone"]

    # No choice made: the browser's languages, then the business's own.
    chosen = await client.get(
        f"/webchat/{channel}/config?lang=fr", headers={**AT_SHOP, "Accept-Language": "en-US"}
    )
    assert chosen.json()["lang"] == "en"
    default = (await client.get(f"/webchat/{channel}/config", headers=AT_SHOP)).json()
    assert default["lang"] == "es"
    assert default["prechat_fields"] == ["name", "phone"]


# --- visitors --------------------------------------------------------------------------------


async def test_a_visitor_who_gives_the_phone_of_a_whatsapp_customer_continues_that_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    first = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="wamid.1",
        kind="phone",
        value="+34 600 111 222",
        text="¿Tenéis la talla 42?",
    )
    assert first.status_code == 200, first.text
    on_whatsapp = first.json()
    channel = await webchat_channel(client, tenant)

    visitor = await new_visitor(client, channel, name="Lucía", phone="600 111 222", lang="es")
    assert visitor["token"].startswith("hwv_")
    assert visitor["lang"] == "es"
    customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
    assert customer["id"] == on_whatsapp["customer_id"]
    assert customer["name"] == "Lucía"
    assert {(i["kind"], i["value"]) for i in customer["identities"]} >= {
        ("phone", "+34600111222"),
        ("anonymous", visitor["visitor_id"]),
    }

    written = await visitor_writes(client, channel, visitor["token"], "Soy yo, por la web", "c-1")
    assert written.status_code == 201, written.text
    thread = await messages(client, tenant, on_whatsapp["conversation_id"])
    assert [(m["channel_id"], m["text"]) for m in thread] == [
        (whatsapp, "¿Tenéis la talla 42?"),
        (channel, "Soy yo, por la web"),
    ]
    # The visitor is shown its own chat, not what the customer wrote on WhatsApp: a pre-chat
    # form proves nothing, and anyone could type this phone number.
    history = await client.get(f"/webchat/{channel}/messages", headers=as_visitor(visitor["token"]))
    assert [m["text"] for m in history.json()["items"]] == ["Soy yo, por la web"]


async def test_an_email_given_later_merges_the_visitor_into_the_known_customer(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    email = await add_channel(client, tenant, "email")
    known = (
        await inbound(
            client,
            tenant,
            channel_id=email,
            external_id="<m1@mail>",
            kind="email",
            value="marta@example.es",
            name="Marta Ruiz",
        )
    ).json()
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel, name="Marta")
    await visitor_writes(client, channel, visitor["token"], "Hola", "c-1")
    assert (await customer_of_visitor(client, tenant, visitor["visitor_id"]))["id"] != known[
        "customer_id"
    ]

    again = await start_session(client, channel, visitor["token"], email="Marta@Example.es")
    assert again.status_code == 200, again.text
    assert again.json()["token"] is None
    assert again.json()["visitor_id"] == visitor["visitor_id"]
    customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
    assert customer["id"] == known["customer_id"]
    assert customer["name"] == "Marta Ruiz"  # what a form says does not rename a known customer
    thread = await messages(client, tenant, known["conversation_id"])
    assert [m["text"] for m in thread] == ["Hola", "Hola"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not an email"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"name": "x" * 201}, "name"),
        ({"age": 40}, "age"),
    ],
)
async def test_a_bad_prechat_field_is_a_422_naming_it(
    client: httpx.AsyncClient, tenant: TenantHandle, fields: dict[str, Any], field: str
) -> None:
    channel = await webchat_channel(client, tenant)
    response = await start_session(client, channel, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert response.headers["access-control-allow-origin"] == SHOP


async def test_a_visitor_message_sent_twice_is_stored_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    first = await visitor_writes(client, channel, visitor["token"], "¿Abrís el domingo?", "abc-1")
    again = await visitor_writes(client, channel, visitor["token"], "¿Abrís el domingo?", "abc-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    together = await asyncio.gather(
        *(visitor_writes(client, channel, visitor["token"], "¿Y el lunes?", "abc-2") for _ in "12")
    )
    assert len({r.json()["message_id"] for r in together}) == 1

    customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
    thread = await messages(client, tenant, await conversation_of(client, tenant, customer["id"]))
    assert [(m["text"], m["address"]) for m in thread] == [
        ("¿Abrís el domingo?", f"anonymous:{visitor['visitor_id']}"),
        ("¿Y el lunes?", f"anonymous:{visitor['visitor_id']}"),
    ]

    empty = await visitor_writes(client, channel, visitor["token"], "", "abc-3")
    bad_id = await visitor_writes(client, channel, visitor["token"], "hola", "no spaces")
    assert (empty.status_code, bad_id.status_code) == (422, 422)
    assert (empty.json()["error"]["field"], bad_id.json()["error"]["field"]) == (
        "text",
        "client_id",
    )


async def test_a_wrong_token_or_another_channels_token_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    channel = await webchat_channel(client, tenant)
    other_channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, other_channel)
    stranger = await make_tenant("Otra tienda")
    strangers_channel = await webchat_channel(client, stranger)
    strangers_visitor = await new_visitor(client, strangers_channel)

    for token in ("hwv_made-up", visitor["token"], strangers_visitor["token"]):
        written = await visitor_writes(client, channel, token, "hola", "c-1")
        assert written.status_code == 401, written.text
        assert written.json()["error"]["code"] == "bad_visitor_token"
        history = await client.get(f"/webchat/{channel}/messages", headers=as_visitor(token))
        assert history.status_code == 401
        assert (await start_session(client, channel, token)).status_code == 401
    missing = await client.post(
        f"/webchat/{channel}/messages", json={"text": "hola", "client_id": "c"}, headers=AT_SHOP
    )
    assert missing.status_code == 401
    # The visitor's own channel takes the token in either header.
    own = await client.get(
        f"/webchat/{other_channel}/messages",
        headers={**AT_SHOP, "X-Hilos-Visitor": visitor["token"]},
    )
    assert own.status_code == 200
    assert own.json()["items"] == []
    assert (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"] == []


async def test_only_allowed_sites_may_use_the_chat(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await webchat_channel(client, tenant)
    evil = {"Origin": "https://evil.example"}
    for method, path in (
        ("GET", "config"),
        ("POST", "sessions"),
        ("GET", "messages"),
        ("OPTIONS", "sessions"),
    ):
        response = await client.request(method, f"/webchat/{channel}/{path}", headers=evil)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in response.headers

    preflight = await client.options(
        f"/webchat/{channel}/messages",
        headers={
            **AT_SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    # Allowed sites can read errors too (a stale token is a 401 the widget must see).
    stale = await client.get(f"/webchat/{channel}/messages", headers=as_visitor("hwv_x"))
    assert stale.status_code == 401
    assert stale.headers["access-control-allow-origin"] == SHOP
    # The origin is compared whole: scheme, host and port.
    for near in (
        "http://tienda.example",
        "https://tienda.example:8443",
        "https://a.tienda.example",
    ):
        response = await client.get(f"/webchat/{channel}/config", headers={"Origin": near})
        assert response.status_code == 403, near
    assert (
        await client.get(f"/webchat/{channel}/config", headers={"Origin": SHOP + ":443"})
    ).status_code == 200

    unlisted = await add_configured_channel(client, tenant, "web_chat", {})
    assert (await client.get(f"/webchat/{unlisted}/config", headers=AT_SHOP)).status_code == 403
    assert (await client.get(f"/webchat/{unlisted}/config")).status_code == 200
    anywhere = await add_configured_channel(client, tenant, "web_chat", {"allowed_origins": "*"})
    assert (await client.get(f"/webchat/{anywhere}/config", headers=evil)).status_code == 200


async def test_webchat_has_no_provider_webhook(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await webchat_channel(client, tenant)
    for method in ("GET", "POST"):
        response = await client.request(method, f"/webhooks/webchat/{channel}", content=b"{}")
        assert response.status_code == 404, method


# --- live: the socket ------------------------------------------------------------------------


async def test_a_visitor_writes_over_the_socket_once_per_client_id(
    client: httpx.AsyncClient, tenant: TenantHandle, live: str
) -> None:
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    async with connect(socket_url(live, channel, visitor["token"]), origin=SHOP) as ws:
        frame = {"type": "message", "text": "¿Hacéis envíos a Canarias?", "client_id": "w-1"}
        await ws.send(json.dumps(frame))
        ack = await next_frame(ws, "ack")
        assert ack["client_id"] == "w-1"
        assert ack["duplicate"] is False
        await ws.send(json.dumps(frame))
        again = await next_frame(ws, "ack")
        assert again["message_id"] == ack["message_id"]
        assert again["duplicate"] is True

        await ws.send(json.dumps({"type": "message", "text": "  ", "client_id": "w-2"}))
        refused = await next_frame(ws, "error")
        assert (refused["client_id"], refused["field"]) == ("w-2", "text")
        await ws.send("not json")
        assert (await next_frame(ws, "error"))["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "ping"}))
        await next_frame(ws, "pong")

    customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
    thread = await messages(client, tenant, await conversation_of(client, tenant, customer["id"]))
    assert [(m["id"], m["text"]) for m in thread] == [
        (ack["message_id"], "¿Hacéis envíos a Canarias?")
    ]


async def test_a_socket_with_a_bad_token_or_from_another_site_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, live: str
) -> None:
    channel = await webchat_channel(client, tenant)
    other = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    refusals = {
        "wrong token": (socket_url(live, channel, "hwv_wrong"), SHOP, 401),
        "another channel": (socket_url(live, other, visitor["token"]), SHOP, 401),
        "another site": (socket_url(live, channel, visitor["token"]), "https://evil.example", 403),
        "no channel": (socket_url(live, "nope", visitor["token"]), SHOP, 404),
    }
    for case, (url, origin, status) in refusals.items():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=origin):
                pass
        assert refused.value.response.status_code == status, case


async def test_an_agent_reply_is_pushed_to_the_visitor_and_marked_delivered_then_read(
    client: httpx.AsyncClient, tenant: TenantHandle, live: str, app: Any
) -> None:
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    async with connect(socket_url(live, channel, visitor["token"]), origin=SHOP) as ws:
        await ws.send(json.dumps({"type": "message", "text": "¿Y mi pedido?", "client_id": "q1"}))
        await next_frame(ws, "ack")
        customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
        conversation_id = await conversation_of(client, tenant, customer["id"])
        reply = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Sale hoy por la tarde"},
            headers=tenant.headers,
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["channel_id"] == channel

        await deliver(app, no_provider)
        await relay(app.state.sessionmaker, app.state.bus)
        pushed = await next_frame(ws, "message")
        while pushed["message"]["direction"] != "outbound":  # the echo of its own message
            pushed = await next_frame(ws, "message")
        assert pushed["message"]["id"] == reply.json()["id"]
        assert pushed["message"]["text"] == "Sale hoy por la tarde"
        assert "address" not in pushed["message"]
        await app.state.webchat_hub.idle()
        (_, sent) = await messages(client, tenant, conversation_id)
        assert sent["status"] == "delivered"

        await ws.send(json.dumps({"type": "read", "message_id": sent["id"]}))
        assert (await next_frame(ws, "receipt"))["status"] == "read"
        await ws.send(json.dumps({"type": "read", "message_id": "0" * 32}))
        assert (await next_frame(ws, "error"))["code"] == "not_found"
    (_, read) = await messages(client, tenant, conversation_id)
    assert read["status"] == "read"


async def test_the_visitors_other_tab_sees_what_it_wrote(
    client: httpx.AsyncClient, tenant: TenantHandle, live: str, app: Any
) -> None:
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    url = socket_url(live, channel, visitor["token"])
    async with connect(url, origin=SHOP) as tab, connect(url, origin=SHOP) as other_tab:
        written = await visitor_writes(client, channel, visitor["token"], "Desde el móvil", "m-1")
        await relay(app.state.sessionmaker, app.state.bus)
        for ws in (tab, other_tab):
            echoed = (await next_frame(ws, "message"))["message"]
            assert (echoed["id"], echoed["client_id"], echoed["direction"]) == (
                written.json()["message_id"],
                "m-1",
                "inbound",
            )


async def test_a_returning_visitor_finds_its_history_and_replies_sent_while_away(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    await visitor_writes(client, channel, visitor["token"], "¿Tenéis bici de paseo?", "h-1")
    customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
    conversation_id = await conversation_of(client, tenant, customer["id"])
    for body in ({"text": "Sí, la Urbana 3"}, {"text": "cliente habitual", "private": True}):
        response = await client.post(
            f"/v1/conversations/{conversation_id}/messages", json=body, headers=tenant.headers
        )
        assert response.status_code == 201, response.text
    await deliver(app, no_provider)  # nobody connected: sent, not delivered
    assert [m["status"] for m in await messages(client, tenant, conversation_id)] == [
        "received",
        "sent",
        None,
    ]

    back = await start_session(client, channel, visitor["token"])
    assert back.status_code == 200
    assert back.json()["visitor_id"] == visitor["visitor_id"]
    history = await client.get(f"/webchat/{channel}/messages", headers=as_visitor(visitor["token"]))
    assert history.status_code == 200
    assert [(m["direction"], m["text"], m["status"]) for m in history.json()["items"]] == [
        ("inbound", "¿Tenéis bici de paseo?", "received"),
        ("outbound", "Sí, la Urbana 3", "delivered"),
    ]
    assert history.json()["items"][0]["client_id"] == "h-1"
    assert [m["status"] for m in await messages(client, tenant, conversation_id)] == [
        "received",
        "delivered",
        None,
    ]

    # Another visitor of the same customer (same email, another browser) has its own chat.
    await start_session(client, channel, visitor["token"], email="pablo@example.es")
    other = await new_visitor(client, channel, email="pablo@example.es")
    assert (await customer_of_visitor(client, tenant, other["visitor_id"]))["id"] == customer["id"]
    theirs = await client.get(f"/webchat/{channel}/messages", headers=as_visitor(other["token"]))
    assert theirs.json()["items"] == []


async def test_a_reply_on_web_chat_to_someone_who_never_opened_it_fails_with_the_reason(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    channel = await webchat_channel(client, tenant)
    # A message an integrator posted for an anonymous id that is no visitor of this chat.
    posted = await inbound(
        client, tenant, channel_id=channel, external_id="x1", kind="anonymous", value="device-9"
    )
    conversation_id = posted.json()["conversation_id"]
    reply = await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": "¿Sigues ahí?"},
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    await deliver(app, no_provider)
    (_, failed) = await messages(client, tenant, conversation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "no_visitor"


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_a_reply_relayed_by_a_worker_process_reaches_the_socket_of_another_over_nats(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, engine: AsyncEngine
) -> None:
    """Two processes: one holds the visitor's socket, the other (the worker) relays the
    outbox to NATS. Each process has its own bus, as separate machines would."""
    assert NATS_URL is not None
    http_process = create_app(
        Settings(database_url=str(engine.url), bus_url=NATS_URL), engine=engine
    )
    worker_bus = NatsBus(NATS_URL)
    await worker_bus.start()
    channel = await webchat_channel(client, tenant)
    visitor = await new_visitor(client, channel)
    try:
        async with (
            serving(http_process) as base,
            connect(socket_url(base, channel, visitor["token"]), origin=SHOP) as ws,
        ):
            await ws.send(json.dumps({"type": "message", "text": "¿Hola?", "client_id": "n1"}))
            await next_frame(ws, "ack")
            customer = await customer_of_visitor(client, tenant, visitor["visitor_id"])
            conversation_id = await conversation_of(client, tenant, customer["id"])
            reply = await client.post(
                f"/v1/conversations/{conversation_id}/messages",
                json={"text": "¡Hola! Dime"},
                headers=tenant.headers,
            )
            await deliver(app, no_provider)
            await relay(app.state.sessionmaker, worker_bus)
            pushed = (await next_frame(ws, "message"))["message"]
            while pushed["direction"] != "outbound":
                pushed = (await next_frame(ws, "message"))["message"]
            assert pushed["id"] == reply.json()["id"]
            await http_process.state.webchat_hub.idle()
        (_, sent) = await messages(client, tenant, conversation_id)
        assert sent["status"] == "delivered"
    finally:
        await http_process.state.webchat_hub.close()
        await worker_bus.close()

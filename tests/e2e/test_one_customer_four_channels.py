"""End to end: one customer moves through four channels and stays one conversation.

A customer writes on WhatsApp and gives their email; emails from that address (over a real
SMTP session); opens the web chat giving that email; then calls. Every step goes in through
the channel's real entry point (a signed webhook, the SMTP server, the widget's API and
WebSocket on a real Uvicorn server, the call-event webhook), and the agent's answer goes out
on the web chat, the channel the customer last wrote on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
from websockets.asyncio.client import connect

from hilos.core.outbox import relay
from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.channels.email_fakes import email_bytes, inbound_server, send_mail, unique_address
from tests.channels.test_webchat import SHOP, next_frame, no_provider, serving, socket_url
from tests.conftest import TenantHandle, identify

WA_ID = "34622113344"
EMAIL = "ana.ruiz@example.org"
VOICE_TOKEN = "centralita-secreta"


async def test_whatsapp_then_email_then_web_chat_then_a_call_is_one_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    whatsapp = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    address = unique_address()
    email = await add_configured_channel(client, tenant, "email", {"address": address})
    webchat = await add_configured_channel(client, tenant, "web_chat", {"allowed_origins": [SHOP]})
    phone = await add_configured_channel(
        client, tenant, "voice", {"provider": "generic", "auth_token": VOICE_TOKEN}
    )

    # 1. WhatsApp: a signed webhook, as Meta sends it.
    webhook = fake_whatsapp.text_webhook(
        wa_id=WA_ID,
        wamid="wamid.E2E1",
        text=f"Hola, mi pedido no llega. Mi email es {EMAIL}",
        timestamp=int(datetime.now(UTC).timestamp()),
        name="Ana Ruiz",
    )
    body = json.dumps(webhook).encode()
    first = await client.post(
        f"/webhooks/whatsapp/{whatsapp}",
        content=body,
        headers={"X-Hub-Signature-256": fake_whatsapp.sign(body)},
    )
    assert first.status_code == 200, first.text
    customer_id = first.json()["messages"][0]["customer_id"]
    conversation_id = first.json()["messages"][0]["conversation_id"]
    # The agent notes the address the customer gave.
    noted = await identify(client, tenant, ("whatsapp", "+" + WA_ID), ("email", EMAIL))
    assert noted["customer_id"] == customer_id

    # 2. Email from that address, through the SMTP server Hilos runs.
    smtp = await inbound_server(app)
    try:
        raw = email_bytes(
            sender=EMAIL,
            to=address,
            subject="Pedido A-2231",
            text="Os adjunto el número de pedido: A-2231.",
            message_id="<e2e-1@example.org>",
            sender_name="Ana Ruiz",
            date=format_datetime(datetime.now(UTC)),
        )
        await send_mail(smtp.port, raw, sender=EMAIL, to=[address])
    finally:
        await smtp.close()

    # 3. The web chat, giving the same email in the pre-chat form, writing over the socket.
    session = await client.post(
        f"/webchat/{webchat}/sessions",
        json={"name": "Ana", "email": EMAIL},
        headers={"Origin": SHOP},
    )
    assert session.status_code == 201, session.text
    token = session.json()["token"]
    async with serving(app) as live, connect(socket_url(live, webchat, token), origin=SHOP) as ws:
        await ws.send(
            json.dumps({"type": "message", "text": "¿Me atendéis por aquí?", "client_id": "c1"})
        )
        await next_frame(ws, "ack")

        # 4. A call from the WhatsApp number, reported by the telephony system.
        for event in ("ringing", "ended"):
            call = await client.post(
                f"/webhooks/voice/{phone}",
                json={
                    "call_id": "call-e2e-1",
                    "event": event,
                    "from": "+" + WA_ID,
                    "to": "+34910111444",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "duration_seconds": 95 if event == "ended" else None,
                },
                headers={"Authorization": f"Bearer {VOICE_TOKEN}"},
            )
            assert call.status_code == 200, call.text

        # One customer, one conversation, four channels in the order the customer used them.
        conversations = (
            await client.get(
                "/v1/conversations", params={"customer_id": customer_id}, headers=tenant.headers
            )
        ).json()["items"]
        assert [c["id"] for c in conversations] == [conversation_id]
        assert [c["id"] for c in conversations[0]["channels"]] == [
            whatsapp,
            email,
            webchat,
            phone,
        ]
        entries = await messages(client, tenant, conversation_id)
        assert [(m["channel_id"], m["kind"]) for m in entries] == [
            (whatsapp, "message"),
            (email, "message"),
            (webchat, "message"),
            (phone, "call"),
        ]
        assert entries[3]["data"]["duration_seconds"] == 95
        profile = (await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)).json()
        kinds = {identity["kind"] for identity in profile["identities"]}
        assert {"whatsapp", "phone", "email", "anonymous"} <= kinds

        # The agent answers; the reply follows the customer to the web chat, live.
        reply = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Sí, Ana: tu pedido A-2231 sale hoy."},
            headers=tenant.headers,
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["channel_id"] == webchat
        await deliver(app, no_provider, tenant)
        await relay(app.state.sessionmaker, app.state.bus)
        pushed = await next_frame(ws, "message")
        while pushed["message"]["direction"] != "outbound":
            pushed = await next_frame(ws, "message")
        assert pushed["message"]["text"] == "Sí, Ana: tu pedido A-2231 sale hoy."
        await app.state.webchat_hub.idle()
    *_, sent = await messages(client, tenant, conversation_id)
    assert sent["status"] == "delivered"

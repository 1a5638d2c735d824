"""The agent console's tools in a real browser: canned responses typed as /shortcut, the
composer explaining why WhatsApp is closed, the screen pop of a ringing call, and the keyboard.

As in test_agent_console, the outbox relay is run by the test when the story needs it, as
``hilos serve``'s worker would run it.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Page, expect

from hilos.core import clock
from hilos.core.outbox import relay
from tests.channels.conftest import add_configured_channel, messages
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.e2e.browser.conftest import Screenshots
from tests.e2e.browser.test_agent_console import live_updates_on, mark_page, still_the_same_page
from tests.e2e.browser.test_agent_console import sign_in as sign_in_as
from tests.web.test_console import make_agent

PBX_TOKEN = "pbx-token-for-the-browser"


async def open_conversation(page: Page, conversation_id: str) -> None:
    await page.goto(f"/console/conversations/{conversation_id}")
    await live_updates_on(page)


async def test_an_agent_uses_a_canned_response_and_sees_why_whatsapp_is_closed(
    client: httpx.AsyncClient, tenant: TenantHandle, page: Page, shots: Screenshots
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    email = await add_channel(client, tenant, "email", "Atención al cliente")
    # Ana wrote on WhatsApp yesterday: the 24-hour window has closed since.
    received = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600333444",
        name="Ana García",
        text="¿Me avisáis cuando llegue la talla M?",
        sent_at=(clock.now() - timedelta(hours=26)).isoformat(),
    )
    assert received.status_code == 200, received.text
    conversation_id = received.json()["conversation_id"]
    await identify(client, tenant, ("whatsapp", "+34600333444"), ("email", "ana@example.es"))
    for shortcut, title, text in (
        ("llegada", "Ya ha llegado", "Hola {{customer.first_name}}, ¡ya ha llegado tu talla!"),
        ("firma", "Firma", "Un saludo, {{agent.name}} · {{business.name}}"),
    ):
        created = await client.post(
            "/v1/canned-responses",
            json={"shortcut": shortcut, "title": title, "text": text},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
    agent = await make_agent(client, tenant)

    # 1. The conversation: WhatsApp is there, but closed, with the reason and what to do.
    await sign_in_as(page, agent.email)
    await open_conversation(page, conversation_id)
    channel = page.locator("#reply-channel")
    await expect(channel.locator(f'option[value="{whatsapp}"]')).to_be_disabled()
    await expect(channel.locator("option:checked")).to_contain_text("Correo electrónico")
    reason = page.locator(f"#reason-{whatsapp}")
    await expect(reason).to_contain_text("La ventana de 24 horas de WhatsApp está cerrada")
    await expect(reason).to_contain_text("plantilla aprobada")
    await expect(reason).to_contain_text("El cliente escribió por allí por última vez hace 1 día")
    await shots.take("whatsapp-window-closed-reason")

    # 2. The agent types /lle, sees the suggestion, and Tab inserts the rendered response.
    reply = page.locator("#reply-text")
    await reply.click()
    await reply.press_sequentially("/lle")
    await expect(page.locator("#canned-suggestions")).to_contain_text("/llegada · Ya ha llegado")
    await shots.take("canned-suggestion")
    await reply.press("Tab")
    await expect(reply).to_have_value("Hola Ana, ¡ya ha llegado tu talla!")
    await expect(reply).to_be_focused()
    await expect(page.locator("#canned-suggestions")).to_be_hidden()

    # 3. The picker adds the signature where the cursor is.
    await reply.press("End")
    await reply.press("Enter")
    await page.locator("#canned-select").select_option(label="/firma · Firma")
    await expect(reply).to_have_value(
        "Hola Ana, ¡ya ha llegado tu talla!\nUn saludo, Lucía Martín · Tienda de prueba"
    )
    await shots.take("canned-responses-inserted")

    # 4. Sent: queued by email, the channel that can reach her.
    await page.get_by_role("button", name="Enviar").click()
    await live_updates_on(page)
    sent = page.locator("#messages li.outbound").last
    await expect(sent).to_contain_text("¡ya ha llegado tu talla!")
    await expect(sent.locator(".chip")).to_have_text("Correo electrónico")
    await expect(sent.locator(".delivery")).to_have_text("en cola")
    *_, stored = await messages(client, tenant, conversation_id)
    assert (stored["channel_id"], stored["status"]) == (email, "queued")
    await shots.take("reply-queued-by-email")


async def ring(client: httpx.AsyncClient, channel_id: str, *, call_id: str, caller: str) -> None:
    body = {
        "call_id": call_id,
        "event": "ringing",
        "from": caller,
        "occurred_at": clock.now().isoformat(),
        "caller_name": "Carmen",
    }
    response = await client.post(
        f"/webhooks/voice/{channel_id}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {PBX_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_a_screen_pop_appears_when_a_known_customer_calls(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, page: Page, shots: Screenshots
) -> None:
    phone = await add_configured_channel(client, tenant, "voice", {"auth_token": PBX_TOKEN})
    known = await identify(client, tenant, ("phone", "+34600999888"), name="Carmen Vidal")
    agent = await make_agent(client, tenant)

    # 1. The agent is in the inbox, listening.
    await sign_in_as(page, agent.email)
    await live_updates_on(page)
    await mark_page(page)

    # 2. Carmen calls: her name pops up at once, with her conversation and her 360.
    await ring(client, phone, call_id=f"c-{uuid.uuid4().hex}", caller="+34600999888")
    await relay(app.state.sessionmaker, app.state.bus)
    pop = page.locator("#screen-pops .screen-pop")
    await expect(pop).to_have_count(1)
    await expect(pop).to_contain_text("Llamada entrante")
    await expect(pop.get_by_role("heading")).to_have_text("Carmen Vidal")
    await expect(pop).to_contain_text("+34600999888")
    await expect(pop.get_by_role("link", name="Vista del cliente (360°)")).to_have_attribute(
        "href", f"/console/customers/{known['customer_id']}"
    )
    assert await still_the_same_page(page)
    await shots.take("screen-pop-in-the-inbox")

    # 3. The agent opens the conversation from it: the call is there.
    await pop.get_by_role("link", name="Abrir la conversación").click()
    await expect(page).to_have_url(
        f"/console/conversations/{(await pop_conversation(client, tenant, known))}"
    )
    await live_updates_on(page)
    await expect(page.locator("#customer-side")).to_contain_text("Carmen Vidal")
    await shots.take("conversation-of-the-caller")

    # 4. Another call while there: it pops up over the thread, and Esc closes it.
    await ring(client, phone, call_id=f"c-{uuid.uuid4().hex}", caller="+34600999888")
    await relay(app.state.sessionmaker, app.state.bus)
    await expect(page.locator("#screen-pops .screen-pop")).to_have_count(1)
    await shots.take("screen-pop-over-a-conversation")
    await page.keyboard.press("Escape")
    await expect(page.locator("#screen-pops .screen-pop")).to_have_count(0)
    await shots.take("screen-pop-dismissed")


async def pop_conversation(client: httpx.AsyncClient, tenant: TenantHandle, known: Any) -> str:
    response = await client.get(
        "/v1/conversations",
        params={"customer_id": known["customer_id"]},
        headers=tenant.headers,
    )
    [found] = response.json()["items"]
    conversation_id: str = found["id"]
    return conversation_id


async def test_the_console_is_usable_with_the_keyboard(
    client: httpx.AsyncClient, tenant: TenantHandle, page: Page, shots: Screenshots
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    received = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600444555",
        name="Luis Pardo",
    )
    conversation_id = received.json()["conversation_id"]
    agent = await make_agent(client, tenant)
    await sign_in_as(page, agent.email)

    # The first Tab reaches the skip link, visibly; it leads to the content.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Saltar al contenido")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await shots.take("skip-link")
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()

    # ? shows the shortcuts, documented on the page.
    await page.keyboard.press("?")
    shortcuts = page.locator("#shortcuts")
    await expect(shortcuts).to_have_attribute("open", "")
    await expect(shortcuts).to_contain_text("Ir a la bandeja de entrada")
    await shots.take("keyboard-shortcuts")
    await page.keyboard.press("?")

    # g c: the customers; /: their search; g i: back to the inbox.
    await page.keyboard.press("g")
    await page.keyboard.press("c")
    await expect(page).to_have_url("/console/customers")
    await page.keyboard.press("/")
    await expect(page.locator("#q")).to_be_focused()
    await page.keyboard.press("Escape")
    await page.locator("#q").blur()
    await page.keyboard.press("g")
    await page.keyboard.press("i")
    await expect(page).to_have_url("/console")

    # r: straight to the reply in a conversation.
    await open_conversation(page, conversation_id)
    await page.keyboard.press("r")
    await expect(page.locator("#reply-text")).to_be_focused()
    await page.keyboard.type("Hola Luis")
    await shots.take("reply-from-the-keyboard")

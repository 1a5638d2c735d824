"""The agent console in a real browser, live: a customer moves from WhatsApp to email while an
agent answers, and the agent's pages follow without a reload.

The scenario of issue 4 as far as the console goes today: sign in; a WhatsApp message appears
in the inbox; the conversation with the customer's sidebar; a reply queued on WhatsApp whose
delivery state then moves live; the same customer writes by email and the thread gains it. (The
supervisor's queue figures come with routing.) The outbox relay and the delivery worker are run
by the test at the moment the story needs them, as ``hilos serve``'s worker would run them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Page, expect

from hilos.core.outbox import relay
from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.channels.email_fakes import unique_address
from tests.conftest import TenantHandle, identify, inbound
from tests.e2e.browser.conftest import Screenshots
from tests.web.test_console import PASSWORD, make_agent

PHONE = "+34600111222"
EMAIL = "ana.garcia@example.es"


async def sign_in(page: Page, email: str) -> None:
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("form button[type=submit]").click()
    await expect(page).to_have_url("/console")


async def live_updates_on(page: Page) -> None:
    """The page heard its stream open (and may now be sure to hear what follows)."""
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "connected")


async def mark_page(page: Page) -> None:
    """Leave a mark in this page's memory, which a reload would wipe."""
    await page.evaluate("window.hilosTestMark = true")


async def still_the_same_page(page: Page) -> bool:
    mark: bool = await page.evaluate("window.hilosTestMark === true")
    return mark


async def post_inbound(
    live: str, tenant: TenantHandle, *, channel_id: str, kind: str, value: str, text: str
) -> dict[str, Any]:
    """What an integration does: ``POST /v1/messages/inbound`` with the tenant's key."""
    async with httpx.AsyncClient(base_url=live, headers=tenant.headers) as api:
        response = await api.post(
            "/v1/messages/inbound",
            json={
                "channel_id": channel_id,
                "external_id": f"{kind}-{uuid.uuid4().hex}",
                "sender": {"kind": kind, "value": value, "name": "Ana García"},
                "text": text,
            },
        )
    assert response.status_code == 200, response.text
    received: dict[str, Any] = response.json()
    return received


async def whatsapp_receipt(
    client: httpx.AsyncClient, channel_id: str, *, wamid: str, status: str
) -> None:
    body = json.dumps(
        fake_whatsapp.status_webhook(
            wamid=wamid, status=status, timestamp=int(time.time()), recipient=PHONE[1:]
        )
    ).encode()
    response = await client.post(
        f"/webhooks/whatsapp/{channel_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": fake_whatsapp.sign(body),
        },
    )
    assert response.status_code == 200, response.text


async def test_an_agent_follows_a_customer_from_whatsapp_to_email_without_reloading(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    live: str,
    page: Page,
    shots: Screenshots,
) -> None:
    whatsapp = await add_configured_channel(
        client, tenant, "whatsapp", fake_whatsapp.CONFIG, name="WhatsApp Tienda"
    )
    email = await add_configured_channel(
        client, tenant, "email", {"address": unique_address()}, name="Atención al cliente"
    )
    agent = await make_agent(client, tenant)

    # 1. The agent signs in and finds the inbox empty, listening.
    await sign_in(page, agent.email)
    await live_updates_on(page)
    await expect(page.locator("#live-status")).to_have_text("En directo")
    await expect(page.locator("#inbox-list")).to_contain_text("No hay conversaciones")
    await mark_page(page)
    await shots.take("inbox-signed-in")

    # 2. Ana writes on WhatsApp: her conversation appears in the inbox without a reload.
    first = await post_inbound(
        live,
        tenant,
        channel_id=whatsapp,
        kind="whatsapp",
        value=PHONE,
        text="¿Tenéis la chaqueta vaquera en talla M?",
    )
    await relay(app.state.sessionmaker, app.state.bus)
    row = page.locator(f"#conversation-{first['conversation_id']}")
    await expect(row).to_contain_text("Ana García")
    await expect(row).to_contain_text("WhatsApp")
    assert await still_the_same_page(page)
    await shots.take("whatsapp-message-in-the-inbox")

    # 3. The agent opens it: the thread, and Ana's sidebar with her identities and history.
    await row.get_by_role("link", name="Ana García").click()
    await expect(page).to_have_url(f"/console/conversations/{first['conversation_id']}")
    await live_updates_on(page)
    inbound = page.locator(f"#message-{first['message_id']}")
    await expect(inbound).to_contain_text("¿Tenéis la chaqueta vaquera en talla M?")
    await expect(inbound.locator(".chip")).to_have_text("WhatsApp")
    await expect(inbound.locator(".delivery")).to_have_text("recibido")
    sidebar = page.locator("#customer-side")
    await expect(sidebar).to_contain_text(PHONE)
    await expect(sidebar).to_contain_text("Consentimientos")
    await expect(sidebar).to_contain_text("No hay otras conversaciones.")
    await expect(sidebar.get_by_role("link", name="Vista del cliente (360°)")).to_be_visible()
    await shots.take("conversation-with-customer-360")

    # 4. The agent replies; WhatsApp, where Ana wrote, is the default; the reply is queued.
    await expect(page.locator("#reply-channel option:checked")).to_contain_text("WhatsApp")
    await page.locator("#reply-text").fill("¡Sí! Nos queda una. ¿Te la reservo?")
    await page.get_by_role("button", name="Enviar").click()
    await live_updates_on(page)
    reply = page.locator("#messages li.outbound").last
    await expect(reply).to_contain_text("¡Sí! Nos queda una. ¿Te la reservo?")
    await expect(reply.locator(".chip")).to_have_text("WhatsApp")
    await expect(reply.locator(".delivery")).to_have_text("en cola")
    await mark_page(page)
    await shots.take("reply-queued-on-whatsapp")

    # 5. WhatsApp takes it, then tells us it reached Ana's phone: the state moves live.
    provider = fake_whatsapp.FakeWhatsApp()
    assert (await deliver(app, provider, tenant))["sent"] == 1
    await relay(app.state.sessionmaker, app.state.bus)
    await expect(reply.locator(".delivery")).to_have_text("enviado")
    [_, sent] = await messages(client, tenant, first["conversation_id"])
    await whatsapp_receipt(client, whatsapp, wamid=sent["external_id"], status="delivered")
    await relay(app.state.sessionmaker, app.state.bus)
    await expect(reply.locator(".delivery")).to_have_text("entregado")
    assert await still_the_same_page(page)
    await shots.take("reply-delivered")

    # 6. Ana's email is linked to her, and she writes by email while the agent is typing:
    # the same thread gains the email, the sidebar her address; the draft stays.
    await identify(client, tenant, ("whatsapp", PHONE), ("email", EMAIL))
    await page.locator("#reply-text").fill("Te la guardo hasta")
    second = await post_inbound(
        live,
        tenant,
        channel_id=email,
        kind="email",
        value=EMAIL,
        text="Mejor os escribo por correo: sí, guardádmela hasta el sábado.",
    )
    assert second["conversation_id"] == first["conversation_id"]
    await relay(app.state.sessionmaker, app.state.bus)
    by_email = page.locator(f"#message-{second['message_id']}")
    await expect(by_email).to_contain_text("guardádmela hasta el sábado")
    await expect(by_email.locator(".chip")).to_have_text("Correo electrónico")
    await expect(page.locator("#messages > li")).to_have_count(3)
    await expect(page.locator("#conversation-facts")).to_contain_text("Correo electrónico")
    await expect(sidebar).to_contain_text(EMAIL)
    await expect(page.locator("#reply-text")).to_have_value("Te la guardo hasta")
    # The reply now goes by email, where Ana last wrote, unless the agent picks otherwise.
    await expect(page.locator("#reply-channel option:checked")).to_contain_text(
        "Correo electrónico"
    )
    assert await still_the_same_page(page)
    await shots.take("email-joins-the-same-thread")


async def test_a_conversation_resolved_elsewhere_leaves_the_open_inbox_and_shows_resolved(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    page: Page,
    shots: Screenshots,
) -> None:
    """Two tabs of an English-speaking agent; someone else resolves the conversation."""
    whatsapp = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    received = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+447911123456",
        name="John Smith",
        text="Do you ship to London?",
    )
    assert received.status_code == 200, received.text
    conversation_id = received.json()["conversation_id"]
    agent = await make_agent(client, tenant, locale="en")
    await sign_in(page, agent.email)
    await live_updates_on(page)
    await expect(page.locator("#live-status")).to_have_text("Live")
    row = page.locator(f"#conversation-{conversation_id}")
    await expect(row).to_contain_text("John Smith")
    thread = await page.context.new_page()
    await thread.goto(f"/console/conversations/{conversation_id}")
    await live_updates_on(thread)
    await expect(thread.locator("#status-open")).to_be_disabled()
    await mark_page(page)
    await mark_page(thread)

    resolved = await client.patch(
        f"/v1/conversations/{conversation_id}",
        json={"status": "resolved"},
        headers=tenant.headers,
    )
    assert resolved.status_code == 200, resolved.text
    await relay(app.state.sessionmaker, app.state.bus)

    await expect(thread.locator("#conversation-facts .badge")).to_have_text("Resolved")
    await expect(thread.locator("#status-resolved")).to_be_disabled()
    await expect(thread.locator("#status-open")).to_be_enabled()
    await expect(row).to_have_count(0)
    await expect(page.locator("#inbox-list")).to_contain_text("No conversations here.")
    assert await still_the_same_page(page)
    assert await still_the_same_page(thread)
    await shots.take("open-inbox-after-resolving")
    await shots.take("conversation-resolved", thread)

"""The supervisor view in a real browser, live: the queue's figures move without a reload when a
customer arrives and when an agent comes online, and a conversation moves back to the queue
from the page.

The outbox relay and routing are run by the test (``Worker.run_once``) at the moment the story
needs them, as ``hilos serve``'s worker would run them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Page, expect

from tests.conftest import TenantHandle, add_channel
from tests.e2e.browser.conftest import Screenshots
from tests.e2e.browser.test_agent_console import (
    live_updates_on,
    mark_page,
    post_inbound,
    sign_in,
    still_the_same_page,
)
from tests.routing.helpers import create_agent, create_queue, set_presence
from tests.web.test_console import PASSWORD


async def make_supervisor(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    email = f"sara-{uuid.uuid4().hex[:8]}@tienda-prueba.es"
    response = await client.post(
        "/v1/users",
        json={"email": email, "name": "Sara", "role": "supervisor", "password": PASSWORD},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return email


async def relay_and_route(app: Any) -> None:
    """One worker round to relay the arrival and route it, one more to relay what routing
    wrote (the conversation joining the line)."""
    await app.state.worker.run_once()
    await app.state.worker.run_once()


async def test_a_supervisor_sees_the_queue_figures_change_live(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    live: str,
    page: Page,
    shots: Screenshots,
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    queue = await create_queue(client, tenant, "Soporte ES", auto_assign=True)
    ana = await create_agent(client, tenant, "ana@tienda.es", name="Ana", online=False)
    supervisor = await make_supervisor(client, tenant)
    row = page.locator(f"#queue-{queue['id']}")
    waiting = row.locator(".waiting .value")
    online = row.locator(".agents-online .value")

    # 1. The supervisor signs in and opens the supervisor view: nobody waits, nobody is online.
    await sign_in(page, supervisor)
    await page.get_by_role("link", name="Supervisor").click()
    await expect(page).to_have_url("/console/supervisor")
    await live_updates_on(page)
    await expect(row).to_contain_text("Soporte ES")
    await expect(waiting).to_have_text("0")
    await expect(online).to_have_text("0")
    await expect(page.locator(f"#agent-{ana}")).to_contain_text("Desconectado")
    await expect(page.locator("#line")).to_contain_text("No hay nadie esperando.")
    await mark_page(page)
    await shots.take("supervisor-view")

    # 2. A customer writes on WhatsApp: with nobody online, they wait in the queue's line.
    received = await post_inbound(
        live,
        tenant,
        channel_id=whatsapp,
        kind="whatsapp",
        value="+34600400001",
        text="¿Cuándo llega mi pedido?",
    )
    await relay_and_route(app)
    await expect(waiting).to_have_text("1")
    await expect(row.locator(".longest-wait .value")).to_have_text(re.compile(r"^\d+:\d\d$"))
    line = page.locator(f"#waiting-{received['conversation_id']}")
    await expect(line).to_contain_text("Ana García")
    await expect(line).to_contain_text("Soporte ES")
    await expect(line).to_contain_text("Nadie todavía")
    assert await still_the_same_page(page)
    await shots.take("a-customer-waits")

    # 3. Ana comes online: the conversation is hers at once; the figures follow.
    await set_presence(client, tenant, ana, "online")
    await app.state.worker.run_once()
    await expect(online).to_have_text("1")
    await expect(waiting).to_have_text("0")
    await expect(page.locator(f"#agent-{ana}")).to_contain_text("Conectado")
    await expect(page.locator(f"#agent-{ana} .load")).to_contain_text("WhatsApp 1/3")
    held = page.locator(f"#held-{received['conversation_id']}")
    await expect(held).to_contain_text("Ana García")
    await expect(held).to_contain_text("Ana")
    assert await still_the_same_page(page)
    await shots.take("agent-online-takes-it")

    # 4. The supervisor sends it back to the queue with a note: it waits there again (not
    # offered back to Ana, who let it go).
    await held.get_by_role("link", name="Mover").click()
    await expect(page).to_have_url(
        f"/console/supervisor/conversations/{received['conversation_id']}"
    )
    await page.locator("#move-target").select_option(f"queue:{queue['id']}")
    await page.locator("#move-note").fill("Que lo coja quien tenga la información del pedido")
    await shots.take("move-form")
    await page.get_by_role("button", name="Mover").click()
    await expect(page).to_have_url(f"/console/supervisor?moved={received['conversation_id']}")
    await expect(
        page.get_by_role("status").filter(has_text="La conversación se ha movido.")
    ).to_be_visible()
    await expect(waiting).to_have_text("1")
    await expect(page.locator(f"#waiting-{received['conversation_id']}")).to_be_visible()
    await shots.take("moved-back-to-the-queue")

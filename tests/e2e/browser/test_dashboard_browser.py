"""The dashboard and the omnichannel audit in a real browser: a supervisor opens them from the
menu, narrows the dashboard to one channel with the filter form, opens the printable report
(also as it prints) and reads the audit in Spanish and in English. Each step is a screenshot in
``test-results/browser/``.

The shop's history is loaded through the public API on a frozen clock (the server runs in the
test's loop and reads the same clock): twelve weeks of WhatsApp, email and web chat
conversations answered within minutes, web and in-store orders by returning customers (so the
cohort heat map has rows), a few survey answers, and one store whose stock moved today.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Page, expect

from hilos.core import clock
from tests.analytics.test_audit import open_shop
from tests.commerce.orders_helpers import location, place, product, receive
from tests.conftest import TenantHandle
from tests.e2e.browser.conftest import Screenshots
from tests.e2e.browser.test_agent_console import mark_page, sign_in, still_the_same_page
from tests.e2e.browser.test_supervisor import make_supervisor
from tests.routing.helpers import ManualClock

START = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KINDS = ("whatsapp", "email", "web_chat")


@pytest.fixture
def frozen() -> Iterator[ManualClock]:
    moment = ManualClock(START)
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


async def load_history(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    shop = await open_shop(client, tenant, KINDS)
    tag = uuid.uuid4().hex[:6]
    await location(client, tenant, "ALM")
    await location(client, tenant, "MAD01", "store", pickup=True)
    await product(client, tenant, "CAMISETA", prices={"web": 1990, "store:MAD01": 1990})
    await product(client, tenant, "ZAPATILLA", prices={"web": 5990, "store:MAD01": 6490})
    await receive(client, tenant, "CAMISETA", "ALM", 500)
    await receive(client, tenant, "ZAPATILLA", "ALM", 500)
    await receive(client, tenant, "CAMISETA", "MAD01", 100)

    day = 0
    while START + timedelta(days=day) < NOW - timedelta(hours=2):
        frozen.now = START + timedelta(days=day)
        kind = KINDS[day % 3]
        n = day % 17
        sender = {
            "whatsapp": ("whatsapp", f"+3461000{n:04d}"),
            "email": ("email", f"cliente{n}-{tag}@correo.es"),
            "web_chat": ("anonymous", f"visitante-{day}-{tag}"),
        }[kind]
        conversation = await shop.writes(kind, sender, "Hola, ¿me ayudáis con un pedido?")
        frozen.advance(minutes=2 + (day * 7) % 13 + (10 if kind == "email" else 0))
        await shop.replies(conversation)
        if day % 4 == 0:
            await shop.resolves(conversation)
            answer = await client.post(
                "/v1/surveys/responses",
                json={
                    "customer": {"identities": [{"kind": sender[0], "value": sender[1]}]},
                    "kind": "nps",
                    "score": (10, 9, 8, 6, 10)[day % 5],
                    "channel": kind,
                    "conversation_id": conversation,
                },
                headers=tenant.headers,
            )
            assert answer.status_code == 201, answer.text
        if day % 2 == 0:
            buyer = day % 9
            ordered = await place(
                client,
                tenant,
                {"sku": "CAMISETA" if day % 3 else "ZAPATILLA", "quantity": 1 + day % 2},
                channel="web" if day % 5 else "store:MAD01",
                key=f"order-{day}-{tag}",
                email=f"comprador{buyer}-{tag}@correo.es",
            )
            assert ordered.status_code == 201, ordered.text
        day += 1
    # This morning: the store counted its stock, a customer wrote and bought.
    frozen.now = NOW - timedelta(hours=1)
    await receive(client, tenant, "ZAPATILLA", "MAD01", 12)
    frozen.now = NOW - timedelta(minutes=40)
    conversation = await shop.writes("whatsapp", ("whatsapp", "+34610009999"), "¿Hay talla 42?")
    frozen.advance(minutes=3)
    await shop.replies(conversation)
    ordered = await place(
        client,
        tenant,
        {"sku": "ZAPATILLA", "quantity": 1},
        key=f"today-{tag}",
        email="hoy@correo.es",
    )
    assert ordered.status_code == 201, ordered.text
    frozen.now = NOW


async def whatsapp_of(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    response = await client.get("/v1/channels", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return next(c["id"] for c in response.json() if c["kind"] == "whatsapp")


async def test_a_supervisor_reads_the_dashboard_the_report_and_the_audit(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    frozen: ManualClock,
    live: str,
    page: Page,
    shots: Screenshots,
) -> None:
    await load_history(client, tenant, frozen)
    supervisor = await make_supervisor(client, tenant)

    # 1. The dashboard, from the menu: the last 30 days, today's live figures, KPI cards and
    # charts drawn on the server.
    await sign_in(page, supervisor)
    await page.get_by_role("link", name="Panel de control").click()
    await expect(page).to_have_url("/console/dashboard")
    await expect(page.get_by_role("heading", name="Panel de control", level=1)).to_be_visible()
    await expect(page.locator("#filter-from")).to_have_value("2026-10-25")
    await expect(page.locator("#filter-to")).to_have_value("2026-11-23")
    await expect(page.locator("#today")).to_contain_text("Conversaciones iniciadas 1")
    await expect(page.locator("#kpi-nps .value")).not_to_have_text("—")
    await expect(page.locator("#kpi-first_response_seconds .value")).to_contain_text("min")
    charts = page.locator("svg.chart")
    await expect(charts).to_have_count(6)
    await expect(page.locator("svg.line-chart").first).to_have_attribute("role", "img")
    await expect(page.locator("#table-cohorts tbody tr").first).to_be_visible()
    await shots.take("dashboard")

    # Today's figures follow without a reload: a customer writes, and the region refreshes
    # (it does every minute, and when the tab shows again, which the test makes happen).
    await mark_page(page)
    response = await client.post(
        "/v1/messages/inbound",
        json={
            "channel_id": await whatsapp_of(client, tenant),
            "external_id": f"wamid.{uuid.uuid4().hex}",
            "sender": {"kind": "whatsapp", "value": "+34610008888"},
            "text": "¿Abrís mañana?",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    await expect(page.locator("#today")).to_contain_text("Conversaciones iniciadas 2")
    assert await still_the_same_page(page)

    # 2. Narrowed to WhatsApp with the filter form: the messaging table keeps one channel,
    # and the address carries the filters (the page works without JavaScript).
    await page.locator("#filter-channel").select_option("whatsapp")
    await page.get_by_role("button", name="Aplicar").click()
    await expect(page).to_have_url(
        "/console/dashboard?from=2026-10-25&to=2026-11-23&channel=whatsapp&store=&queue=&agent="
    )
    await expect(page.locator("#range")).to_contain_text("Canal: WhatsApp")
    await expect(page.locator("#table-channels tbody tr")).to_have_count(1)
    await expect(page.locator("#table-channels tbody tr")).to_contain_text("WhatsApp")
    await shots.take("dashboard-whatsapp")

    # 3. A table's CSV comes with the same filters.
    async with page.expect_download() as waiting:
        await page.locator("#csv-channels").click()
    download = await waiting.value
    assert download.suggested_filename == "hilos-channels-2026-10-25-2026-11-23.csv"
    path = await download.path()
    content = path.read_text(encoding="utf-8-sig").splitlines()
    assert content[0] == "Canal,Conversaciones,Respondidas,Primera respuesta (mediana)"
    assert [line.split(",")[0] for line in content[1:]] == ["whatsapp"]

    # 4. The printable report: the same figures, no controls; then as it prints.
    await page.get_by_role("link", name="Informe para imprimir").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Informe de KPI")
    await expect(page.locator("form[role=search]")).to_have_count(0)
    await expect(page.get_by_role("button", name="Imprimir")).to_be_visible()
    await shots.take("report")
    await page.emulate_media(media="print")
    await expect(page.locator("header.topbar")).to_be_hidden()
    await expect(page.get_by_role("button", name="Imprimir")).to_be_hidden()
    await shots.take("report-printed")
    await page.emulate_media(media="screen")

    # 5. The audit, from the menu: four areas with their level, gaps and next steps.
    await page.get_by_role("link", name="Auditoría").click()
    await expect(page).to_have_url("/console/audit")
    await expect(page.get_by_role("heading", name="Auditoría omnicanal", level=1)).to_be_visible()
    areas = page.locator("article.area")
    await expect(areas).to_have_count(4)
    await expect(page.locator("#area-customer_view")).to_contain_text("Visión única del cliente")
    await expect(page.locator("#area-fulfilment .level-name")).not_to_be_empty()
    await expect(page.locator("#area-engagement ol.next-steps li").first).to_be_visible()
    await expect(page.locator("#metric-stock_visibility .value")).to_have_text("100\xa0%")
    await shots.take("audit")

    # 6. In English.
    await page.get_by_role("link", name="EN", exact=True).click()
    await expect(page.get_by_role("heading", name="Omnichannel audit", level=1)).to_be_visible()
    await expect(page.locator("#area-customer_view")).to_contain_text("Single customer view")
    await expect(page.locator("#area-engagement")).to_contain_text("Next steps")
    await shots.take("audit-english")

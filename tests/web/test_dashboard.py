"""The console's dashboard (``/console/dashboard``), its printable report and the audit page
(``/console/audit``): who may open them, what they show for a shop whose every figure is known,
the filters and their errors, and the CSV of each table.

The story, on a frozen clock: on Sunday 22 November 2026 two customers write on WhatsApp at
09:00 UTC and one of them is answered two minutes later; on Monday 23 at 09:00 a customer
writes by email and is answered ten minutes later, and a web order of two T-shirts at 20 €
is placed. The pages are read on Monday at 10:00 UTC (11:00 in Madrid, the tenant's zone).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from typing import Any

import httpx
import pytest

from hilos.core import clock
from tests.analytics.test_audit import Shop, open_shop, phone
from tests.commerce.orders_helpers import location, place, product, receive
from tests.conftest import TenantHandle
from tests.routing.helpers import ManualClock
from tests.web.test_console import browser, make_agent, sign_in

SUNDAY = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[ManualClock]:
    moment = ManualClock(SUNDAY)
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


@dataclass
class Story:
    shop: Shop
    tag: str


async def two_days_story(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> Story:
    shop = await open_shop(client, tenant, ("whatsapp", "email"))
    tag = uuid.uuid4().hex[:6]
    await location(client, tenant, "ALM")
    await product(client, tenant, "CAMISETA", prices={"web": 2000})
    await receive(client, tenant, "CAMISETA", "ALM", 10)

    answered = await shop.writes("whatsapp", ("whatsapp", phone(1)), "¿Tenéis la talla M?")
    await shop.writes("whatsapp", ("whatsapp", phone(2)), "Hola")
    frozen.advance(minutes=2)
    await shop.replies(answered)

    frozen.advance(days=1, minutes=-2)
    by_email = await shop.writes("email", ("email", f"eva-{tag}@correo.es"), "Una consulta")
    frozen.advance(minutes=10)
    await shop.replies(by_email)
    ordered = await place(
        client,
        tenant,
        {"sku": "CAMISETA", "quantity": 2},
        key=f"order-{tag}",
        email=f"eva-{tag}@correo.es",
    )
    assert ordered.status_code == 201, ordered.text
    frozen.advance(minutes=50)
    return Story(shop, tag)


@asynccontextmanager
async def signed_in_as(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, **fields: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser signed in as a new user of the tenant (a supervisor unless told)."""
    user = await make_agent(client, tenant, **fields)
    async with browser(app) as visitor:
        response = await sign_in(visitor, user.email)
        assert response.status_code == 303, response.text
        yield visitor


def csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))


def region(html: str, element_id: str) -> str:
    """The element with ``element_id``, up to the first closing tag of its name."""
    match = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}".*?</\1>', html, re.S)
    assert match is not None, f"no #{element_id} on the page"
    return match.group(0)


def text_of(fragment: str) -> str:
    """What a person reads in ``fragment``: no tags, one space between words."""
    text = unescape(re.sub(r"<[^>]+>", " ", fragment)).replace("\xa0", " ")
    return re.sub(r"\s+", " ", text).strip()


async def test_the_dashboard_shows_the_shops_figures_in_spanish(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get("/console/dashboard")

    assert page.status_code == 200, page.text
    html = page.text
    assert '<html lang="es">' in html
    assert "Panel de control" in html
    # The default range: the last 30 UTC days, today included.
    assert 'name="from" type="date" value="2026-10-25"' in html
    assert 'name="to" type="date" value="2026-11-23"' in html
    # Today in Madrid: the email conversation and the order.
    today = text_of(region(html, "today"))
    assert "Conversaciones iniciadas 1" in today
    assert "Pedidos 1" in today
    assert "Ingresos 40,00 €" in today
    assert "Primera respuesta (mediana) 10 min" in today
    # Cards: three conversations answered in 2 and 10 minutes; one order of 40 €.
    first = text_of(region(html, "kpi-first_response_seconds"))
    assert "Primera respuesta (mediana) 6 min" in first
    assert "40,00 €" in text_of(region(html, "kpi-average_order_value"))
    # Charts are inline SVG images with a title.
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart') == 6
    assert "<title" in html
    assert "Conversaciones y pedidos por día" in html
    # Per channel: two conversations on WhatsApp, one by email.
    channels = text_of(region(html, "table-channels"))
    assert "WhatsApp 2 1 2 min" in channels
    assert "Correo electrónico 1 1 10 min" in channels
    # Nothing from a CDN: every script and stylesheet is the console's own.
    for source in re.findall(r'(?:src|href)="([^"]+\.(?:js|css)[^"]*)"', html):
        assert source.startswith("/static/"), source


async def test_todays_figures_refresh_alone_under_the_same_filters(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    story = await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get("/console/dashboard", params={"channel": "whatsapp"})
        live = re.search(r'data-live-url="([^"]+)"', page.text)
        assert live is not None
        url = unescape(live.group(1))
        before = await visitor.get(url)
        await story.shop.writes("whatsapp", ("whatsapp", phone(3)), "¿Abrís el domingo?")
        await story.shop.writes("email", ("email", f"otro-{story.tag}@correo.es"), "Hola")
        after = await visitor.get(url)

    assert url.startswith("/console/dashboard/today?")
    assert "channel=whatsapp" in url
    assert 'data-dashboard-live="60"' in page.text
    assert before.status_code == 200, before.text
    # Only the region: no page around it.
    assert before.text.lstrip().startswith("<section")
    # Filtered to WhatsApp: none today, then the one that just wrote (not the email).
    assert "Conversaciones iniciadas 0" in text_of(region(before.text, "today"))
    assert "Conversaciones iniciadas 1" in text_of(region(after.text, "today"))


async def test_the_dashboard_speaks_english_on_request(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get("/console/dashboard", params={"lang": "en"})

    assert page.status_code == 200, page.text
    html = page.text
    assert '<html lang="en">' in html
    assert "<h1>Dashboard</h1>" in html
    assert "Conversations started 1" in text_of(region(html, "today"))
    assert "Revenue €40.00" in text_of(region(html, "today"))
    assert "Conversations and orders per day" in html
    assert "Retention by monthly cohort" in html


async def test_each_table_downloads_as_csv_with_the_pages_filters(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get(
            "/console/dashboard", params={"from": "2026-11-21", "to": "2026-11-23", "lang": "en"}
        )
        links = dict(re.findall(r'href="([^"]*format=csv[^"]*)"[^>]*id="csv-([a-z]+)"', page.text))
        daily = await visitor.get(
            "/console/dashboard",
            params={"from": "2026-11-21", "to": "2026-11-23", "format": "csv", "table": "daily"},
        )
        channels = await visitor.get(
            "/console/dashboard",
            params={
                "from": "2026-11-21",
                "to": "2026-11-23",
                "channel": "whatsapp",
                "format": "csv",
                "table": "channels",
            },
        )
        every_table = {
            code: await visitor.get(link.replace("&amp;", "&")) for link, code in links.items()
        }

    assert sorted(every_table) == ["channels", "cohorts", "daily", "kpis", "sales", "today"]
    for code, response in every_table.items():
        assert response.status_code == 200, (code, response.text)
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        assert csv_rows(response)[0], code
    rows = csv_rows(daily)
    # In English: the page asked for it, and the console remembers.
    assert rows[0] == [
        "Day",
        "Conversations",
        "First response (median)",
        "Orders (EUR)",
        "Revenue (EUR, minor units)",
    ]
    assert rows[1:] == [
        ["2026-11-21", "0", "", "0", "0"],
        ["2026-11-22", "2", "120.0", "0", "0"],
        ["2026-11-23", "1", "600.0", "1", "4000"],
    ]
    # Filtered to WhatsApp: the email conversations are not counted.
    assert csv_rows(channels)[1:] == [["whatsapp", "2", "1", "120.0"]]
    kpis = {row[0]: row[2] for row in csv_rows(every_table["kpis"])[1:]}
    assert kpis["first_response_seconds"] == "360.0"
    assert kpis["backlog"] == "3"


async def test_filters_narrow_the_figures(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        email = await visitor.get("/console/dashboard", params={"channel": "email", "lang": "en"})

    assert email.status_code == 200, email.text
    first = text_of(region(email.text, "kpi-first_response_seconds"))
    assert "First response (median) 10 min" in first
    assert 'value="email" selected' in email.text
    assert "Channel: Email" in text_of(region(email.text, "range"))
    # Orders have no messaging channel: their cards say the filter does not apply.
    assert "Not filtered by: channel" in text_of(region(email.text, "kpi-average_order_value"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-11-23", "to": "2026-11-01"}, "The range is upside down"),
        ({"from": "2025-01-01", "to": "2026-11-23"}, "The range is too long"),
        ({"from": "23/11/2026"}, "Write the dates as year-month-day"),
        ({"channel": "fax"}, "That filter does not exist"),
        ({"queue": "0" * 32}, "That filter does not exist"),
        ({"agent": "f" * 32}, "That filter does not exist"),
        ({"store": "NOWHERE"}, "That filter does not exist"),
        ({"format": "pdf"}, "The format is html or csv"),
        ({"format": "csv", "table": "secrets"}, "Choose one of the page's tables"),
    ],
)
async def test_bad_filters_are_a_422_page_that_says_why(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    params: dict[str, str],
    message: str,
) -> None:
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get("/console/dashboard", params={**params, "lang": "en"})

    assert page.status_code == 422, page.text
    assert message in unescape(page.text)
    assert 'href="/console/dashboard"' in page.text


async def test_the_spanish_error_page_is_in_spanish(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    async with signed_in_as(app, client, tenant) as visitor:
        page = await visitor.get(
            "/console/dashboard", params={"from": "2026-11-23", "to": "2026-11-01"}
        )

    assert page.status_code == 422
    assert "El rango está al revés" in page.text


async def test_the_report_is_the_same_figures_for_paper(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        dashboard = await visitor.get("/console/dashboard", params={"channel": "whatsapp"})
        link = re.search(r'href="([^"]+)" id="report-link"', dashboard.text)
        assert link is not None
        report = await visitor.get(link.group(1).replace("&amp;", "&"))

    assert report.status_code == 200, report.text
    html = report.text
    assert '<body class="report">' in html
    assert "Informe de KPI" in html
    assert "Canal: WhatsApp" in text_of(region(html, "range"))
    assert 'media="print"' in html
    assert "data-print" in html
    # No controls on paper: neither the filter form nor the CSV links.
    assert 'role="search"' not in html
    assert "format=csv" not in html
    assert 'id="table-daily"' in html


async def test_agents_may_not_open_the_dashboard_or_the_audit(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    async with signed_in_as(app, client, tenant, role="agent") as visitor:
        pages = [
            await visitor.get(path, params={"lang": "en"})
            for path in (
                "/console/dashboard",
                "/console/dashboard/report",
                "/console/dashboard/today",
                "/console/audit",
            )
        ]
        inbox = await visitor.get("/console")

    for page in pages:
        assert page.status_code == 403
        assert "for supervisors and administrators" in page.text
    assert 'href="/console/dashboard"' not in inbox.text
    async with browser(app) as stranger:
        response = await stranger.get("/console/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


async def test_another_tenants_data_never_shows(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    frozen: ManualClock,
) -> None:
    await two_days_story(client, tenant, frozen)
    other = await make_tenant(name="Otra tienda")
    async with signed_in_as(app, client, other) as visitor:
        page = await visitor.get("/console/dashboard", params={"lang": "en"})
        daily = await visitor.get("/console/dashboard", params={"format": "csv", "table": "daily"})
        # Another tenant's channel, as a filter, does not exist here.
        foreign = await visitor.get(
            "/console/dashboard", params={"channel": (await first_channel(client, tenant))}
        )

    assert page.status_code == 200, page.text
    assert "Conversations started 0" in text_of(region(page.text, "today"))
    assert all(row[1] == "0" for row in csv_rows(daily)[1:])
    assert foreign.status_code == 422


async def first_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    response = await client.get("/v1/channels", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    items = body["items"] if isinstance(body, dict) else body
    channel_id: str = items[0]["id"]
    return channel_id


async def test_the_audit_page_shows_each_areas_level_gaps_and_next_steps(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await two_days_story(client, tenant, frozen)
    async with signed_in_as(app, client, tenant) as visitor:
        spanish = await visitor.get("/console/audit")
        english = await visitor.get("/console/audit", params={"lang": "en", "days": "7"})
        metrics = await visitor.get("/console/audit", params={"format": "csv"})
        bad = await visitor.get("/console/audit", params={"days": "0", "lang": "en"})

    assert spanish.status_code == 200, spanish.text
    assert "Auditoría omnicanal" in spanish.text
    assert "Visión única del cliente" in spanish.text
    assert english.status_code == 200, english.text
    html = english.text
    for area in ("customer_view", "engagement", "fulfilment", "cost_to_serve"):
        assert f'id="area-{area}"' in html
    fulfilment = text_of(region(html, "area-fulfilment"))
    assert "Fulfilment" in fulfilment
    assert "No store is set up" in fulfilment
    assert "Send each store's stock movements" in fulfilment
    # All three customers were identified by a phone or an email.
    identified = text_of(region(html, "metric-identified_customer_rate"))
    assert "Identified customers 100% 80% 100 3 / 3" in identified
    assert 'value="7" selected' in html
    rows = csv_rows(metrics)
    assert rows[0][0] == "code"
    assert [row[0] for row in rows[1:]] == [
        "channel_coverage",
        "identified_customer_rate",
        "cross_channel_continuity",
        "response_time_consistency",
        "price_parity",
        "stock_visibility",
        "consent_coverage",
        "survey_coverage",
    ]
    assert rows[2][2:] == ["1.0", "0.8", "100", "3", "3"]
    assert bad.status_code == 422

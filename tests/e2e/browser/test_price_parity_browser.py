"""The price-parity page in a real browser: prices loaded through the API by an integration,
the report read in Spanish and in English, narrowed by channel, and the policy changed from
the page (a mistake first, shown beside its field).
"""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Page, expect

from tests.conftest import TenantHandle
from tests.e2e.browser.conftest import Screenshots
from tests.e2e.browser.test_agent_console import sign_in
from tests.e2e.browser.test_supervisor import make_supervisor

NBSP = "\xa0"

# SKU, product, {channel: amount in cents of EUR}.
CATALOG = [
    ("CHAQ-VAQ-L", "Chaqueta vaquera", {"web": 5999, "store:MAD01": 6999}),
    ("CAM-BAS-M", "Camiseta básica", {"web": 1999, "marketplace": 2199}),
    ("ZAP-RUN-42", "Zapatillas running", {"web": 8999, "marketplace": 9399}),
]


async def load_prices(live: str, tenant: TenantHandle) -> None:
    """What the shop's ERP does: products, prices per channel and the parity policy (the
    marketplace may be 5 % dearer), through the public API."""
    async with httpx.AsyncClient(base_url=live, headers=tenant.headers) as api:
        policy = await api.put(
            "/v1/price-parity/policy", json={"max_gap_percent": 0, "allowances": {"marketplace": 5}}
        )
        assert policy.status_code == 200, policy.text
        for sku, name, prices in CATALOG:
            product = await api.post("/v1/products", json={"name": name, "sku": sku})
            assert product.status_code == 201, product.text
            for channel, amount in prices.items():
                price = await api.put(
                    "/v1/prices",
                    json={"sku": sku, "channel": channel, "amount": amount, "currency": "EUR"},
                )
                assert price.status_code == 200, price.text


async def test_a_supervisor_reads_the_parity_report_and_changes_the_policy(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    live: str,
    page: Page,
    shots: Screenshots,
) -> None:
    await load_prices(live, tenant)
    supervisor = await make_supervisor(client, tenant)
    rows = page.locator("tr.parity-row")
    jacket = page.locator('tr.parity-row[data-sku="CHAQ-VAQ-L"]')
    tshirt = page.locator('tr.parity-row[data-sku="CAM-BAS-M"]')

    # 1. The supervisor opens the report from the menu: two SKUs beyond the policy, the
    # largest gap first; the trainers' 4.45 % on the marketplace is within its 5 %.
    await sign_in(page, supervisor)
    await page.get_by_role("link", name="Paridad de precios").click()
    await expect(page).to_have_url("/console/commerce/price-parity")
    await expect(page.get_by_role("heading", name="Paridad de precios", level=1)).to_be_visible()
    await expect(page.locator("#policy-rules")).to_contain_text(
        f"marketplace puede estar hasta un 5{NBSP}% por encima del canal más barato."
    )
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-sku", "CHAQ-VAQ-L")
    await expect(rows.nth(1)).to_have_attribute("data-sku", "CAM-BAS-M")
    await expect(jacket).to_contain_text("Chaqueta vaquera")
    await expect(jacket.locator('[data-channel="web"] .amount')).to_have_text(f"59,99{NBSP}€")
    await expect(jacket.locator('[data-channel="store:MAD01"] .amount')).to_have_text(
        f"69,99{NBSP}€"
    )
    await expect(jacket.locator(".gap-amount")).to_have_text(f"10,00{NBSP}€")
    await expect(jacket.locator(".gap-percent")).to_have_text(f"16,67{NBSP}%")
    await expect(tshirt.locator(".gap-percent")).to_have_text(f"10,01{NBSP}%")
    await expect(tshirt.locator('[data-channel="marketplace"]')).to_contain_text(
        f"supera el 5{NBSP}% permitido"
    )
    await expect(page.locator('tr.parity-row[data-sku="ZAP-RUN-42"]')).to_have_count(0)
    await shots.take("report-in-spanish")

    # 2. Only the marketplace's SKUs.
    await page.locator("#filter-channel").select_option("marketplace")
    await page.get_by_role("button", name="Filtrar").click()
    await expect(page).to_have_url("/console/commerce/price-parity?channel=marketplace&sku=")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-sku", "CAM-BAS-M")
    await shots.take("filtered-by-marketplace")

    # 3. The same report in English.
    await page.get_by_role("link", name="Ver todos").click()
    await page.get_by_role("link", name="EN", exact=True).click()
    await expect(page.get_by_role("heading", name="Price parity", level=1)).to_be_visible()
    await expect(rows).to_have_count(2)
    await expect(jacket.locator(".gap-amount")).to_have_text("€10.00")
    await expect(jacket.locator(".gap-percent")).to_have_text("16.67%")
    await expect(tshirt.locator('[data-channel="marketplace"] .amount')).to_have_text("€21.99")
    await expect(tshirt.locator('[data-channel="marketplace"]')).to_contain_text(
        "beyond the 5% allowed"
    )
    await expect(page.locator("#policy-rules")).to_contain_text(
        "marketplace may be up to 5% higher than the cheapest channel."
    )
    await shots.take("report-in-english")

    # 4. The Madrid store may be up to 20 % dearer: a mistake first, shown beside the field,
    # then the right value. The jacket leaves the report.
    await page.get_by_text("Change the policy").click()
    store_row = page.locator("#allowance-2")
    await store_row.locator('input[name="allowance_channel"]').fill("store:MAD01")
    await store_row.locator('input[name="allowance_percent"]').fill("veinte")
    await page.get_by_role("button", name="Save the policy").click()
    await expect(page.locator("#policy-errors")).to_contain_text(
        "The allowance of store:MAD01 must be a number from 0 to 1000."
    )
    await expect(page.locator("#allowance-2 input[name='allowance_percent']")).to_have_attribute(
        "aria-invalid", "true"
    )
    await shots.take("policy-mistake")
    await page.locator("#allowance-2 input[name='allowance_percent']").fill("20")
    await page.get_by_role("button", name="Save the policy").click()
    await expect(page).to_have_url("/console/commerce/price-parity?saved=true")
    await expect(page.get_by_role("status")).to_contain_text("The price policy was saved.")
    await expect(page.locator("#policy-rules")).to_contain_text(
        "store:MAD01 may be up to 20% higher than the cheapest channel."
    )
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-sku", "CAM-BAS-M")
    await shots.take("policy-saved")

    # The API agrees.
    policy = await client.get("/v1/price-parity/policy", headers=tenant.headers)
    assert policy.json() == {
        "max_gap_percent": 0.0,
        "allowances": {"marketplace": 5.0, "store:MAD01": 20.0},
    }


async def test_every_price_within_the_policy_shows_the_empty_state(
    client: httpx.AsyncClient, tenant: TenantHandle, live: str, page: Page, shots: Screenshots
) -> None:
    await load_prices(live, tenant)
    async with httpx.AsyncClient(base_url=live, headers=tenant.headers) as api:
        relaxed = await api.put("/v1/price-parity/policy", json={"max_gap_percent": 20})
        assert relaxed.status_code == 200, relaxed.text
    supervisor = await make_supervisor(client, tenant)
    await sign_in(page, supervisor)
    await page.goto("/console/commerce/price-parity")
    await expect(page.locator("#parity-empty")).to_have_text(
        "Todos los precios están dentro de la política."
    )
    await expect(page.locator("tr.parity-row")).to_have_count(0)
    await shots.take("empty-in-spanish")
    await page.get_by_role("link", name="EN", exact=True).click()
    await expect(page.locator("#parity-empty")).to_have_text("Every price is within the policy.")
    await shots.take("empty-in-english")

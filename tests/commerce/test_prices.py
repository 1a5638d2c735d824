"""Prices per sales channel (upsert, validity windows, one currency per channel) and the
price-parity report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hilos.core import clock
from tests.conftest import TenantHandle

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    now: datetime

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def moment() -> Iterator[ManualClock]:
    manual = ManualClock(START)
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def add_product(client: httpx.AsyncClient, tenant: TenantHandle, sku: str) -> None:
    response = await client.post(
        "/v1/products", json={"sku": sku, "name": sku}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text


async def put_price(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sku: str,
    channel: str,
    amount: int,
    currency: str = "EUR",
    **extra: Any,
) -> httpx.Response:
    body = {"sku": sku, "channel": channel, "amount": amount, "currency": currency, **extra}
    return await client.put("/v1/prices", json=body, headers=tenant.headers)


async def effective(
    client: httpx.AsyncClient, tenant: TenantHandle, sku: str, **params: str
) -> dict[str, int]:
    response = await client.get(
        "/v1/prices/effective", params={"sku": sku, **params}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return {p["channel"]: p["amount"] for p in response.json()}


async def parity(client: httpx.AsyncClient, tenant: TenantHandle, **params: Any) -> list[Any]:
    response = await client.get("/v1/price-parity", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def set_policy(client: httpx.AsyncClient, tenant: TenantHandle, **body: Any) -> None:
    response = await client.put("/v1/price-parity/policy", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text


# --- prices ---------------------------------------------------------------------------------


async def test_a_price_is_set_and_replaced(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "CAM-1")
    first = await put_price(client, tenant, "CAM-1", "web", 1999, compare_at_amount=2499)
    assert first.status_code == 200, first.text
    assert first.json()["amount"] == 1999
    assert first.json()["compare_at_amount"] == 2499
    assert first.json()["valid_from"] is None
    again = await put_price(client, tenant, "CAM-1", "web", 1899)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["compare_at_amount"] is None
    rows = await client.get("/v1/prices", params={"sku": "CAM-1"}, headers=tenant.headers)
    assert [(p["channel"], p["amount"]) for p in rows.json()] == [("web", 1899)]
    assert await effective(client, tenant, "CAM-1") == {"web": 1899}


async def test_the_effective_price_follows_validity_windows(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "SALE")
    await put_price(client, tenant, "SALE", "web", 5000)
    sale_from, sale_until = START + timedelta(days=1), START + timedelta(days=3)
    sale = await put_price(
        client,
        tenant,
        "SALE",
        "web",
        3500,
        compare_at_amount=5000,
        valid_from=sale_from.isoformat(),
        valid_until=sale_until.isoformat(),
    )
    assert sale.status_code == 200, sale.text
    assert await effective(client, tenant, "SALE") == {"web": 5000}
    moment.advance(days=1)
    assert await effective(client, tenant, "SALE") == {"web": 3500}
    moment.advance(days=2)  # valid_until is exclusive
    assert await effective(client, tenant, "SALE") == {"web": 5000}
    assert await effective(client, tenant, "SALE", at=(START + timedelta(days=2)).isoformat()) == {
        "web": 3500
    }
    rows = await client.get("/v1/prices", params={"sku": "SALE"}, headers=tenant.headers)
    assert [p["amount"] for p in rows.json()] == [5000, 3500]


async def test_a_channel_without_a_valid_price_has_none(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "OLD")
    await put_price(
        client, tenant, "OLD", "app", 100, valid_until=(START + timedelta(hours=1)).isoformat()
    )
    assert await effective(client, tenant, "OLD") == {"app": 100}
    moment.advance(hours=1)
    assert await effective(client, tenant, "OLD") == {}


async def test_one_currency_per_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "A")
    await add_product(client, tenant, "B")
    assert (await put_price(client, tenant, "A", "web", 1000)).status_code == 200
    mismatch = await put_price(client, tenant, "B", "web", 1100, "USD")
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "currency_mismatch"
    assert mismatch.json()["error"]["field"] == "currency"
    # Another channel may sell in another currency.
    assert (await put_price(client, tenant, "B", "web-us", 1100, "USD")).status_code == 200
    # Replacing a channel's only row may change its currency.
    assert (await put_price(client, tenant, "A", "web", 900, "GBP")).status_code == 200
    rows = await client.get("/v1/prices", params={"sku": "B"}, headers=tenant.headers)
    assert [(p["channel"], p["currency"]) for p in rows.json()] == [("web-us", "USD")]


async def test_bad_prices_are_refused_and_change_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "P")
    await put_price(client, tenant, "P", "web", 1000)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"amount": -1}, 422, "amount"),
        ({"amount": 10.5}, 422, "amount"),
        ({"currency": "EURO"}, 422, "currency"),
        ({"currency": "XYZ"}, 422, "currency"),
        ({"currency": "eur"}, 422, "currency"),
        ({"channel": "Web Shop"}, 422, "channel"),
        ({"compare_at_amount": 5}, 422, "body"),  # not above amount
        ({"valid_from": "2026-03-02T10:00:00"}, 422, "valid_from"),  # no time zone
        (
            {"valid_from": "2026-03-05T00:00:00Z", "valid_until": "2026-03-04T00:00:00Z"},
            422,
            "body",
        ),
        ({"sku": "NOPE"}, 404, "sku"),
    ]
    for change, status, field in cases:
        body = {"sku": "P", "channel": "web", "amount": 5, "currency": "EUR", **change}
        response = await client.put("/v1/prices", json=body, headers=tenant.headers)
        assert response.status_code == status, (change, response.text)
        assert response.json()["error"]["field"] == field, (change, response.text)
    rows = await client.get("/v1/prices", params={"sku": "P"}, headers=tenant.headers)
    assert [(p["channel"], p["amount"]) for p in rows.json()] == [("web", 1000)]


async def test_another_tenants_sku_cannot_be_priced(
    client: httpx.AsyncClient, make_tenant: Any, moment: ManualClock
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    await add_product(client, owner, "MINE")
    response = await put_price(client, other, "MINE", "web", 1)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_sku"
    assert (await client.get("/v1/prices", headers=other.headers)).json() == []


async def test_a_price_can_be_deleted_by_its_tenant_only(
    client: httpx.AsyncClient, make_tenant: Any, moment: ManualClock
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    await add_product(client, owner, "D")
    price = (await put_price(client, owner, "D", "web", 10)).json()
    assert (
        await client.delete(f"/v1/prices/{price['id']}", headers=other.headers)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/prices/{price['id']}", headers=owner.headers)
    ).status_code == 204
    assert await effective(client, owner, "D") == {}


# --- parity ---------------------------------------------------------------------------------


async def test_equal_prices_are_not_listed(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "EQ")
    for channel in ("web", "app", "store:MAD01"):
        await put_price(client, tenant, "EQ", channel, 2500)
    assert await parity(client, tenant) == []
    assert await parity(client, tenant, include_within_policy="true") == []


async def test_any_difference_exceeds_the_default_policy(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "DIFF")
    await put_price(client, tenant, "DIFF", "web", 1000)
    await put_price(client, tenant, "DIFF", "app", 1001)
    [item] = await parity(client, tenant)
    assert item["sku"] == "DIFF"
    assert item["reference_amount"] == 1000
    assert item["gap_percent"] == 0.1
    assert item["exceeds"] is True
    assert [(p["channel"], p["amount"], p["exceeds"]) for p in item["prices"]] == [
        ("web", 1000, False),
        ("app", 1001, True),
    ]


async def test_the_marketplace_allowance(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await set_policy(client, tenant, allowances={"marketplace": 5})
    for sku, marketplace in (("FOUR", 1040), ("FIVE", 1050), ("SIX", 1060)):
        await add_product(client, tenant, sku)
        await put_price(client, tenant, sku, "web", 1000)
        await put_price(client, tenant, sku, "marketplace", marketplace)
    [item] = await parity(client, tenant)
    assert item["sku"] == "SIX"
    assert item["gap_percent"] == 6.0
    marketplace = next(p for p in item["prices"] if p["channel"] == "marketplace")
    assert marketplace == {
        "channel": "marketplace",
        "amount": 1060,
        "currency": "EUR",
        "gap_percent": 6.0,
        "allowed_percent": 5.0,
        "exceeds": True,
    }
    within = await parity(client, tenant, include_within_policy="true")
    assert [(i["sku"], i["exceeds"]) for i in within] == [
        ("FIVE", False),
        ("FOUR", False),
        ("SIX", True),
    ]


async def test_the_allowance_is_for_its_channel_only(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    # Web 4 % above the marketplace: the marketplace's allowance does not cover web.
    await set_policy(client, tenant, max_gap_percent=1, allowances={"marketplace": 5})
    await add_product(client, tenant, "REV")
    await put_price(client, tenant, "REV", "marketplace", 1000)
    await put_price(client, tenant, "REV", "web", 1040)
    [item] = await parity(client, tenant)
    web = next(p for p in item["prices"] if p["channel"] == "web")
    assert (web["allowed_percent"], web["exceeds"]) == (1.0, True)
    policy = await client.get("/v1/price-parity/policy", headers=tenant.headers)
    assert policy.json() == {"max_gap_percent": 1.0, "allowances": {"marketplace": 5.0}}


async def test_a_channel_missing_a_price_is_named_not_compared(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "FULL")
    await add_product(client, tenant, "PART")
    await add_product(client, tenant, "ALONE")
    for channel in ("web", "app", "marketplace"):
        await put_price(client, tenant, "FULL", channel, 1000)
    await put_price(client, tenant, "PART", "web", 1000)
    await put_price(client, tenant, "PART", "app", 1200)
    await put_price(client, tenant, "ALONE", "web", 999)
    [item] = await parity(client, tenant)
    assert item["sku"] == "PART"
    assert item["missing_channels"] == ["marketplace"]
    assert {p["channel"] for p in item["prices"]} == {"web", "app"}


async def test_an_expired_price_is_not_compared(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "PROMO")
    await put_price(client, tenant, "PROMO", "web", 1000)
    await put_price(client, tenant, "PROMO", "app", 1000)
    await put_price(
        client,
        tenant,
        "PROMO",
        "app",
        800,
        valid_from=START.isoformat(),
        valid_until=(START + timedelta(days=1)).isoformat(),
    )
    [item] = await parity(client, tenant)
    assert item["reference_amount"] == 800
    moment.advance(days=1)
    assert await parity(client, tenant) == []
    # The report at a past moment sees the promotion again.
    past = await parity(client, tenant, at=START.isoformat())
    assert [i["sku"] for i in past] == ["PROMO"]


async def test_different_currencies_are_never_compared(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "FX")
    await put_price(client, tenant, "FX", "web", 1000, "EUR")
    await put_price(client, tenant, "FX", "web-us", 1200, "USD")
    await put_price(client, tenant, "FX", "web-uk", 900, "GBP")
    assert await parity(client, tenant) == []
    await put_price(client, tenant, "FX", "app-us", 1300, "USD")
    [item] = await parity(client, tenant)
    assert (item["currency"], item["reference_amount"]) == ("USD", 1200)
    assert {p["channel"] for p in item["prices"]} == {"web-us", "app-us"}


async def test_a_free_reference_makes_any_price_exceed(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await set_policy(client, tenant, max_gap_percent=50)
    await add_product(client, tenant, "GIFT")
    await put_price(client, tenant, "GIFT", "store:MAD01", 0)
    await put_price(client, tenant, "GIFT", "web", 1)
    [item] = await parity(client, tenant)
    assert (item["gap_percent"], item["exceeds"]) == (None, True)


async def test_parity_is_per_tenant(
    client: httpx.AsyncClient, make_tenant: Any, moment: ManualClock
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    await add_product(client, owner, "T")
    await put_price(client, owner, "T", "web", 1)
    await put_price(client, owner, "T", "app", 2)
    assert [i["sku"] for i in await parity(client, owner)] == ["T"]
    assert await parity(client, other) == []


async def test_a_bad_policy_is_refused(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    for body, field in (
        ({"max_gap_percent": -1}, "max_gap_percent"),
        ({"allowances": {"marketplace": -5}}, "allowances.marketplace"),
        ({"allowances": {"Market Place": 5}}, "allowances.Market Place.[key]"),
    ):
        response = await client.put("/v1/price-parity/policy", json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    policy = await client.get("/v1/price-parity/policy", headers=tenant.headers)
    assert policy.json() == {"max_gap_percent": 0.0, "allowances": {}}


async def test_an_agent_reads_prices_but_cannot_change_them(
    client: httpx.AsyncClient, tenant: TenantHandle, moment: ManualClock
) -> None:
    await add_product(client, tenant, "R")
    await put_price(client, tenant, "R", "web", 100)
    created = await client.post(
        "/v1/api-keys", json={"name": "tienda", "role": "agent"}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    agent = {"Authorization": f"Bearer {created.json()['key']}"}
    body = {"sku": "R", "channel": "web", "amount": 1, "currency": "EUR"}
    assert (await client.put("/v1/prices", json=body, headers=agent)).status_code == 403
    policy = await client.put("/v1/price-parity/policy", json={}, headers=agent)
    assert policy.status_code == 403
    read = await client.get("/v1/prices/effective", params={"sku": "R"}, headers=agent)
    assert [p["amount"] for p in read.json()] == [100]

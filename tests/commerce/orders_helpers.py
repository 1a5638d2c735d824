"""Building a shop through the public API for the order and return tests: products, prices,
locations, stock, and placing orders as a channel would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantHandle

# Madrid (Sol), and places around it, for distances.
MADRID = (40.4168, -3.7038)
GETAFE = (40.3057, -3.7329)
ALCALA = (40.4818, -3.3643)
BARCELONA = (41.3874, 2.1686)


async def location(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    code: str,
    kind: str = "warehouse",
    at: tuple[float, float] | None = None,
    *,
    pickup: bool = False,
    ship_from_store: bool = False,
) -> None:
    body: dict[str, Any] = {
        "code": code,
        "name": f"Ubicación {code}",
        "kind": kind,
        "pickup": pickup,
        "ship_from_store": ship_from_store,
    }
    if at is not None:
        body["lat"], body["lon"] = at
    response = await client.post("/v1/locations", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def product(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sku: str,
    *,
    prices: dict[str, int] | None = None,
    currency: str = "EUR",
) -> None:
    response = await client.post(
        "/v1/products", json={"sku": sku, "name": f"Producto {sku}"}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    for channel, amount in (prices or {"web": 1999}).items():
        priced = await client.put(
            "/v1/prices",
            json={"sku": sku, "channel": channel, "amount": amount, "currency": currency},
            headers=tenant.headers,
        )
        assert priced.status_code in (200, 201), priced.text


async def receive(
    client: httpx.AsyncClient, tenant: TenantHandle, sku: str, at: str, quantity: int
) -> None:
    response = await client.post(
        "/v1/stock/movements",
        json={
            "sku": sku,
            "location": at,
            "quantity": quantity,
            "reason": "receipt",
            "idempotency_key": f"receipt-{sku}-{at}-{quantity}",
        },
        headers=tenant.headers,
    )
    assert response.status_code in (200, 201), response.text


async def stock_at(client: httpx.AsyncClient, tenant: TenantHandle, sku: str) -> dict[str, Any]:
    response = await client.get("/v1/stock/levels", params={"sku": sku}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return {
        level["location"]: (level["on_hand"], level["reserved"])
        for level in response.json()["levels"]
    }


def order_body(
    *lines: dict[str, Any],
    channel: str = "web",
    key: str = "order-1",
    email: str = "lucia@example.com",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "customer": {"identities": [{"kind": "email", "value": email}]},
        "channel": channel,
        "lines": list(lines),
        "idempotency_key": key,
        **extra,
    }


async def place(
    client: httpx.AsyncClient, tenant: TenantHandle, *lines: dict[str, Any], **extra: Any
) -> httpx.Response:
    return await client.post("/v1/orders", json=order_body(*lines, **extra), headers=tenant.headers)


async def advance(
    client: httpx.AsyncClient, tenant: TenantHandle, order_id: str, status: str
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/orders/{order_id}/status", json={"status": status}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result

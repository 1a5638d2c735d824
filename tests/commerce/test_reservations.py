"""Reservations: they never oversell, they are released, consumed into a sale, or expire by the
worker's timer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from hilos.core.clock import now, set_now
from tests.commerce.test_stock import add_location, add_sku, ledger_sum, levels, move, stock_events
from tests.conftest import TenantHandle


@pytest.fixture
def clock() -> Any:
    start = now()
    state = {"now": start}
    set_now(lambda: state["now"])

    def advance(seconds: float) -> None:
        state["now"] = state["now"] + timedelta(seconds=seconds)

    yield advance
    set_now(None)


async def reserve(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    sku: str,
    location: str,
    quantity: int = 1,
    ttl_seconds: int = 900,
    reference: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "ttl_seconds": ttl_seconds,
    }
    if reference is not None:
        body["reference"] = reference
    return await client.post("/v1/reservations", json=body, headers=tenant.headers)


async def test_two_hundred_buyers_for_the_last_ten_units(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    variant_id = await add_sku(sessionmaker, tenant, "ULTIMAS")
    await add_location(sessionmaker, tenant, "ALM")
    assert (
        await move(client, tenant, sku="ULTIMAS", location="ALM", quantity=10)
    ).status_code == 201

    responses = await asyncio.gather(
        *(
            reserve(client, tenant, sku="ULTIMAS", location="ALM", reference=f"cart-{n}")
            for n in range(200)
        )
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 10
    assert statuses.count(409) == 190
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "out_of_stock"
    }
    level = (await levels(client, tenant, "ULTIMAS"))["ALM"]
    assert (level["on_hand"], level["reserved"], level["available"]) == (10, 10, 0)

    # Every winner turns into a sale: the stock ends at zero, never below, and the ledger agrees.
    winners = [r.json()["id"] for r in responses if r.status_code == 201]
    consumed = await asyncio.gather(
        *(client.post(f"/v1/reservations/{rid}/consume", headers=tenant.headers) for rid in winners)
    )
    assert {r.status_code for r in consumed} == {200}
    level = (await levels(client, tenant, "ULTIMAS"))["ALM"]
    assert (level["on_hand"], level["reserved"]) == (0, 0)
    assert await ledger_sum(sessionmaker, tenant, variant_id) == 0


async def test_a_reservation_beyond_what_can_be_promised_is_out_of_stock(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, make_tenant: Any
) -> None:
    await add_sku(sessionmaker, tenant, "PANT-40")
    await add_location(sessionmaker, tenant, "TIENDA", kind="store", pickup=True)
    await move(client, tenant, sku="PANT-40", location="TIENDA", quantity=4)
    await client.put(
        "/v1/stock/safety",
        json={"sku": "PANT-40", "location": "TIENDA", "safety_stock": 1},
        headers=tenant.headers,
    )
    assert (
        await reserve(client, tenant, sku="PANT-40", location="TIENDA", quantity=2)
    ).status_code == 201
    refused = await reserve(client, tenant, sku="PANT-40", location="TIENDA", quantity=2)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "out_of_stock"
    assert (await levels(client, tenant, "PANT-40"))["TIENDA"]["reserved"] == 2

    # A SKU never stocked at a location is out of stock there too.
    await add_location(sessionmaker, tenant, "VACIA", kind="store")
    empty = await reserve(client, tenant, sku="PANT-40", location="VACIA")
    assert empty.status_code == 409

    bad = await reserve(client, tenant, sku="PANT-40", location="TIENDA", quantity=0)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "quantity"

    other = await make_tenant("Otra")
    assert (await reserve(client, other, sku="PANT-40", location="TIENDA")).status_code == 404


async def test_release_gives_the_stock_back_once(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, make_tenant: Any
) -> None:
    await add_sku(sessionmaker, tenant, "GORRA")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="GORRA", location="ALM", quantity=3)
    held = await reserve(client, tenant, sku="GORRA", location="ALM", quantity=3, reference="o-1")
    assert held.status_code == 201
    assert held.json()["status"] == "held"
    rid = held.json()["id"]

    other = await make_tenant("Otra")
    assert (
        await client.post(f"/v1/reservations/{rid}/release", headers=other.headers)
    ).status_code == 404

    for _ in range(2):
        released = await client.post(f"/v1/reservations/{rid}/release", headers=tenant.headers)
        assert released.status_code == 200
        assert released.json()["status"] == "released"
    level = (await levels(client, tenant, "GORRA"))["ALM"]
    assert (level["on_hand"], level["reserved"]) == (3, 0)

    consumed = await client.post(f"/v1/reservations/{rid}/consume", headers=tenant.headers)
    assert consumed.status_code == 409
    assert consumed.json()["error"]["code"] == "reservation_released"
    assert [e["reserved"] for e in await stock_events(sessionmaker, tenant)] == [0, 3, 0]


async def test_consume_is_one_sale_in_the_ledger(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    variant_id = await add_sku(sessionmaker, tenant, "BOTA")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="BOTA", location="ALM", quantity=5)
    rid = (await reserve(client, tenant, sku="BOTA", location="ALM", quantity=2)).json()["id"]
    for _ in range(2):
        consumed = await client.post(f"/v1/reservations/{rid}/consume", headers=tenant.headers)
        assert consumed.status_code == 200
        assert consumed.json()["status"] == "consumed"
    level = (await levels(client, tenant, "BOTA"))["ALM"]
    assert (level["on_hand"], level["reserved"]) == (3, 0)
    ledger = await client.get(
        "/v1/stock/movements", params={"sku": "BOTA", "location": "ALM"}, headers=tenant.headers
    )
    sales = [m for m in ledger.json()["items"] if m["reason"] == "sale"]
    assert [(m["quantity"], m["reservation_id"], m["on_hand"]) for m in sales] == [(-2, rid, 3)]
    assert await ledger_sum(sessionmaker, tenant, variant_id) == 3
    released = await client.post(f"/v1/reservations/{rid}/release", headers=tenant.headers)
    assert released.status_code == 409


async def test_the_worker_releases_expired_reservations(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, app: Any, clock: Any
) -> None:
    await add_sku(sessionmaker, tenant, "RESERVA-TIENDA")
    await add_location(sessionmaker, tenant, "TIENDA", kind="store", pickup=True)
    await move(client, tenant, sku="RESERVA-TIENDA", location="TIENDA", quantity=2)
    # Reserve in store for 4 hours; a cart hold for 15 minutes.
    in_store = await reserve(
        client, tenant, sku="RESERVA-TIENDA", location="TIENDA", ttl_seconds=4 * 3600
    )
    cart = await reserve(client, tenant, sku="RESERVA-TIENDA", location="TIENDA", ttl_seconds=900)
    assert in_store.status_code == cart.status_code == 201

    clock(901)
    # Past its time but not yet swept: it cannot be consumed.
    late = await client.post(
        f"/v1/reservations/{cart.json()['id']}/consume", headers=tenant.headers
    )
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "reservation_expired"

    done = await app.state.worker.run_once()
    assert done["reservations_expired"] >= 1
    cart_now = await client.get(f"/v1/reservations/{cart.json()['id']}", headers=tenant.headers)
    assert cart_now.json()["status"] == "expired"
    store_now = await client.get(
        f"/v1/reservations/{in_store.json()['id']}", headers=tenant.headers
    )
    assert store_now.json()["status"] == "held"
    assert (await levels(client, tenant, "RESERVA-TIENDA"))["TIENDA"]["reserved"] == 1

    clock(4 * 3600)
    await app.state.worker.run_once()
    assert (await levels(client, tenant, "RESERVA-TIENDA"))["TIENDA"]["reserved"] == 0
    # A second run finds nothing more to do.
    assert (await app.state.worker.run_once()).get("reservations_expired", 0) == 0
    availability = await client.get(
        "/v1/availability",
        params={"sku": "RESERVA-TIENDA", "channel": "TIENDA"},
        headers=tenant.headers,
    )
    assert availability.json()["total"] == 2

"""Reservations: they never oversell, they are released, consumed into a sale, or expire by the
worker's timer; a resend with the same idempotency key is the first reservation again."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hilos.commerce import stock
from hilos.commerce.stock_models import Reservation
from hilos.core.clock import now, set_now
from hilos.core.errors import Conflict
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
    key: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "ttl_seconds": ttl_seconds,
    }
    if reference is not None:
        body["reference"] = reference
    if key is not None:
        body["idempotency_key"] = key
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


# --- idempotency keys -----------------------------------------------------------------------------


async def reservations_with_key(sessionmaker: Any, tenant: TenantHandle, key: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Reservation)
            .where(Reservation.tenant_id == tenant.id, Reservation.idempotency_key == key)
        )
        return int(count or 0)


async def test_a_resend_with_the_same_key_is_the_first_reservation(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, make_tenant: Any
) -> None:
    await add_sku(sessionmaker, tenant, "CAMISA-M")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="CAMISA-M", location="ALM", quantity=3)
    line: dict[str, Any] = {
        "sku": "CAMISA-M",
        "location": "ALM",
        "quantity": 2,
        "reference": "cart-7",
    }

    first = await reserve(client, tenant, **line, key="cart-7:line-1")
    assert first.status_code == 201, first.text
    assert first.json()["idempotency_key"] == "cart-7:line-1"
    # The shop's request timed out and it sends the same line again: the same reservation,
    # still held, and no more stock taken.
    again = await reserve(client, tenant, **line, key="cart-7:line-1")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.json()["status"] == "held"
    level = (await levels(client, tenant, "CAMISA-M"))["ALM"]
    assert (level["reserved"], level["available"]) == (2, 1)
    assert [e["reserved"] for e in await stock_events(sessionmaker, tenant)] == [0, 2]

    # The same key for another line is refused, naming the key; nothing changes.
    for changed in ({"quantity": 1}, {"reference": "cart-8"}, {"ttl_seconds": 60}):
        reused = await reserve(client, tenant, **{**line, **changed}, key="cart-7:line-1")
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        assert reused.json()["error"]["field"] == "idempotency_key"
        assert first.json()["id"] in reused.json()["error"]["message"]
    assert (await levels(client, tenant, "CAMISA-M"))["ALM"]["reserved"] == 2
    assert await reservations_with_key(sessionmaker, tenant, "cart-7:line-1") == 1

    # Keys are the tenant's own: another shop may use the same one.
    other = await make_tenant("Otra")
    await add_sku(sessionmaker, other, "CAMISA-M")
    await add_location(sessionmaker, other, "ALM")
    await move(client, other, sku="CAMISA-M", location="ALM", quantity=5)
    theirs = await reserve(client, other, **line, key="cart-7:line-1")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]

    # Once released, a resend still answers the first reservation, as it is now, and holds
    # nothing again; nor when the stock that is left would not be enough for it.
    rid = first.json()["id"]
    assert (
        await client.post(f"/v1/reservations/{rid}/release", headers=tenant.headers)
    ).status_code == 200
    assert (await reserve(client, tenant, sku="CAMISA-M", location="ALM", quantity=2)).is_success
    late = await reserve(client, tenant, **line, key="cart-7:line-1")
    assert late.status_code == 200, late.text
    assert (late.json()["id"], late.json()["status"]) == (rid, "released")
    level = (await levels(client, tenant, "CAMISA-M"))["ALM"]
    assert (level["on_hand"], level["reserved"]) == (3, 2)


async def test_requests_with_one_key_at_the_same_moment_make_one_reservation(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await add_sku(sessionmaker, tenant, "ZAPATILLA-41")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="ZAPATILLA-41", location="ALM", quantity=10)

    # Twelve copies of one request and six of another line under the same key, all at once,
    # beside ten other carts racing for the same stock.
    same = [
        reserve(client, tenant, sku="ZAPATILLA-41", location="ALM", quantity=2, key="order-1")
        for _ in range(12)
    ]
    different = [
        reserve(client, tenant, sku="ZAPATILLA-41", location="ALM", quantity=3, key="order-1")
        for _ in range(6)
    ]
    others = [
        reserve(client, tenant, sku="ZAPATILLA-41", location="ALM", key=f"cart-{n}")
        for n in range(10)
    ]
    responses = await asyncio.gather(*same, *different, *others)
    keyed, rest = responses[:18], responses[18:]

    created = [r for r in keyed if r.status_code == 201]
    assert len(created) == 1, [r.status_code for r in keyed]
    winner = created[0].json()
    # Copies of the winning request answer 200 with it; the other line's are refused.
    for response in keyed:
        if response.json().get("id") is not None:
            assert response.json() == winner
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert {r.status_code for r in keyed} <= {200, 201, 409}
    assert await reservations_with_key(sessionmaker, tenant, "order-1") == 1

    carts = [r for r in rest if r.status_code == 201]
    assert {r.status_code for r in rest} <= {201, 409}
    level = (await levels(client, tenant, "ZAPATILLA-41"))["ALM"]
    assert level["reserved"] == winner["quantity"] + len(carts) <= 10
    assert len(carts) == 10 - winner["quantity"]


async def test_an_out_of_stock_answer_keeps_nothing_under_the_key(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await add_sku(sessionmaker, tenant, "BOLSO")
    await add_location(sessionmaker, tenant, "TIENDA", kind="store", pickup=True)
    await move(client, tenant, sku="BOLSO", location="TIENDA", quantity=1)
    assert (await reserve(client, tenant, sku="BOLSO", location="TIENDA")).status_code == 201

    refused = await reserve(client, tenant, sku="BOLSO", location="TIENDA", key="pos-3")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "out_of_stock"
    assert await reservations_with_key(sessionmaker, tenant, "pos-3") == 0

    # Stock arrives: the same request now succeeds, once.
    await move(client, tenant, sku="BOLSO", location="TIENDA", quantity=1)
    later = await reserve(client, tenant, sku="BOLSO", location="TIENDA", key="pos-3")
    assert later.status_code == 201, later.text
    assert (await reserve(client, tenant, sku="BOLSO", location="TIENDA", key="pos-3")).json()[
        "id"
    ] == later.json()["id"]
    assert (await levels(client, tenant, "BOLSO"))["TIENDA"]["reserved"] == 2

    for bad in ("", "x" * 201):
        invalid = await reserve(client, tenant, sku="BOLSO", location="TIENDA", key=bad)
        assert invalid.status_code == 422
        assert invalid.json()["error"]["field"] == "idempotency_key"


async def test_a_caller_that_goes_on_after_out_of_stock_keeps_nothing(
    tenant: TenantHandle, sessionmaker: Any, client: httpx.AsyncClient
) -> None:
    """The service (``reserve`` with its keyword arguments, as orders call it) inside a longer
    transaction: a refused line leaves no reservation behind even when the caller commits."""
    await add_sku(sessionmaker, tenant, "CINTURON")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="CINTURON", location="ALM", quantity=1)
    async with sessionmaker() as session, session.begin():
        held = await stock.reserve(
            session,
            tenant.context,
            sku="CINTURON",
            location="ALM",
            quantity=1,
            ttl_seconds=600,
            reference="order-9",
            idempotency_key="order-9:1",
        )
        with pytest.raises(Conflict) as refused:
            await stock.reserve(
                session,
                tenant.context,
                sku="CINTURON",
                location="ALM",
                quantity=1,
                ttl_seconds=600,
                idempotency_key="order-9:2",
            )
        assert refused.value.code == "out_of_stock"
        again = await stock.place_reservation(
            session,
            tenant.context,
            sku="CINTURON",
            location="ALM",
            quantity=1,
            ttl_seconds=600,
            reference="order-9",
            idempotency_key="order-9:1",
        )
        assert (again.reservation.id, again.created) == (held.id, False)
    assert await reservations_with_key(sessionmaker, tenant, "order-9:1") == 1
    assert await reservations_with_key(sessionmaker, tenant, "order-9:2") == 0
    assert (await levels(client, tenant, "CINTURON"))["ALM"]["reserved"] == 1


async def test_a_reservation_in_a_transaction_that_rolls_back_leaves_nothing(
    tenant: TenantHandle, sessionmaker: Any, client: httpx.AsyncClient
) -> None:
    """An order that reserves its lines and then fails gives every unit back."""
    await add_sku(sessionmaker, tenant, "GAFAS")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="GAFAS", location="ALM", quantity=2)
    async with sessionmaker() as session:
        await stock.reserve(
            session,
            tenant.context,
            sku="GAFAS",
            location="ALM",
            quantity=2,
            ttl_seconds=600,
            idempotency_key="order-10:1",
        )
        # The order fails after reserving.
        await session.rollback()
    level = (await levels(client, tenant, "GAFAS"))["ALM"]
    assert (level["reserved"], level["available"]) == (0, 2)
    assert await reservations_with_key(sessionmaker, tenant, "order-10:1") == 0

"""Stock movements, the ledger, CSV import, safety stock and available to promise.

Products and locations are made through the shared models, not the catalog API, so these tests
stand on the stock module alone.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.commerce.models import Location, Product, Variant
from hilos.commerce.stock import haversine_km
from hilos.commerce.stock_models import StockLevel, StockMovement
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from tests.conftest import TenantHandle

# Puerta del Sol, Madrid; stores at increasing distances from it.
SOL = (40.4169, -3.7035)


async def add_sku(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, sku: str
) -> str:
    async with sessionmaker() as session, session.begin():
        product = Product(id=new_id(), tenant_id=tenant.id, name=f"Producto {sku}", images=[])
        variant = Variant(
            id=new_id(), tenant_id=tenant.id, product_id=product.id, sku=sku, name=sku
        )
        session.add(product)
        await session.flush()
        session.add(variant)
        return variant.id


async def add_location(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantHandle,
    code: str,
    *,
    kind: str = "warehouse",
    lat: float | None = None,
    lon: float | None = None,
    pickup: bool = False,
) -> str:
    async with sessionmaker() as session, session.begin():
        location = Location(
            id=new_id(),
            tenant_id=tenant.id,
            code=code,
            name=code,
            kind=kind,
            lat=lat,
            lon=lon,
            pickup=pickup,
            ship_from_store=False,
            opening_hours={},
        )
        session.add(location)
        return location.id


async def move(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    sku: str,
    location: str,
    quantity: int,
    reason: str = "receipt",
    key: str | None = None,
) -> httpx.Response:
    body = {
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "reason": reason,
        "idempotency_key": key or new_id(),
    }
    return await client.post("/v1/stock/movements", json=body, headers=tenant.headers)


async def levels(client: httpx.AsyncClient, tenant: TenantHandle, sku: str) -> dict[str, Any]:
    response = await client.get("/v1/stock/levels", params={"sku": sku}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return {level["location"]: level for level in response.json()["levels"]}


async def ledger_sum(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, variant_id: str
) -> int:
    async with sessionmaker() as session:
        total = await session.scalar(
            select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                StockMovement.tenant_id == tenant.id, StockMovement.variant_id == variant_id
            )
        )
        return int(total or 0)


async def stock_events(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(OutboxEvent.payload)
                .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == "stock.changed")
                .order_by(OutboxEvent.id)
            )
        ).scalars()
        return list(rows)


async def test_a_resent_movement_changes_nothing_and_a_reused_key_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await add_sku(sessionmaker, tenant, "ZAP-42")
    await add_location(sessionmaker, tenant, "ALM-1")

    first = await move(client, tenant, sku="ZAP-42", location="ALM-1", quantity=12, key="erp-1")
    assert first.status_code == 201, first.text
    assert first.json()["on_hand"] == 12

    again = await move(client, tenant, sku="ZAP-42", location="ALM-1", quantity=12, key="erp-1")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["on_hand"] == 12

    other = await move(client, tenant, sku="ZAP-42", location="ALM-1", quantity=5, key="erp-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"

    assert (await levels(client, tenant, "ZAP-42"))["ALM-1"]["on_hand"] == 12
    events = await stock_events(sessionmaker, tenant)
    assert [e["on_hand"] for e in events] == [12]
    assert events[0] == {
        "sku": "ZAP-42",
        "location": "ALM-1",
        "on_hand": 12,
        "reserved": 0,
        "safety_stock": 0,
        "available": 12,
    }


async def test_taking_stock_below_what_is_reserved_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    variant_id = await add_sku(sessionmaker, tenant, "CAM-M")
    await add_location(sessionmaker, tenant, "TIENDA-1", kind="store")
    assert (
        await move(client, tenant, sku="CAM-M", location="TIENDA-1", quantity=5)
    ).status_code == 201
    reservation = await client.post(
        "/v1/reservations",
        json={"sku": "CAM-M", "location": "TIENDA-1", "quantity": 3, "ttl_seconds": 600},
        headers=tenant.headers,
    )
    assert reservation.status_code == 201, reservation.text

    refused = await move(
        client, tenant, sku="CAM-M", location="TIENDA-1", quantity=-3, reason="damage", key="d-1"
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_stock"
    # The key was not spent: a corrected resend with it works.
    fixed = await move(
        client, tenant, sku="CAM-M", location="TIENDA-1", quantity=-2, reason="damage", key="d-1"
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["on_hand"] == 3

    # A first movement that would start below zero creates nothing either.
    await add_location(sessionmaker, tenant, "ALM-2")
    empty = await move(client, tenant, sku="CAM-M", location="ALM-2", quantity=-1, reason="count")
    assert empty.status_code == 409

    level = (await levels(client, tenant, "CAM-M"))["TIENDA-1"]
    assert (level["on_hand"], level["reserved"]) == (3, 3)
    assert "ALM-2" not in await levels(client, tenant, "CAM-M")
    assert await ledger_sum(sessionmaker, tenant, variant_id) == 3


async def test_bad_movements_name_the_problem(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, make_tenant: Any
) -> None:
    await add_sku(sessionmaker, tenant, "GOR-1")
    await add_location(sessionmaker, tenant, "ALM-1")
    cases = [
        ({"sku": "NOPE"}, 404, "unknown_sku"),
        ({"location": "NOPE"}, 404, "unknown_location"),
        ({"reason": "theft"}, 422, "invalid"),
        ({"quantity": 0}, 422, "invalid"),
        ({"quantity": -1, "reason": "receipt"}, 422, "invalid"),
        ({"quantity": 1, "reason": "sale"}, 422, "invalid"),
    ]
    for change, status, code in cases:
        body = {
            "sku": "GOR-1",
            "location": "ALM-1",
            "quantity": 4,
            "reason": "receipt",
            "idempotency_key": new_id(),
            **change,
        }
        response = await client.post("/v1/stock/movements", json=body, headers=tenant.headers)
        assert response.status_code == status, (change, response.text)
        assert response.json()["error"]["code"] == code, change
    assert await levels(client, tenant, "GOR-1") == {}

    # Another tenant's SKU and location do not exist for this one.
    other = await make_tenant("Otra")
    response = await move(client, other, sku="GOR-1", location="ALM-1", quantity=1)
    assert response.status_code == 404


async def test_the_ledger_sums_to_on_hand(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    variant_id = await add_sku(sessionmaker, tenant, "BOL-9")
    await add_location(sessionmaker, tenant, "ALM-1")
    for quantity, reason in [
        (30, "receipt"),
        (-4, "sale"),
        (2, "return"),
        (-1, "damage"),
        (-7, "count"),
    ]:
        response = await move(
            client, tenant, sku="BOL-9", location="ALM-1", quantity=quantity, reason=reason
        )
        assert response.status_code == 201, response.text
    on_hand = (await levels(client, tenant, "BOL-9"))["ALM-1"]["on_hand"]
    assert on_hand == 20
    assert await ledger_sum(sessionmaker, tenant, variant_id) == on_hand

    listed = await client.get(
        "/v1/stock/movements", params={"sku": "BOL-9", "location": "ALM-1"}, headers=tenant.headers
    )
    assert [m["on_hand"] for m in listed.json()["items"]] == [30, 26, 28, 27, 20]


async def test_a_csv_import_applies_every_row_or_none(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    variant_id = await add_sku(sessionmaker, tenant, "A-1")
    await add_sku(sessionmaker, tenant, "B-2")
    await add_location(sessionmaker, tenant, "ALM-1")
    headers = {**tenant.headers, "Content-Type": "text/csv"}
    bad = (
        "sku,location,quantity,reason,idempotency_key\n"
        "A-1,ALM-1,10,receipt,imp-1\n"
        "B-2,ALM-1,diez,receipt,imp-2\n"
    )
    response = await client.post("/v1/stock/import", content=bad, headers=headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["row"], error["column"]) == (2, "quantity")
    assert "row 2" in error["message"]

    unknown = (
        "sku,location,quantity,reason,idempotency_key\n"
        "A-1,ALM-1,10,receipt,imp-1\n"
        "C-3,ALM-1,1,receipt,imp-3\n"
    )
    response = await client.post("/v1/stock/import", content=unknown, headers=headers)
    assert response.status_code == 422
    assert (response.json()["error"]["row"], response.json()["error"]["column"]) == (2, "sku")

    assert await levels(client, tenant, "A-1") == {}
    assert await ledger_sum(sessionmaker, tenant, variant_id) == 0

    good = (
        "sku,location,quantity,reason,idempotency_key\n"
        "A-1,ALM-1,10,receipt,imp-1\n"
        "B-2,ALM-1,4,receipt,imp-2\n"
        "A-1,ALM-1,-3,sale,imp-3\n"
    )
    response = await client.post("/v1/stock/import", content=good, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 3}
    # The same file again is a resend: nothing changes.
    response = await client.post("/v1/stock/import", content=good, headers=headers)
    assert response.json() == {"recorded": 0}
    assert (await levels(client, tenant, "A-1"))["ALM-1"]["on_hand"] == 7
    as_json = await client.post("/v1/stock/import", json={"rows": []}, headers=tenant.headers)
    assert as_json.status_code == 415
    assert (await levels(client, tenant, "B-2"))["ALM-1"]["on_hand"] == 4


async def test_availability_takes_off_reserved_and_safety_stock_and_sorts_by_distance(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await add_sku(sessionmaker, tenant, "VES-S")
    await add_location(sessionmaker, tenant, "ALM", kind="warehouse", lat=40.30, lon=-3.45)
    # ~1 km, ~5 km, ~60 km from Sol.
    await add_location(
        sessionmaker, tenant, "T-CERCA", kind="store", lat=40.4259, lon=-3.7035, pickup=True
    )
    await add_location(
        sessionmaker, tenant, "T-MEDIO", kind="store", lat=40.4619, lon=-3.7035, pickup=True
    )
    await add_location(
        sessionmaker, tenant, "T-LEJOS", kind="store", lat=40.95, lon=-4.12, pickup=False
    )
    for code, quantity in [("ALM", 100), ("T-CERCA", 2), ("T-MEDIO", 5), ("T-LEJOS", 3)]:
        assert (
            await move(client, tenant, sku="VES-S", location=code, quantity=quantity)
        ).status_code == 201
    # T-CERCA: 2 on hand, safety 2 → nothing to promise.
    safety = await client.put(
        "/v1/stock/safety",
        json={"sku": "VES-S", "location": "T-CERCA", "safety_stock": 2},
        headers=tenant.headers,
    )
    assert safety.status_code == 200, safety.text
    assert safety.json()["available"] == 0
    # T-MEDIO: 5 on hand, 1 reserved, safety 1 → 3.
    await client.put(
        "/v1/stock/safety",
        json={"sku": "VES-S", "location": "T-MEDIO", "safety_stock": 1},
        headers=tenant.headers,
    )
    reserved = await client.post(
        "/v1/reservations",
        json={"sku": "VES-S", "location": "T-MEDIO", "quantity": 1, "ttl_seconds": 3600},
        headers=tenant.headers,
    )
    assert reserved.status_code == 201
    # Safety stock above on hand never makes availability negative.
    await client.put(
        "/v1/stock/safety",
        json={"sku": "VES-S", "location": "ALM", "safety_stock": 500},
        headers=tenant.headers,
    )

    response = await client.get(
        "/v1/availability",
        params={"sku": "VES-S", "channel": "web", "lat": SOL[0], "lon": SOL[1]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [loc["location"] for loc in body["locations"]] == [
        "T-CERCA",
        "T-MEDIO",
        "ALM",
        "T-LEJOS",
    ]
    available = {loc["location"]: loc["available"] for loc in body["locations"]}
    assert available == {"T-CERCA": 0, "T-MEDIO": 3, "ALM": 0, "T-LEJOS": 3}
    assert body["total"] == 6
    assert body["nearest_pickup"] == ["T-MEDIO"]
    distances = [loc["distance_km"] for loc in body["locations"]]
    assert distances == sorted(distances)
    assert abs(distances[0] - 1.0) < 0.05

    # A store's own channel counts only that store.
    store = await client.get(
        "/v1/availability", params={"sku": "VES-S", "channel": "T-LEJOS"}, headers=tenant.headers
    )
    assert store.json()["total"] == 3
    assert [loc["location"] for loc in store.json()["locations"]] == ["T-LEJOS"]
    # The price lists' name of that till means the same.
    till = await client.get(
        "/v1/availability",
        params={"sku": "VES-S", "channel": "store:T-LEJOS"},
        headers=tenant.headers,
    )
    assert till.json()["locations"] == store.json()["locations"]

    unknown = await client.get(
        "/v1/availability", params={"sku": "VES-S", "channel": "tiktok"}, headers=tenant.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_channel"
    missing = await client.get(
        "/v1/availability", params={"sku": "NOPE", "channel": "web"}, headers=tenant.headers
    )
    assert missing.status_code == 404


async def test_availability_is_one_query(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, engine: Any
) -> None:
    from sqlalchemy import event

    await add_sku(sessionmaker, tenant, "Q-1")
    await add_location(sessionmaker, tenant, "ALM")
    await move(client, tenant, sku="Q-1", location="ALM", quantity=3)
    await client.get(
        "/v1/availability", params={"sku": "Q-1", "channel": "web"}, headers=tenant.headers
    )
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "stock_levels" in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await client.get(
            "/v1/availability", params={"sku": "Q-1", "channel": "web"}, headers=tenant.headers
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert response.json()["total"] == 3
    assert len(statements) == 1


def test_haversine_madrid_to_barcelona() -> None:
    assert abs(haversine_km(40.4169, -3.7035, 41.3874, 2.1686) - 505) < 5


async def test_stock_levels_keep_their_checks(sessionmaker: Any, tenant: TenantHandle) -> None:
    """The table refuses a negative level even if a bug skipped the service's conditions."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        async with sessionmaker() as session, session.begin():
            session.add(
                StockLevel(
                    tenant_id=tenant.id,
                    variant_id=new_id(),
                    location_id=new_id(),
                    on_hand=1,
                    reserved=2,
                    safety_stock=0,
                )
            )


async def test_pickup_today_only_where_the_store_is_still_to_open_and_shippable_counts_shippers(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    from datetime import UTC, datetime

    from hilos.core.clock import set_now

    stores = {
        # Closes at eight on Mondays: too late on a Monday at half past eight.
        "CIERRA-PRONTO": {"mon": [["10:00", "20:00"]]},
        "CIERRA-TARDE": {"mon": [["10:00", "14:00"], ["17:00", "21:30"]]},
        "SIN-HORARIO": {},
    }
    for code, hours in stores.items():
        body = {
            "code": code,
            "name": code,
            "kind": "store",
            "pickup": True,
            "ship_from_store": code == "SIN-HORARIO",
            "opening_hours": hours,
        }
        response = await client.post("/v1/locations", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
    body = {"code": "ALM", "name": "Almacén", "kind": "warehouse"}
    assert (
        await client.post("/v1/locations", json=body, headers=tenant.headers)
    ).status_code == 201
    product = {"sku": "PARAGUAS", "name": "Paraguas"}
    assert (
        await client.post("/v1/products", json=product, headers=tenant.headers)
    ).status_code == 201
    for code in (*stores, "ALM"):
        assert (
            await move(client, tenant, sku="PARAGUAS", location=code, quantity=2)
        ).status_code == 201

    # Monday 23 November 2026, 20:30 in Madrid (UTC+1).
    set_now(lambda: datetime(2026, 11, 23, 19, 30, tzinfo=UTC))
    try:
        response = await client.get(
            "/v1/availability", params={"sku": "PARAGUAS", "channel": "web"}, headers=tenant.headers
        )
    finally:
        set_now(None)
    answer = response.json()
    assert sorted(answer["nearest_pickup"]) == ["CIERRA-TARDE", "SIN-HORARIO"]
    assert (answer["total"], answer["shippable"]) == (8, 4)

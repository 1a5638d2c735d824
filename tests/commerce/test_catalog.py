"""Products with their variants and locations: creating, reading, refusing bad input."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantHandle


async def post_product(
    client: httpx.AsyncClient, tenant: TenantHandle, **body: Any
) -> httpx.Response:
    return await client.post("/v1/products", json=body, headers=tenant.headers)


async def post_location(
    client: httpx.AsyncClient, tenant: TenantHandle, **body: Any
) -> httpx.Response:
    fields = {"name": "Tienda", "kind": "store", "lat": 40.4168, "lon": -3.7038, **body}
    return await client.post("/v1/locations", json=fields, headers=tenant.headers)


async def test_a_product_with_one_sku_is_created_and_found_by_sku(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await post_product(
        client,
        tenant,
        sku="CAM-AZ-M",
        name="Camisa azul M",
        gtin="4006381333931",
        attributes={"size": "M", "colour": "azul"},
        images=["https://cdn.example.com/camisa.jpg"],
    )
    assert response.status_code == 201, response.text
    product = response.json()
    assert [v["sku"] for v in product["variants"]] == ["CAM-AZ-M"]
    assert product["variants"][0]["gtin"] == "4006381333931"
    assert product["variants"][0]["name"] == "Camisa azul M"
    assert product["images"] == ["https://cdn.example.com/camisa.jpg"]

    found = await client.get("/v1/products", params={"sku": "CAM-AZ-M"}, headers=tenant.headers)
    assert [p["id"] for p in found.json()] == [product["id"]]
    one = await client.get(f"/v1/products/{product['id']}", headers=tenant.headers)
    assert one.json()["variants"][0]["attributes"] == {"size": "M", "colour": "azul"}


async def test_a_product_with_several_variants(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await post_product(
        client,
        tenant,
        name="Zapatilla",
        variants=[
            {"sku": "ZAP-41", "attributes": {"size": "41"}},
            {"sku": "ZAP-42", "name": "Zapatilla 42", "attributes": {"size": "42"}},
        ],
    )
    assert response.status_code == 201, response.text
    variants = response.json()["variants"]
    assert [(v["sku"], v["name"]) for v in variants] == [
        ("ZAP-41", "Zapatilla"),
        ("ZAP-42", "Zapatilla 42"),
    ]
    by_second = await client.get("/v1/products", params={"sku": "ZAP-42"}, headers=tenant.headers)
    assert [p["id"] for p in by_second.json()] == [response.json()["id"]]


async def test_a_sku_already_used_is_a_conflict_and_nothing_is_written(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    assert (await post_product(client, tenant, sku="A-1", name="Uno")).status_code == 201
    again = await post_product(
        client, tenant, name="Dos", variants=[{"sku": "B-1"}, {"sku": "A-1"}]
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "sku_exists"
    # B-1 was not created beside the refused A-1.
    none = await client.get("/v1/products", params={"sku": "B-1"}, headers=tenant.headers)
    assert none.json() == []
    twice = await post_product(client, tenant, name="Tres", variants=[{"sku": "C"}, {"sku": "C"}])
    assert twice.status_code == 422


async def test_the_same_sku_in_two_tenants_is_fine(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    first, second = await make_tenant(), await make_tenant()
    assert (await post_product(client, first, sku="X", name="X")).status_code == 201
    assert (await post_product(client, second, sku="X", name="X")).status_code == 201


async def test_bad_products_are_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "Sin SKU"}, "body"),
        ({"sku": "G", "name": "GTIN", "gtin": "4006381333932"}, "gtin"),  # wrong check digit
        ({"sku": "G", "name": "GTIN", "gtin": "40063813"}, "gtin"),  # 8 digits, wrong check
        ({"sku": "G", "name": "GTIN", "gtin": "abc"}, "gtin"),
        ({"sku": "G", "name": "Img", "images": ["ftp://example.com/x.jpg"]}, "images.0"),
        ({"sku": "con espacio", "name": "SKU"}, "sku"),
        ({"sku": "G", "name": ""}, "name"),
        ({"sku": "G", "name": "Both", "variants": [{"sku": "H"}]}, "body"),
    ]
    for body, field in cases:
        response = await post_product(client, tenant, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    listed = await client.get("/v1/products", headers=tenant.headers)
    assert listed.json() == []


async def test_valid_gtins_of_every_length(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    for number, gtin in enumerate(["96385074", "036000291452", "4006381333931", "10012345678902"]):
        response = await post_product(client, tenant, sku=f"G{number}", name="G", gtin=gtin)
        assert response.status_code == 201, (gtin, response.text)


async def test_another_tenants_product_is_not_found(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    product = (await post_product(client, owner, sku="P", name="P")).json()
    response = await client.get(f"/v1/products/{product['id']}", headers=other.headers)
    assert response.status_code == 404
    listed = await client.get("/v1/products", params={"sku": "P"}, headers=other.headers)
    assert listed.json() == []


async def test_products_page_by_id(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    ids = [
        (await post_product(client, tenant, sku=f"S{i}", name="S")).json()["id"] for i in range(3)
    ]
    first = await client.get("/v1/products", params={"limit": 2}, headers=tenant.headers)
    assert [p["id"] for p in first.json()] == ids[:2]
    rest = await client.get("/v1/products", params={"after": ids[1]}, headers=tenant.headers)
    assert [p["id"] for p in rest.json()] == ids[2:]


async def test_a_store_and_a_warehouse_are_created_and_listed(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    store = await post_location(
        client,
        tenant,
        code="MAD01",
        name="Madrid Centro",
        pickup=True,
        ship_from_store=True,
        address="Gran Vía 1, Madrid",
        opening_hours={"mon": [["10:00", "14:00"], ["17:00", "21:00"]]},
    )
    assert store.status_code == 201, store.text
    assert store.json()["pickup"] is True
    warehouse = await post_location(
        client, tenant, code="WH1", name="Almacén", kind="warehouse", lat=40.2, lon=-3.6
    )
    assert warehouse.status_code == 201, warehouse.text
    assert warehouse.json()["pickup"] is False

    stores = await client.get("/v1/locations", params={"kind": "store"}, headers=tenant.headers)
    assert [loc["code"] for loc in stores.json()] == ["MAD01"]
    by_code = await client.get("/v1/locations", params={"code": "WH1"}, headers=tenant.headers)
    assert [loc["id"] for loc in by_code.json()] == [warehouse.json()["id"]]
    one = await client.get(f"/v1/locations/{store.json()['id']}", headers=tenant.headers)
    assert one.json()["opening_hours"] == {"mon": [["10:00", "14:00"], ["17:00", "21:00"]]}


async def test_a_location_code_already_used_is_a_conflict(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    assert (await post_location(client, tenant, code="BCN01")).status_code == 201
    again = await post_location(client, tenant, code="BCN01", name="Otra")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "location_exists"


async def test_bad_locations_are_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"code": "L", "lat": 91}, "lat"),
        ({"code": "L", "lon": -180.5}, "lon"),
        ({"code": "L", "kind": "shop"}, "kind"),
        ({"code": "L", "kind": "warehouse", "pickup": True}, "body"),
        ({"code": "L", "kind": "warehouse", "ship_from_store": True}, "body"),
        ({"code": "L", "lat": None}, "body"),  # lon without lat
        ({"code": "L", "opening_hours": {"lunes": [["10:00", "20:00"]]}}, "opening_hours"),
        ({"code": "L", "opening_hours": {"mon": [["21:00", "10:00"]]}}, "opening_hours"),
        ({"code": "L", "opening_hours": {"mon": [["25:00", "26:00"]]}}, "opening_hours"),
        ({"code": "con espacio"}, "code"),
    ]
    for body, field in cases:
        response = await post_location(client, tenant, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    assert (await client.get("/v1/locations", headers=tenant.headers)).json() == []


async def test_another_tenants_location_is_not_found(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    location = (await post_location(client, owner, code="VAL01")).json()
    response = await client.get(f"/v1/locations/{location['id']}", headers=other.headers)
    assert response.status_code == 404
    listed = await client.get("/v1/locations", params={"code": "VAL01"}, headers=other.headers)
    assert listed.json() == []


async def test_a_product_is_listed_on_the_channels_that_price_it(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for sku in ("SOLO-WEB", "EN-TODAS"):
        assert (await post_product(client, tenant, sku=sku, name=sku)).status_code == 201
    prices = [
        ("SOLO-WEB", "web", {}),
        ("EN-TODAS", "web", {}),
        ("EN-TODAS", "marketplace", {}),
        ("EN-TODAS", "store:MAD01", {}),
        # A price that ended yesterday lists nothing today.
        ("SOLO-WEB", "app", {"valid_until": "2020-01-01T00:00:00Z"}),
    ]
    for sku, channel, window in prices:
        response = await client.put(
            "/v1/prices",
            json={"sku": sku, "channel": channel, "amount": 1000, "currency": "EUR", **window},
            headers=tenant.headers,
        )
        assert response.status_code in (200, 201), response.text

    listed = await client.get("/v1/products", headers=tenant.headers)
    channels = {p["variants"][0]["sku"]: p["variants"][0]["channels"] for p in listed.json()}
    assert channels == {"SOLO-WEB": ["web"], "EN-TODAS": ["marketplace", "store:MAD01", "web"]}
    on_marketplace = await client.get(
        "/v1/products", params={"channel": "marketplace"}, headers=tenant.headers
    )
    assert [p["variants"][0]["sku"] for p in on_marketplace.json()] == ["EN-TODAS"]
    on_app = await client.get("/v1/products", params={"channel": "app"}, headers=tenant.headers)
    assert on_app.json() == []

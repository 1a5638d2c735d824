"""Recommendations: bought together across every channel, products mentioned in conversations
(by SKU, name or alias, with a typo), products viewed, never what the customer already has,
only what is on sale, in the API and on the console's customer page."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hilos.core.models import OutboxEvent
from hilos.engagement.recommend import (
    CatalogIndex,
    catalog_entry,
    consume,
    count_baskets,
    mentioned_products,
    popular_products,
    rank,
)
from tests.commerce.orders_helpers import advance, location, place, receive
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.test_query_counts import statements
from tests.web.test_console import browser, make_agent, sign_in

SIZES = ("S", "M", "L")


async def shop_product(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    code: str,
    name: str,
    *,
    channels: tuple[str, ...] = ("web", "store:SOL"),
    stock: int | None = 20,
) -> dict[str, Any]:
    """A product with one SKU per size, priced on ``channels``, stocked at the warehouse and
    the store (``None``: no stock kept)."""
    response = await client.post(
        "/v1/products",
        json={"name": name, "variants": [{"sku": f"{code}-{size}"} for size in SIZES]},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    for size in SIZES:
        for channel in channels:
            priced = await client.put(
                "/v1/prices",
                json={
                    "sku": f"{code}-{size}",
                    "channel": channel,
                    "amount": 2995,
                    "currency": "EUR",
                },
                headers=tenant.headers,
            )
            assert priced.status_code in (200, 201), priced.text
        if stock:
            await receive(client, tenant, f"{code}-{size}", "ALM", stock)
            await receive(client, tenant, f"{code}-{size}", "SOL", stock)
    product: dict[str, Any] = response.json()
    return product


async def shop(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, dict[str, Any]]:
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store", pickup=True)
    return {
        "chaqueta": await shop_product(client, tenant, "CHQ-VAQ-01", "Chaqueta vaquera"),
        "pantalon": await shop_product(client, tenant, "PAN-CHI-07", "Pantalón chino beige"),
        "calcetines": await shop_product(client, tenant, "CAL-ALG-11", "Calcetines de algodón"),
        "gorra": await shop_product(client, tenant, "GOR-LIN-12", "Gorra de lino"),
        "zapatillas": await shop_product(client, tenant, "ZAP-RUN-02", "Zapatillas Runner blancas"),
        "camisa": await shop_product(client, tenant, "CAM-OXF-04", "Camisa Oxford azul"),
    }


async def order(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    email: str,
    *skus: str,
    channel: str = "web",
) -> str:
    fulfilment = "in_store" if channel == "SOL" else "ship"
    response = await place(
        client,
        tenant,
        *({"sku": sku, "quantity": 1, "fulfilment": fulfilment} for sku in skus),
        channel=channel,
        key=f"{email}-{'-'.join(skus)}",
        email=email,
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


async def recommendations(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/customers/{customer_id}/recommendations", params=params, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


async def customer_of(client: httpx.AsyncClient, tenant: TenantHandle, email: str) -> str:
    customer_id: str = (await identify(client, tenant, ("email", email)))["customer_id"]
    return customer_id


async def test_bought_together_counts_store_and_web_orders_alike(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, sessionmaker: Any
) -> None:
    products = await shop(client, tenant)
    # The jacket goes with the trousers in two store sales (different sizes: one product),
    # and with the socks in one web order; a web order with the cap was cancelled.
    await order(client, tenant, "a@example.es", "CHQ-VAQ-01-M", "PAN-CHI-07-M", channel="SOL")
    await order(client, tenant, "b@example.es", "CHQ-VAQ-01-L", "PAN-CHI-07-S", channel="SOL")
    await order(client, tenant, "c@example.es", "CHQ-VAQ-01-S", "CAL-ALG-11-M")
    cancelled = await order(client, tenant, "d@example.es", "CHQ-VAQ-01-M", "GOR-LIN-12-M")
    await advance(client, tenant, cancelled, "cancelled")
    # The buyer to advise bought the jacket on the web.
    await order(client, tenant, "e@example.es", "CHQ-VAQ-01-S")
    await app.state.worker.run_once()

    customer = await customer_of(client, tenant, "e@example.es")
    items = await recommendations(client, tenant, customer)
    names = [item["name"] for item in items]
    assert names[:2] == ["Pantalón chino beige", "Calcetines de algodón"], items
    trousers = by_name(items)["Pantalón chino beige"]
    assert trousers["reasons"] == [f"bought_together:{products['chaqueta']['id']}"]
    assert trousers["bought_with"] == ["Chaqueta vaquera"]
    assert trousers["sku"] == "PAN-CHI-07-S"
    assert trousers["product_id"] == products["pantalon"]["id"]
    # Never what the customer has; the cancelled order taught nothing about the cap.
    assert "Chaqueta vaquera" not in names
    assert "Gorra de lino" not in names

    # An order event delivered again counts nothing twice.
    async with sessionmaker() as session, session.begin():
        again = (
            await session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == tenant.id,
                    OutboxEvent.topic.in_(("order.placed", "order.cancelled")),
                )
            )
        ).all()
        assert len(again) == 6
        await consume(session, again)
    assert await recommendations(client, tenant, customer) == items

    # Recounting from the orders gives the same answer as the events did.
    rebuilt = await client.post("/v1/recommendations/rebuild", headers=tenant.headers)
    assert rebuilt.status_code == 200, rebuilt.text
    assert rebuilt.json() == {"orders": 5, "baskets": 4}
    assert await recommendations(client, tenant, customer) == items


async def test_mentions_by_sku_name_and_alias_with_a_typo_in_both_languages(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    products = await shop(client, tenant)
    aliases = await client.put(
        f"/v1/products/{products['zapatillas']['id']}/aliases",
        json={"aliases": ["zapas blancas", "white trainers", "  Zapas   Blancas "]},
        headers=tenant.headers,
    )
    assert aliases.status_code == 200, aliases.text
    assert aliases.json()["aliases"] == ["zapas blancas", "white trainers"]
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")

    async def says(channel: str, kind: str, value: str, external_id: str, text: str) -> str:
        response = await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id=external_id,
            kind=kind,
            value=value,
            text=text,
        )
        assert response.status_code in (200, 201), response.text
        customer_id: str = response.json()["customer_id"]
        return customer_id

    # Spanish, a typo in the name, no accents.
    lucia = await says(
        whatsapp, "whatsapp", "34600111222", "w1", "Hola! ¿Teneis la CHAKETA vaquera en la M?"
    )
    # A SKU's stem, and an alias with a typo.
    await says(whatsapp, "whatsapp", "34600111222", "w2", "y la cam-oxf-04? y unas zapas blancs")
    # English, an alias with a typo; and a message that names nothing.
    ann = await says(
        email, "email", "ann@example.co.uk", "e1", "Hi, do you have the white trainer in 42?"
    )
    await says(email, "email", "ann@example.co.uk", "e2", "Thanks, have a nice day")

    mentioned = {
        name: item
        for name, item in by_name(await recommendations(client, tenant, lucia)).items()
        if "mentioned" in item["reasons"]
    }
    assert set(mentioned) == {"Chaqueta vaquera", "Camisa Oxford azul", "Zapatillas Runner blancas"}
    english = await recommendations(client, tenant, ann)
    assert [i["name"] for i in english if "mentioned" in i["reasons"]] == [
        "Zapatillas Runner blancas"
    ]
    assert english[0]["name"] == "Zapatillas Runner blancas"


def test_names_in_text_are_matched_without_false_friends() -> None:
    index = CatalogIndex.of(
        [
            catalog_entry(product_id="p1", name="Chaqueta vaquera", skus=["CHQ-VAQ-01-M"]),
            catalog_entry(product_id="p2", name="Bolso", skus=["BOL-1"], aliases=["bolsito"]),
            catalog_entry(product_id="p3", name="Vestido midi de lino", skus=["VES-LIN-03"]),
        ]
    )
    assert mentioned_products("Me encantó el VESTIDO MIDI DE LINO y la chaqueta", index) == ["p3"]
    assert mentioned_products("¿Dónde está mi pedido 1234?", index) == []
    assert mentioned_products("quiero el bolso negro", index) == ["p2"]
    assert mentioned_products("ches-vaq", index) == []
    assert mentioned_products("el chq-vaq-01-m por favor", index) == ["p1"]


async def test_viewed_products_from_track_and_page_events(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await shop(client, tenant)
    identified = await client.post(
        "/v1/identify",
        json={"userId": "viewer-1", "traits": {"email": "viewer@example.es"}, "messageId": "id"},
        headers=tenant.headers,
    )
    assert identified.status_code == 200, identified.text
    customer = identified.json()["customer_id"]
    events = [
        (
            "/v1/track",
            {"event": "Product Viewed", "properties": {"product_id": "CAM-OXF-04"}},
        ),
        (
            "/v1/page",
            {
                "name": "Gorra",
                "properties": {"url": "https://tienda.example.es/p/gorra-de-lino?utm=x"},
            },
        ),
        ("/v1/track", {"event": "Product Added", "properties": {"sku": "CAL-ALG-11-L"}}),
        ("/v1/track", {"event": "Signed In", "properties": {"product_id": "nothing"}}),
    ]
    for n, (path, body) in enumerate(events):
        response = await client.post(
            path,
            json={
                **body,
                "userId": "viewer-1",
                "messageId": f"view-{n}",
                "timestamp": f"2026-11-20T10:0{n}:00Z",
            },
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["customer_id"] == customer
    items = await recommendations(client, tenant, customer, limit=3)
    # The latest view first.
    assert [(i["name"], i["reasons"]) for i in items] == [
        ("Calcetines de algodón", ["viewed"]),
        ("Gorra de lino", ["viewed"]),
        ("Camisa Oxford azul", ["viewed"]),
    ]


async def test_only_what_is_on_sale_and_never_what_was_bought(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    await shop(client, tenant)
    # Sold nowhere (no price), and sold but out of stock everywhere.
    await shop_product(client, tenant, "BUF-LAN-20", "Bufanda de lana", channels=())
    await shop_product(client, tenant, "GUA-PIE-21", "Guantes de piel", stock=None)
    no_stock = await client.post(
        "/v1/products", json={"name": "Cinturón", "sku": "CIN-01"}, headers=tenant.headers
    )
    assert no_stock.status_code == 201
    await client.put(
        "/v1/prices",
        json={"sku": "CIN-01", "channel": "web", "amount": 1500, "currency": "EUR"},
        headers=tenant.headers,
    )
    await receive(client, tenant, "CIN-01", "ALM", 1)
    # The one unit goes to someone else.
    await order(client, tenant, "other@example.es", "CIN-01")
    await app.state.worker.run_once()
    whatsapp = await add_channel(client, tenant, "whatsapp")
    response = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="m1",
        kind="whatsapp",
        value="34600999888",
        text="Busco una bufanda de lana, unos guantes de piel, un cinturón y la chaqueta vaquera",
    )
    customer = response.json()["customer_id"]
    await identify(client, tenant, ("whatsapp", "34600999888"), ("email", "buyer@example.es"))
    await order(client, tenant, "buyer@example.es", "CHQ-VAQ-01-L")
    await app.state.worker.run_once()

    items = by_name(await recommendations(client, tenant, customer, limit=20))
    # Gloves keep no stock: sold on price alone. The scarf has no price, the belt no unit
    # left, and the jacket is the customer's already.
    assert items["Guantes de piel"]["reasons"] == ["mentioned"]
    assert items["Guantes de piel"]["sku"] == "GUA-PIE-21-S"
    assert "Bufanda de lana" not in items
    assert "Cinturón" not in items
    assert "Chaqueta vaquera" not in items


async def test_bad_input_and_another_tenants_ids(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    products = await shop(client, tenant)
    customer = await customer_of(client, tenant, "mine@example.es")
    other = await make_tenant("Otra tienda")

    theirs = await client.get(f"/v1/customers/{customer}/recommendations", headers=other.headers)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"
    product_id = products["chaqueta"]["id"]
    for method in ("GET", "PUT"):
        response = await client.request(
            method,
            f"/v1/products/{product_id}/aliases",
            json={"aliases": ["x y z"]} if method == "PUT" else None,
            headers=other.headers,
        )
        assert response.status_code == 404, response.text

    too_big = await client.get(
        f"/v1/customers/{customer}/recommendations", params={"limit": 0}, headers=tenant.headers
    )
    assert too_big.status_code == 422
    assert too_big.json()["error"]["field"] == "query.limit"

    set_first = await client.put(
        f"/v1/products/{product_id}/aliases",
        json={"aliases": ["cazadora vaquera"]},
        headers=tenant.headers,
    )
    assert set_first.status_code == 200
    bad = await client.put(
        f"/v1/products/{product_id}/aliases",
        json={"aliases": ["jean jacket", "!"]},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == {
        "code": "invalid",
        "message": "alias 2 ('!') needs at least two letters or digits",
        "field": "aliases.1",
    }
    kept = await client.get(f"/v1/products/{product_id}/aliases", headers=tenant.headers)
    assert kept.json() == {"product_id": product_id, "aliases": ["cazadora vaquera"]}


async def test_the_console_shows_what_to_offer_and_why(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    await shop(client, tenant)
    await order(client, tenant, "a@example.es", "CHQ-VAQ-01-M", "PAN-CHI-07-M", channel="SOL")
    await order(client, tenant, "b@example.es", "CAM-OXF-04-L")
    await order(client, tenant, "e@example.es", "CHQ-VAQ-01-S")
    await app.state.worker.run_once()
    customer = await customer_of(client, tenant, "e@example.es")

    view = (await client.get(f"/v1/customers/{customer}", headers=tenant.headers)).json()
    assert [(r["name"], r["reasons"], r["bought_with"]) for r in view["recommendations"]] == [
        ("Pantalón chino beige", [view["recommendations"][0]["reasons"][0]], ["Chaqueta vaquera"]),
        ("Camisa Oxford azul", ["popular"], []),
    ]

    agent = await make_agent(client, tenant)
    assert (await sign_in(client, agent.email)).status_code in (200, 303)
    page = await client.get(f"/console/customers/{customer}")
    assert page.status_code == 200
    assert "Recomendado" in page.text
    assert "Se compra a menudo con Chaqueta vaquera" in page.text
    assert "Popular en la tienda" in page.text

    english = await make_agent(client, tenant, locale="en")
    async with browser(app) as other:
        assert (await sign_in(other, english.email)).status_code in (200, 303)
        page = await other.get(f"/console/customers/{customer}")
    assert "Recommended" in page.text
    assert "Often bought with Chaqueta vaquera" in page.text
    assert "Popular in the shop" in page.text


def test_cosine_prefers_a_close_companion_to_the_best_seller() -> None:
    # The best-seller is in every basket; the companion only in the seed's.
    baskets = [["seed", "best", "companion"]] * 5 + [["seed", "best"]] * 5 + [["best"]] * 90
    stats = count_baskets(baskets)
    ranked = rank(bought=["seed"], stats=stats, popular=popular_products(stats))
    assert [r.product_id for r in ranked] == ["companion", "best"]
    assert ranked[0].reasons == ["bought_together:seed"]
    # With nothing known about the customer, the best-sellers fill the list.
    assert [r.product_id for r in rank(bought=[], stats=stats, popular=["best", "seed"])] == [
        "best",
        "seed",
    ]


async def test_recommendations_in_the_360_view_do_not_grow_with_history(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, engine: AsyncEngine
) -> None:
    await shop(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await identify(client, tenant, ("whatsapp", "34600555444"), ("email", "h@example.es"))
    await order(client, tenant, "o@example.es", "CHQ-VAQ-01-S", "GOR-LIN-12-S")
    await order(client, tenant, "h@example.es", "CHQ-VAQ-01-M", "PAN-CHI-07-M")
    await app.state.worker.run_once()
    customer = await customer_of(client, tenant, "h@example.es")
    url = f"/v1/customers/{customer}"
    await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="hello",
        kind="whatsapp",
        value="34600555444",
        text="Hola",
    )
    with statements(engine) as small:
        first = (await client.get(url, headers=tenant.headers)).json()
    for n in range(3):
        await inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id=f"h{n}",
            kind="whatsapp",
            value="34600555444",
            text="¿tenéis la gorra de lino?",
        )
        await order(client, tenant, "h@example.es", f"CAL-ALG-11-{SIZES[n]}", "CAM-OXF-04-M")
    await app.state.worker.run_once()
    with statements(engine) as large:
        view = (await client.get(url, headers=tenant.headers)).json()
    assert first["recommendations"][0]["reasons"][0].startswith("bought_together:")
    assert view["recommendations"][0]["name"] == "Gorra de lino"
    # Eleven statements for the rest of the view, eight for recommendations with a catalog:
    # customer's baskets, catalog (products, variants, aliases), counts, pairs, prices, stock.
    assert len(large) == len(small) <= 19, large


async def test_purchases_follow_a_merged_customer(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    await shop(client, tenant)
    await order(client, tenant, "x@example.es", "CHQ-VAQ-01-M", "PAN-CHI-07-M")
    await order(client, tenant, "y@example.es", "CAM-OXF-04-M")
    await app.state.worker.run_once()
    other = await customer_of(client, tenant, "y@example.es")
    assert "Chaqueta vaquera" in by_name(await recommendations(client, tenant, other))

    merged = await identify(client, tenant, ("email", "y@example.es"), ("email", "x@example.es"))
    assert merged["merged_customer_ids"], merged
    names = by_name(await recommendations(client, tenant, merged["customer_id"]))
    # Both customers' purchases are the survivor's now: none of them is offered.
    assert not {"Chaqueta vaquera", "Pantalón chino beige", "Camisa Oxford azul"} & set(names)
    for gone in merged["merged_customer_ids"]:
        assert await recommendations(client, tenant, gone) == list(names.values())

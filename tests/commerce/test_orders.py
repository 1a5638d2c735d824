"""Orders from any channel: never oversold, sourced by the tenant's rule, picked up in store
(with a transfer when the store lacks the item), cancelled with their stock given back, and
announced to the customer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from hilos.commerce.order_models import Order
from hilos.commerce.stock_models import Reservation, StockMovement
from hilos.conversations.models import Message
from hilos.core.models import OutboxEvent
from tests.commerce.orders_helpers import (
    ALCALA,
    BARCELONA,
    GETAFE,
    MADRID,
    advance,
    location,
    place,
    product,
    receive,
    stock_at,
)
from tests.conftest import TenantHandle, add_channel
from tests.web.test_console import make_agent, sign_in


async def count(sessionmaker: Any, model: Any, tenant: TenantHandle) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.tenant_id == tenant.id)
            )
            or 0
        )


async def ledger(sessionmaker: Any, tenant: TenantHandle) -> dict[str, int]:
    async with sessionmaker() as session:
        from hilos.commerce.models import Location

        rows = await session.execute(
            select(Location.code, func.sum(StockMovement.quantity))
            .join(Location, Location.id == StockMovement.location_id)
            .where(StockMovement.tenant_id == tenant.id)
            .group_by(Location.code)
        )
        return {code: int(total) for code, total in rows.all()}


async def test_two_hundred_simultaneous_orders_for_the_last_ten_units(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "ULTIMA")
    await receive(client, tenant, "ULTIMA", "ALM", 10)

    responses = await asyncio.gather(
        *(
            place(
                client,
                tenant,
                {"sku": "ULTIMA", "quantity": 1, "fulfilment": "ship"},
                key=f"web-{n}",
                email=f"cliente{n}@example.com",
            )
            for n in range(200)
        )
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 10, statuses
    assert statuses.count(409) == 190
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "out_of_stock"
    }
    assert await count(sessionmaker, Order, tenant) == 10
    assert (await stock_at(client, tenant, "ULTIMA"))["ALM"] == (10, 10)

    # Every winner ships: the stock ends at zero, never below, and the ledger agrees.
    for response in responses:
        if response.status_code == 201:
            await advance(client, tenant, response.json()["id"], "shipped")
    assert (await stock_at(client, tenant, "ULTIMA"))["ALM"] == (0, 0)
    assert (await ledger(sessionmaker, tenant))["ALM"] == 0


async def test_one_warehouse_that_has_everything_ships_it_all_the_nearest_first(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "BCN", at=BARCELONA)
    await location(client, tenant, "GTF", at=GETAFE)
    await location(client, tenant, "ALC", at=ALCALA)
    for sku in ("CAMISA", "PANTALON"):
        await product(client, tenant, sku)
    await receive(client, tenant, "CAMISA", "BCN", 5)
    await receive(client, tenant, "PANTALON", "BCN", 5)
    await receive(client, tenant, "CAMISA", "GTF", 5)
    await receive(client, tenant, "PANTALON", "GTF", 5)
    # The nearest of all has only one of the two.
    await receive(client, tenant, "CAMISA", "ALC", 5)

    response = await place(
        client,
        tenant,
        {"sku": "CAMISA", "quantity": 1},
        {"sku": "PANTALON", "quantity": 2},
        ship_to={"lat": MADRID[0], "lon": MADRID[1], "address": "Calle Mayor 1, Madrid"},
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "placed"
    assert {line["location"] for line in order["lines"]} == {"GTF"}
    assert order["sourcing"]["rule"] == "single_location_first"
    assert order["sourcing"]["shipments"] == ["GTF"]
    assert "GTF" in order["sourcing"]["reason"]
    assert order["total"] == 3 * 1999
    assert (await stock_at(client, tenant, "PANTALON"))["GTF"] == (5, 2)


async def test_ship_from_store_only_where_the_store_ships(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "ALM", at=BARCELONA)
    await location(client, tenant, "SOL", "store", at=MADRID, pickup=True)
    await location(client, tenant, "GET", "store", at=GETAFE, ship_from_store=True)
    await product(client, tenant, "BOLSO")
    await receive(client, tenant, "BOLSO", "SOL", 3)
    await receive(client, tenant, "BOLSO", "GET", 3)

    response = await place(
        client,
        tenant,
        {"sku": "BOLSO", "quantity": 2},
        ship_to={"lat": MADRID[0], "lon": MADRID[1]},
    )
    assert response.status_code == 201, response.text
    # SOL is nearer but does not ship; the empty warehouse cannot.
    assert [line["location"] for line in response.json()["lines"]] == ["GET"]

    too_many = await place(
        client, tenant, {"sku": "BOLSO", "quantity": 2}, key="order-2", email="otra@example.com"
    )
    assert too_many.status_code == 409
    assert too_many.json()["error"]["code"] == "out_of_stock"


async def test_a_split_takes_the_fewest_shipments(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "NORTE", at=ALCALA)
    await location(client, tenant, "SUR", at=GETAFE)
    await location(client, tenant, "ESTE", at=BARCELONA)
    for sku in ("A", "B", "C"):
        await product(client, tenant, sku)
    # Nearest-per-line would take three parcels (A from NORTE, B from SUR, C from ESTE);
    # ESTE and SUR together can do it in two.
    await receive(client, tenant, "A", "NORTE", 1)
    await receive(client, tenant, "B", "SUR", 1)
    await receive(client, tenant, "A", "ESTE", 1)
    await receive(client, tenant, "C", "ESTE", 1)

    response = await place(
        client,
        tenant,
        {"sku": "A", "quantity": 1},
        {"sku": "B", "quantity": 1},
        {"sku": "C", "quantity": 1},
        ship_to={"lat": MADRID[0], "lon": MADRID[1]},
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["sourcing"]["shipments"] == ["ESTE", "SUR"]
    assert {line["sku"]: line["location"] for line in order["lines"]} == {
        "A": "ESTE",
        "B": "SUR",
        "C": "ESTE",
    }

    # With the "nearest" rule the same basket goes line by line.
    settings = await client.put(
        "/v1/orders-settings",
        json={"sourcing_rule": "nearest", "transfer_lead_hours": 24},
        headers=tenant.headers,
    )
    assert settings.status_code == 200, settings.text
    await receive(client, tenant, "A", "NORTE", 2)
    await receive(client, tenant, "B", "SUR", 2)
    await receive(client, tenant, "C", "ESTE", 2)
    nearest = await place(
        client,
        tenant,
        {"sku": "A", "quantity": 1},
        {"sku": "B", "quantity": 1},
        {"sku": "C", "quantity": 1},
        key="order-2",
        ship_to={"lat": MADRID[0], "lon": MADRID[1]},
    )
    assert nearest.status_code == 201, nearest.text
    assert {line["sku"]: line["location"] for line in nearest.json()["lines"]} == {
        "A": "NORTE",
        "B": "SUR",
        "C": "ESTE",
    }


async def test_pickup_at_a_store_without_the_item_is_a_transfer_from_a_warehouse(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await location(client, tenant, "ALM", at=GETAFE)
    await location(client, tenant, "SOL", "store", at=MADRID, pickup=True)
    await product(client, tenant, "ZAPATO")
    await receive(client, tenant, "ZAPATO", "ALM", 4)

    response = await place(
        client, tenant, {"sku": "ZAPATO", "quantity": 1, "fulfilment": "pickup", "location": "SOL"}
    )
    assert response.status_code == 201, response.text
    order = response.json()
    (line,) = order["lines"]
    assert (line["location"], line["pickup_location"]) == ("ALM", "SOL")
    assert line["ready_by"] is not None
    assert order["sourcing"]["lines"][0]["to"] == "SOL"
    assert (await stock_at(client, tenant, "ZAPATO"))["ALM"] == (4, 1)

    ready = await advance(client, tenant, order["id"], "ready_for_pickup")
    assert ready["lines"][0]["location"] == "SOL"
    levels = await stock_at(client, tenant, "ZAPATO")
    assert levels["ALM"] == (3, 0)
    assert levels["SOL"] == (1, 1)

    collected = await advance(client, tenant, order["id"], "collected")
    assert collected["status"] == "collected"
    levels = await stock_at(client, tenant, "ZAPATO")
    assert (levels["ALM"], levels["SOL"]) == ((3, 0), (0, 0))
    assert await ledger(sessionmaker, tenant) == {"ALM": 3, "SOL": 0}
    assert [h["status"] for h in collected["history"]] == [
        "placed",
        "ready_for_pickup",
        "collected",
    ]


async def test_pickup_at_a_store_that_has_it_holds_it_there(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "ALM", at=GETAFE)
    await location(client, tenant, "SOL", "store", at=MADRID, pickup=True)
    await product(client, tenant, "GORRA")
    await receive(client, tenant, "GORRA", "ALM", 4)
    await receive(client, tenant, "GORRA", "SOL", 1)

    response = await place(
        client, tenant, {"sku": "GORRA", "quantity": 1, "fulfilment": "pickup", "location": "SOL"}
    )
    assert response.status_code == 201, response.text
    (line,) = response.json()["lines"]
    assert (line["location"], line["ready_by"]) == ("SOL", None)
    assert (await stock_at(client, tenant, "GORRA"))["SOL"] == (1, 1)


async def test_a_pos_sale_is_delivered_at_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "SOL", "store", at=MADRID)
    await product(client, tenant, "LLAVERO", prices={"store:SOL": 500})
    await receive(client, tenant, "LLAVERO", "SOL", 2)

    response = await place(
        client, tenant, {"sku": "LLAVERO", "quantity": 2, "fulfilment": "in_store"}, channel="SOL"
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["status"], order["total"]) == ("delivered", 1000)
    # One notice for a sale at the till (the receipt), not "received" and "delivered".
    assert [h["notification"] is None for h in order["history"]] == [True, False]
    assert (await stock_at(client, tenant, "LLAVERO"))["SOL"] == (0, 0)


async def test_cancelling_gives_the_stock_back_and_a_shipped_order_cannot_be_cancelled(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "TAZA")
    await receive(client, tenant, "TAZA", "ALM", 3)

    first = (await place(client, tenant, {"sku": "TAZA", "quantity": 2})).json()
    assert (await stock_at(client, tenant, "TAZA"))["ALM"] == (3, 2)
    cancelled = await client.post(f"/v1/orders/{first['id']}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await stock_at(client, tenant, "TAZA"))["ALM"] == (3, 0)
    again = await client.post(f"/v1/orders/{first['id']}/cancel", headers=tenant.headers)
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")
    assert (await stock_at(client, tenant, "TAZA"))["ALM"] == (3, 0)

    second = (await place(client, tenant, {"sku": "TAZA", "quantity": 1}, key="order-2")).json()
    await advance(client, tenant, second["id"], "allocated")
    await advance(client, tenant, second["id"], "picked")
    await advance(client, tenant, second["id"], "shipped")
    refused = await client.post(f"/v1/orders/{second['id']}/cancel", headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "order_not_cancellable"
    backwards = await client.post(
        f"/v1/orders/{second['id']}/status", json={"status": "picked"}, headers=tenant.headers
    )
    assert backwards.status_code == 409
    assert backwards.json()["error"]["code"] == "invalid_transition"
    delivered = await advance(client, tenant, second["id"], "delivered")
    assert [h["status"] for h in delivered["history"]] == [
        "placed",
        "allocated",
        "picked",
        "shipped",
        "delivered",
    ]
    assert (await stock_at(client, tenant, "TAZA"))["ALM"] == (2, 0)


async def test_a_resent_order_is_the_same_order_and_a_reused_key_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "VELA")
    await receive(client, tenant, "VELA", "ALM", 5)

    line = {"sku": "VELA", "quantity": 2}
    responses = await asyncio.gather(*(place(client, tenant, line) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count(sessionmaker, Order, tenant) == 1
    assert await count(sessionmaker, Reservation, tenant) == 1
    assert (await stock_at(client, tenant, "VELA"))["ALM"] == (5, 2)

    other = await place(client, tenant, {"sku": "VELA", "quantity": 3})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_bad_orders_are_refused_by_name_and_write_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store", at=MADRID, pickup=False)
    await product(client, tenant, "LAMPARA")
    await receive(client, tenant, "LAMPARA", "ALM", 5)

    cases: list[tuple[dict[str, Any], dict[str, Any], int, str]] = [
        ({"sku": "NOEXISTE", "quantity": 1}, {}, 404, "unknown_sku"),
        ({"sku": "LAMPARA", "quantity": -1}, {}, 422, "invalid"),
        ({"sku": "LAMPARA", "quantity": 1, "location": "NOPE"}, {}, 404, "unknown_location"),
        (
            {"sku": "LAMPARA", "quantity": 1, "fulfilment": "pickup", "location": "SOL"},
            {},
            422,
            "pickup_not_offered",
        ),
        ({"sku": "LAMPARA", "quantity": 1}, {"currency": "USD"}, 422, "currency_mismatch"),
        ({"sku": "LAMPARA", "quantity": 1}, {"channel": "tiktok"}, 422, "unknown_channel"),
        ({"sku": "LAMPARA", "quantity": 1}, {"channel": "app"}, 422, "no_price"),
        ({"sku": "LAMPARA", "quantity": 6}, {}, 409, "out_of_stock"),
    ]
    for n, (line, extra, status, code) in enumerate(cases):
        response = await place(client, tenant, line, key=f"bad-{n}", **extra)
        assert response.status_code == status, (line, extra, response.text)
        assert response.json()["error"]["code"] == code, response.text
    # A good line before a bad one leaves nothing behind either.
    half = await place(
        client,
        tenant,
        {"sku": "LAMPARA", "quantity": 1},
        {"sku": "LAMPARA", "quantity": 1, "location": "NOPE"},
        key="half",
    )
    assert half.status_code == 404

    assert await count(sessionmaker, Order, tenant) == 0
    assert await count(sessionmaker, Reservation, tenant) == 0
    assert (await stock_at(client, tenant, "LAMPARA"))["ALM"] == (5, 0)


async def test_another_tenants_order_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "PLATO")
    await receive(client, tenant, "PLATO", "ALM", 1)
    order = (await place(client, tenant, {"sku": "PLATO", "quantity": 1})).json()
    other = await make_tenant("Otra tienda")
    for method, path in (
        ("GET", f"/v1/orders/{order['id']}"),
        ("POST", f"/v1/orders/{order['id']}/cancel"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, response.text
    assert (await stock_at(client, tenant, "PLATO"))["ALM"] == (1, 1)


async def test_each_status_reaches_the_customer_on_their_channel_and_timeline(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await add_channel(client, tenant, "email", "Correo")
    await location(client, tenant, "ALM")
    await product(client, tenant, "LIBRO")
    await receive(client, tenant, "LIBRO", "ALM", 2)

    order = (await place(client, tenant, {"sku": "LIBRO", "quantity": 1})).json()
    assert order["history"][0]["notification"]["channel_kind"] == "email"
    await advance(client, tenant, order["id"], "shipped")

    async with sessionmaker() as session:
        texts = (
            await session.scalars(
                select(Message.text)
                .where(Message.tenant_id == tenant.id, Message.direction == "outbound")
                .order_by(Message.id)
            )
        ).all()
        topics = (
            await session.scalars(
                select(OutboxEvent.topic)
                .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic.like("order.%"))
                .order_by(OutboxEvent.id)
            )
        ).all()
    number = order["number"]
    # The tenant speaks Spanish by default, and so do its notices.
    assert texts == [
        f"Hemos recibido tu pedido {number}. Total: 19,99\xa0€.",
        f"Tu pedido {number} está en camino.",
    ]
    assert list(topics) == ["order.placed", "order.shipped"]

    customer = await client.get(f"/v1/customers/{order['customer_id']}", headers=tenant.headers)
    timeline = customer.json()["timeline"]
    assert [(e["type"], e["name"]) for e in timeline if e["type"] == "order"] == [
        ("order", "shipped"),
        ("order", "placed"),
    ]


async def test_points_are_earned_redeemed_at_checkout_and_given_back_on_cancel_and_return(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    program = await client.put(
        "/v1/loyalty/program",
        json={
            "earn_rules": {"web": {"EUR": 1}},
            "redemption_values": {"EUR": 1},
        },
        headers=tenant.headers,
    )
    assert program.status_code == 200, program.text
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store", at=MADRID)
    await product(client, tenant, "ABRIGO", prices={"web": 10000})
    await receive(client, tenant, "ABRIGO", "ALM", 5)

    async def balance(customer_id: str) -> int:
        found = await client.get(f"/v1/customers/{customer_id}/loyalty", headers=tenant.headers)
        assert found.status_code == 200, found.text
        return int(found.json()["balance"])

    first = (await place(client, tenant, {"sku": "ABRIGO", "quantity": 2}, key="o-1")).json()
    customer_id = first["customer_id"]
    assert await balance(customer_id) == 200  # 1 point per euro of 200 €

    # Redeeming more than the balance is refused by name, and nothing at all is written.
    greedy = await place(
        client, tenant, {"sku": "ABRIGO", "quantity": 1}, key="o-2", loyalty_points=500
    )
    assert greedy.status_code == 409, greedy.text
    assert greedy.json()["error"]["code"] == "insufficient_points"
    assert await balance(customer_id) == 200
    assert (await stock_at(client, tenant, "ABRIGO"))["ALM"] == (5, 2)
    assert await count(sessionmaker, Order, tenant) == 1

    # 150 points pay 1.50 € of the next coat; it earns on the 98.50 € paid.
    second = await place(
        client, tenant, {"sku": "ABRIGO", "quantity": 1}, key="o-3", loyalty_points=150
    )
    assert second.status_code == 201, second.text
    paid = second.json()
    assert (paid["discount"], paid["total"]) == (150, 9850)
    assert await balance(customer_id) == 200 - 150 + 98

    # Cancelling gives back the points spent and takes back the ones earned.
    cancelled = await client.post(f"/v1/orders/{paid['id']}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert await balance(customer_id) == 200

    # Returning one of the two coats of the first order takes back its half of the points.
    await advance(client, tenant, first["id"], "shipped")
    returned = await client.post(
        "/v1/returns",
        json={
            "order_id": first["id"],
            "lines": [{"sku": "ABRIGO", "quantity": 1}],
            "location": "SOL",
        },
        headers=tenant.headers,
    )
    assert returned.status_code == 201, returned.text
    assert returned.json()["loyalty_points_reversed"] == 100
    assert await balance(customer_id) == 100


async def test_a_cart_started_on_the_app_is_checked_out_by_the_call_center(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "MOCHILA", prices={"app": 4000, "callcenter": 3800})
    await receive(client, tenant, "MOCHILA", "ALM", 3)
    customer = {"identities": [{"kind": "phone", "value": "+34600111222"}]}
    added = await client.put(
        "/v1/carts/lines",
        json={"customer": customer, "channel": "app", "sku": "MOCHILA", "quantity": 2},
        headers=tenant.headers,
    )
    assert added.status_code == 200, added.text
    cart = added.json()

    body = {"channel": "callcenter", "idempotency_key": "llamada-1"}
    response = await client.post(
        f"/v1/carts/{cart['id']}/checkout", json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["customer_id"] == cart["customer_id"]
    assert (order["channel"], order["total"]) == ("callcenter", 7600)
    again = await client.post(f"/v1/carts/{cart['id']}/checkout", json=body, headers=tenant.headers)
    assert (again.status_code, again.json()["id"]) == (200, order["id"])
    converted = await client.get(f"/v1/carts/{cart['id']}", headers=tenant.headers)
    assert converted.json()["status"] == "converted"
    assert (await stock_at(client, tenant, "MOCHILA"))["ALM"] == (3, 2)
    assert await count(sessionmaker, Order, tenant) == 1


async def test_the_console_customer_page_shows_orders_points_and_their_history(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    program = await client.put(
        "/v1/loyalty/program",
        json={
            "earn_rules": {"web": {"EUR": 1}},
            "tiers": [{"code": "oro", "name": "Oro", "threshold_points": 100}],
        },
        headers=tenant.headers,
    )
    assert program.status_code == 200, program.text
    await location(client, tenant, "ALM")
    await product(client, tenant, "LAMPARA", prices={"web": 4550})
    await receive(client, tenant, "LAMPARA", "ALM", 3)
    order = (await place(client, tenant, {"sku": "LAMPARA", "quantity": 1})).json()
    await advance(client, tenant, order["id"], "shipped")
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)

    page = await client.get(f"/console/customers/{order['customer_id']}")
    assert page.status_code == 200
    for expected in (
        "Pedidos",
        order["number"],
        "Enviado",
        "45,50\xa0€",
        "Puntos de fidelización: <strong>45</strong>",
        "55 puntos para Oro",
        f"Pedido {order['number']}: Realizado",
    ):
        assert expected in page.text, expected
    english = await client.get(f"/console/customers/{order['customer_id']}?lang=en")
    for expected in ("Orders", "Shipped", "€45.50", "55 points to Oro"):
        assert expected in english.text, expected


async def test_a_customer_no_channel_can_reach_gets_no_notice_and_no_empty_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    from hilos.conversations.models import Conversation

    await add_channel(client, tenant, "whatsapp", "WhatsApp")  # the customer has no phone
    await location(client, tenant, "ALM")
    await product(client, tenant, "TAZA")
    await receive(client, tenant, "TAZA", "ALM", 1)
    order = (await place(client, tenant, {"sku": "TAZA", "quantity": 1})).json()
    notice = order["history"][0]["notification"]
    assert (notice["sent"], notice["reason"]) == (False, "no_reachable_channel")
    assert await count(sessionmaker, Conversation, tenant) == 0

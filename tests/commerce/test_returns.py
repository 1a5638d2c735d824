"""Returns anywhere: a web order handed back in a store restocks that store, never more than was
bought, refunds what was paid, and an exchange places the replacement."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.commerce.orders_helpers import (
    GETAFE,
    MADRID,
    advance,
    location,
    place,
    product,
    receive,
    stock_at,
)
from tests.commerce.test_orders import ledger
from tests.conftest import TenantHandle


async def shop(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, Any]:
    """A warehouse, a store, two SKUs, and a shipped web order of 2 + 1 units."""
    await location(client, tenant, "ALM", at=GETAFE)
    await location(client, tenant, "SOL", "store", at=MADRID, pickup=True)
    await product(client, tenant, "CAMISA", prices={"web": 2500})
    await product(client, tenant, "CINTURON", prices={"web": 1500, "store:SOL": 1500})
    await receive(client, tenant, "CAMISA", "ALM", 10)
    await receive(client, tenant, "CINTURON", "ALM", 10)
    await receive(client, tenant, "CINTURON", "SOL", 3)
    response = await place(
        client, tenant, {"sku": "CAMISA", "quantity": 2}, {"sku": "CINTURON", "quantity": 1}
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = await advance(client, tenant, response.json()["id"], "shipped")
    return order


async def give_back(
    client: httpx.AsyncClient, tenant: TenantHandle, order_id: str, *lines: Any, **extra: Any
) -> httpx.Response:
    body = {
        "order_id": order_id,
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "location": extra.pop("location", "SOL"),
        **extra,
    }
    return await client.post("/v1/returns", json=body, headers=tenant.headers)


async def test_a_web_order_returned_in_a_store_restocks_that_store(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    order = await shop(client, tenant)
    assert (await stock_at(client, tenant, "CAMISA"))["ALM"] == (8, 0)

    response = await give_back(client, tenant, order["id"], ("CAMISA", 1))
    assert response.status_code == 201, response.text
    returned = response.json()
    assert (returned["method"], returned["location"]) == ("store", "SOL")
    assert returned["refund_amount"] == 2500
    assert returned["lines"] == [
        {
            "sku": "CAMISA",
            "quantity": 1,
            "refund_amount": 2500,
            "resellable": True,
            "restocked": True,
        }
    ]
    levels = await stock_at(client, tenant, "CAMISA")
    assert levels == {"ALM": (8, 0), "SOL": (1, 0)}
    assert (await ledger(sessionmaker, tenant))["SOL"] == 4  # 3 belts + the returned shirt

    detail = (await client.get(f"/v1/orders/{order['id']}", headers=tenant.headers)).json()
    assert {line["sku"]: line["returned_quantity"] for line in detail["lines"]} == {
        "CAMISA": 1,
        "CINTURON": 0,
    }
    customer = await client.get(f"/v1/customers/{order['customer_id']}", headers=tenant.headers)
    assert any(e["type"] == "return" for e in customer.json()["timeline"])


async def test_a_damaged_item_sent_by_post_is_refunded_and_not_restocked(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    order = await shop(client, tenant)
    response = await client.post(
        "/v1/returns",
        json={
            "order_id": order["id"],
            "lines": [{"sku": "CINTURON", "quantity": 1, "resellable": False}],
            "location": "ALM",
            "reason": "llegó roto",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["method"] == "post"
    assert response.json()["lines"][0]["restocked"] is False
    assert (await stock_at(client, tenant, "CINTURON"))["ALM"] == (9, 0)


async def test_never_more_than_was_bought_even_when_two_returns_race(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    order = await shop(client, tenant)
    responses = await asyncio.gather(
        *(
            give_back(client, tenant, order["id"], ("CAMISA", 1), idempotency_key=f"dev-{n}")
            for n in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 2, [r.text for r in responses]
    assert all(status in (201, 409, 422) for status in statuses)
    assert (await stock_at(client, tenant, "CAMISA"))["SOL"] == (2, 0)

    too_many = await give_back(client, tenant, order["id"], ("CAMISA", 1))
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "return_exceeds_order"


async def test_a_resent_return_changes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    order = await shop(client, tenant)
    first = await give_back(client, tenant, order["id"], ("CAMISA", 1), idempotency_key="pos-7")
    again = await give_back(client, tenant, order["id"], ("CAMISA", 1), idempotency_key="pos-7")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert (await stock_at(client, tenant, "CAMISA"))["SOL"] == (1, 0)
    reused = await give_back(client, tenant, order["id"], ("CAMISA", 2), idempotency_key="pos-7")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_bad_returns_are_refused_by_name_and_write_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    order = await shop(client, tenant)
    unshipped = (
        await place(client, tenant, {"sku": "CAMISA", "quantity": 1}, key="order-2")
    ).json()
    cases = [
        ({"order_id": order["id"], "lines": [("ZAPATO", 1)]}, 422, "not_in_order"),
        ({"order_id": order["id"], "lines": [("CAMISA", 3)]}, 422, "return_exceeds_order"),
        (
            {"order_id": order["id"], "lines": [("CAMISA", 1)], "location": "NOPE"},
            404,
            "unknown_location",
        ),
        ({"order_id": unshipped["id"], "lines": [("CAMISA", 1)]}, 409, "not_handed_over"),
        ({"order_id": "0" * 32, "lines": [("CAMISA", 1)]}, 404, "not_found"),
        (
            {
                "order_id": order["id"],
                "lines": [("CAMISA", 1)],
                "method": "store",
                "location": "ALM",
            },
            422,
            "not_a_store",
        ),
    ]
    for body, status, code in cases:
        lines = body.pop("lines")
        response = await give_back(client, tenant, str(body.pop("order_id")), *lines, **body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, response.text
    negative = await client.post(
        "/v1/returns",
        json={
            "order_id": order["id"],
            "lines": [{"sku": "CAMISA", "quantity": -1}],
            "location": "SOL",
        },
        headers=tenant.headers,
    )
    assert negative.status_code == 422
    other = await make_tenant("Otra tienda")
    foreign = await give_back(client, other, order["id"], ("CAMISA", 1))
    assert foreign.status_code == 404
    # Nothing came back anywhere.
    assert "SOL" not in await stock_at(client, tenant, "CAMISA")
    listed = await client.get(f"/v1/orders/{order['id']}/returns", headers=tenant.headers)
    assert listed.json() == []


async def test_an_exchange_in_store_places_the_replacement_there(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    order = await shop(client, tenant)
    response = await client.post(
        "/v1/returns",
        json={
            "order_id": order["id"],
            "lines": [{"sku": "CAMISA", "quantity": 1}],
            "location": "SOL",
            "resolution": "exchange",
            "exchange_lines": [{"sku": "CINTURON", "quantity": 1, "fulfilment": "in_store"}],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    exchange_id = response.json()["exchange_order_id"]
    replacement = (await client.get(f"/v1/orders/{exchange_id}", headers=tenant.headers)).json()
    assert (replacement["channel"], replacement["status"]) == ("store:SOL", "delivered")
    assert replacement["customer_id"] == order["customer_id"]
    assert (await stock_at(client, tenant, "CINTURON"))["SOL"] == (2, 0)
    assert (await stock_at(client, tenant, "CAMISA"))["SOL"] == (1, 0)

"""Shared carts: one cart per customer that the app, the contact-center agent and the store
clerk all see and edit; priced per channel, abandoned after the tenant's idle time (by the
worker, with a moved clock), followed through merges, shown in the 360° view and the console.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.commerce import carts
from hilos.core.clock import now, set_now
from hilos.core.models import OutboxEvent
from hilos.customers.models import Customer
from tests.conftest import TenantHandle, identify
from tests.test_query_counts import statements
from tests.web.test_console import make_agent, sign_in

EMAIL = ("email", "ana@example.es")


@pytest.fixture
def clock() -> Any:
    start = now()
    state = {"now": start}
    set_now(lambda: state["now"])

    def advance(minutes: float) -> None:
        state["now"] = state["now"] + timedelta(minutes=minutes)

    yield advance
    set_now(None)


async def add_product(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sku: str,
    name: str,
    prices: dict[str, tuple[int, str]],
) -> None:
    """A product with one SKU and its price on each channel: ``{"app": (1999, "EUR")}``."""
    created = await client.post(
        "/v1/products", json={"name": name, "sku": sku}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    for channel, (amount, currency) in prices.items():
        priced = await client.put(
            "/v1/prices",
            json={"sku": sku, "channel": channel, "amount": amount, "currency": currency},
            headers=tenant.headers,
        )
        assert priced.status_code == 200, priced.text


async def catalog(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    """Trainers sold everywhere (cheaper by phone, dearer in the Madrid store), a T-shirt sold
    on the app and by phone, a cap sold only in the US web shop (dollars)."""
    await add_product(
        client,
        tenant,
        "ZAP-42",
        "Zapatilla trail 42",
        {"app": (1999, "EUR"), "callcenter": (1899, "EUR"), "store:MAD01": (2099, "EUR")},
    )
    await add_product(
        client,
        tenant,
        "CAM-M",
        "Camiseta técnica M",
        {"app": (1500, "EUR"), "callcenter": (1500, "EUR"), "web": (1450, "EUR")},
    )
    await add_product(client, tenant, "GORRA", "Gorra", {"web-us": (2500, "USD")})


async def put_line(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    channel: str,
    sku: str,
    quantity: Any,
    customer_id: str | None = None,
    identities: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"channel": channel, "sku": sku, "quantity": quantity, **extra}
    if customer_id is not None:
        body["customer_id"] = customer_id
    if identities is not None:
        body["customer"] = {"identities": [{"kind": k, "value": v} for k, v in identities]}
    return await client.put("/v1/carts/lines", json=body, headers=tenant.headers)


async def events(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, topic: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.id)
        )
        return list(rows)


def lines_of(cart: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {
        line["sku"]: (line["quantity"], line["unit_price"], line["channel"])
        for line in cart["lines"]
    }


async def test_the_app_the_agent_and_the_clerk_share_one_cart(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await catalog(client, tenant)
    customer = await identify(client, tenant, EMAIL, ("loyalty", "SOCIO-7781"), name="Ana")

    # On the app, Ana adds trainers: the app's price.
    app = await put_line(
        client, tenant, channel="app", sku="ZAP-42", quantity=1, identities=[EMAIL]
    )
    assert app.status_code == 200, app.text
    cart = app.json()
    assert cart["customer_id"] == customer["customer_id"]
    assert (cart["status"], cart["channel"], cart["currency"], cart["total"]) == (
        "active",
        "app",
        "EUR",
        1999,
    )
    assert cart["lines"][0]["name"] == "Zapatilla trail 42"

    # She phones: the agent finds the same cart and adds a T-shirt at the call center's price.
    seen = await client.get(f"/v1/customers/{customer['customer_id']}/cart", headers=tenant.headers)
    assert seen.status_code == 200
    assert seen.json()["id"] == cart["id"]
    agent = await put_line(
        client,
        tenant,
        channel="callcenter",
        sku="CAM-M",
        quantity=2,
        customer_id=customer["customer_id"],
    )
    assert agent.status_code == 200, agent.text
    assert agent.json()["id"] == cart["id"]
    assert agent.json()["channel"] == "callcenter"

    # In the Madrid store the clerk scans her loyalty card: same cart, both lines; a second
    # pair of trainers is priced by the store's list.
    clerk_view = await client.get(f"/v1/carts/{cart['id']}", headers=tenant.headers)
    assert lines_of(clerk_view.json()) == {
        "ZAP-42": (1, 1999, "app"),
        "CAM-M": (2, 1500, "callcenter"),
    }
    clerk = await put_line(
        client,
        tenant,
        channel="store:MAD01",
        sku="ZAP-42",
        quantity=2,
        identities=[("loyalty", "SOCIO-7781")],
    )
    assert clerk.status_code == 200, clerk.text
    final = clerk.json()
    assert final["id"] == cart["id"]
    assert lines_of(final) == {"ZAP-42": (2, 2099, "store:MAD01"), "CAM-M": (2, 1500, "callcenter")}
    assert [line["sku"] for line in final["lines"]] == ["ZAP-42", "CAM-M"]
    assert (final["total"], final["channel"], final["version"]) == (
        2 * 2099 + 2 * 1500,
        "store:MAD01",
        3,
    )

    # Every change was announced once, with the cart as it then was.
    updates = await events(sessionmaker, tenant, "cart.updated")
    assert [(e["version"], e["channel"], e["change"]) for e in updates] == [
        (1, "app", {"sku": "ZAP-42", "quantity": 1}),
        (2, "callcenter", {"sku": "CAM-M", "quantity": 2}),
        (3, "store:MAD01", {"sku": "ZAP-42", "quantity": 2}),
    ]
    assert updates[-1]["lines"] == [
        {"sku": "ZAP-42", "quantity": 2},
        {"sku": "CAM-M", "quantity": 2},
    ]

    # Sending the same change again changes nothing; quantity 0 removes the line.
    again = await put_line(
        client,
        tenant,
        channel="store:MAD01",
        sku="ZAP-42",
        quantity=2,
        customer_id=customer["customer_id"],
    )
    assert again.json()["version"] == 3
    assert len(await events(sessionmaker, tenant, "cart.updated")) == 3
    removed = await put_line(
        client, tenant, channel="app", sku="CAM-M", quantity=0, customer_id=customer["customer_id"]
    )
    assert lines_of(removed.json()) == {"ZAP-42": (2, 2099, "store:MAD01")}
    assert removed.json()["version"] == 4


async def test_two_channels_adding_at_once_never_lose_a_line(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    skus = [f"SKU-{n}" for n in range(8)]
    for sku in skus:
        await add_product(client, tenant, sku, sku, {"app": (100, "EUR"), "web": (110, "EUR")})
    customer = await identify(client, tenant, ("email", "prisa@example.es"))

    responses = await asyncio.gather(
        *(
            put_line(
                client,
                tenant,
                channel="app" if n % 2 else "web",
                sku=sku,
                quantity=n + 1,
                customer_id=customer["customer_id"],
            )
            for n, sku in enumerate(skus)
        )
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    cart = (
        await client.get(f"/v1/customers/{customer['customer_id']}/cart", headers=tenant.headers)
    ).json()
    assert {line["sku"]: line["quantity"] for line in cart["lines"]} == {
        sku: n + 1 for n, sku in enumerate(skus)
    }
    assert cart["version"] == len(skus)

    # A brand-new customer named by a new identity from two channels at once: one customer,
    # one cart, both lines.
    first, second = await asyncio.gather(
        put_line(
            client,
            tenant,
            channel="app",
            sku="SKU-0",
            quantity=1,
            identities=[("phone", "+34611000111")],
        ),
        put_line(
            client,
            tenant,
            channel="web",
            sku="SKU-1",
            quantity=1,
            identities=[("phone", "+34611000111")],
        ),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    both = (await client.get(f"/v1/carts/{first.json()['id']}", headers=tenant.headers)).json()
    assert sorted(line["sku"] for line in both["lines"]) == ["SKU-0", "SKU-1"]


async def test_bad_input_names_the_problem_and_writes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await catalog(client, tenant)
    customer = await identify(client, tenant, EMAIL)
    cid = customer["customer_id"]
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({"quantity": -1}, 422, "invalid", "quantity"),
        ({"quantity": 1_000_000}, 422, "invalid", "quantity"),
        ({"quantity": 1.5}, 422, "invalid", "quantity"),
        ({"quantity": "2"}, 422, "invalid", "quantity"),
        ({"sku": "NO-EXISTE"}, 404, "unknown_sku", "sku"),
        ({"sku": "bad sku!"}, 422, "invalid", "sku"),
        ({"channel": "marketplace"}, 422, "no_price", "sku"),
        ({"channel": "Not A Channel"}, 422, "invalid", "channel"),
        ({"customer_id": "0" * 32}, 404, "not_found", None),
        ({"customer_id": None}, 422, "invalid", "body"),
        ({"identities": [EMAIL]}, 422, "invalid", "body"),
        ({"customer_id": None, "identities": [("email", "no-es-un-correo")]}, 422, "invalid", None),
        ({"expected_version": 3}, 409, "version_conflict", None),
        # A new customer named by a new email, for an unknown SKU: the customer is not kept.
        (
            {
                "customer_id": None,
                "identities": [("email", "nueva@example.es")],
                "sku": "NO-EXISTE",
            },
            404,
            "unknown_sku",
            "sku",
        ),
        ({"quantity": 0}, 404, "no_cart", None),
    ]
    for change, status, code, field in cases:
        body: dict[str, Any] = {
            "channel": "app",
            "sku": "ZAP-42",
            "quantity": 1,
            "customer_id": cid,
            **{k: v for k, v in change.items() if k != "identities"},
        }
        if "identities" in change:
            body["identities"] = change["identities"]
        response = await put_line(client, tenant, **body)
        assert response.status_code == status, (change, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (change, error)
        assert error["message"]
        if field is not None:
            assert error.get("field") == field, (change, error)

    # The shop's own phone is blocked: it names nobody, so it cannot hold a cart.
    blocked = await client.post(
        "/v1/blocked-values",
        json={"kind": "phone", "value": "+34910000000", "reason": "la centralita"},
        headers=tenant.headers,
    )
    assert blocked.status_code == 201, blocked.text
    shop_phone = await put_line(
        client,
        tenant,
        channel="app",
        sku="ZAP-42",
        quantity=1,
        identities=[("phone", "+34910000000")],
    )
    assert shop_phone.status_code == 422
    assert shop_phone.json()["error"]["code"] == "blocked_identity"

    # Nothing was written: no cart, no event, and the refused identities made no customer.
    nothing = await client.get(f"/v1/customers/{cid}/cart", headers=tenant.headers)
    assert nothing.status_code == 404
    assert nothing.json()["error"]["code"] == "no_cart"
    assert await events(sessionmaker, tenant, "cart.updated") == []
    async with sessionmaker() as session:
        customers_now = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.tenant_id == tenant.id)
        )
    assert customers_now == 1

    # One currency per cart: a dollar cap does not go into a euro cart, which stays as it was.
    euros = await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=cid)
    assert euros.status_code == 200
    dollars = await put_line(
        client, tenant, channel="web-us", sku="GORRA", quantity=1, customer_id=cid
    )
    assert dollars.status_code == 422
    assert dollars.json()["error"]["code"] == "currency_mismatch"
    assert "EUR" in dollars.json()["error"]["message"]
    stale = await put_line(
        client, tenant, channel="app", sku="CAM-M", quantity=1, customer_id=cid, expected_version=0
    )
    assert stale.status_code == 409
    cart = (await client.get(f"/v1/customers/{cid}/cart", headers=tenant.headers)).json()
    assert (cart["version"], lines_of(cart)) == (1, {"ZAP-42": (1, 1999, "app")})
    assert len(await events(sessionmaker, tenant, "cart.updated")) == 1

    # The version the client saw lets the change through.
    fresh = await put_line(
        client, tenant, channel="app", sku="CAM-M", quantity=1, customer_id=cid, expected_version=1
    )
    assert fresh.status_code == 200
    assert fresh.json()["version"] == 2

    # Emptied by hand, a cart takes any currency again.
    for sku in ("ZAP-42", "CAM-M"):
        await put_line(client, tenant, channel="app", sku=sku, quantity=0, customer_id=cid)
    cap = await put_line(client, tenant, channel="web-us", sku="GORRA", quantity=1, customer_id=cid)
    assert cap.status_code == 200, cap.text
    assert (cap.json()["currency"], cap.json()["total"]) == ("USD", 2500)


async def test_settings_have_a_default_and_bounds(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    assert (await client.get("/v1/carts/settings", headers=tenant.headers)).json() == {
        "abandon_after_minutes": 60
    }
    for bad in (0, -5, 43_201, "soon"):
        response = await client.put(
            "/v1/carts/settings", json={"abandon_after_minutes": bad}, headers=tenant.headers
        )
        assert response.status_code == 422, bad
        assert response.json()["error"]["field"] == "abandon_after_minutes"
    changed = await client.put(
        "/v1/carts/settings", json={"abandon_after_minutes": 30}, headers=tenant.headers
    )
    assert changed.json() == {"abandon_after_minutes": 30}
    assert (await client.get("/v1/carts/settings", headers=tenant.headers)).json() == {
        "abandon_after_minutes": 30
    }


async def test_an_idle_cart_is_abandoned_once_and_again_after_new_idleness(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    sessionmaker: Any,
    app: Any,
    clock: Any,
) -> None:
    await catalog(client, tenant)
    await client.put(
        "/v1/carts/settings", json={"abandon_after_minutes": 30}, headers=tenant.headers
    )
    ana = (await identify(client, tenant, EMAIL))["customer_id"]
    luis = (await identify(client, tenant, ("email", "luis@example.es")))["customer_id"]
    cart = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=2, customer_id=ana)
    ).json()
    # Luis empties his cart: an empty cart is never "abandoned".
    await put_line(client, tenant, channel="app", sku="CAM-M", quantity=1, customer_id=luis)
    await put_line(client, tenant, channel="app", sku="CAM-M", quantity=0, customer_id=luis)
    # Another shop keeps the default hour.
    other = await make_tenant("Otra tienda")
    await catalog(client, other)
    eva = (await identify(client, other, ("email", "eva@example.es")))["customer_id"]
    await put_line(client, other, channel="app", sku="CAM-M", quantity=1, customer_id=eva)

    async def status() -> str:
        response = await client.get(f"/v1/carts/{cart['id']}", headers=tenant.headers)
        return str(response.json()["status"])

    clock(29)
    await app.state.worker.run_once()
    assert await status() == "active"
    assert await events(sessionmaker, tenant, "cart.abandoned") == []

    clock(2)
    await app.state.worker.run_once()
    assert await status() == "abandoned"
    abandoned = await events(sessionmaker, tenant, "cart.abandoned")
    assert abandoned == [
        {
            "cart_id": cart["id"],
            "customer_id": ana,
            "channel": "app",
            "total": 2 * 1999,
            "currency": "EUR",
            "lines": [{"sku": "ZAP-42", "quantity": 2}],
        }
    ]
    assert await events(sessionmaker, other, "cart.abandoned") == []
    # The timeline tells the story.
    view = (await client.get(f"/v1/customers/{ana}", headers=tenant.headers)).json()
    entries = [item for item in view["timeline"] if item["type"] == "cart"]
    assert [(e["name"], e["properties"]["total"], e["properties"]["cart_id"]) for e in entries] == [
        ("abandoned", 3998, cart["id"])
    ]
    assert view["active_cart"]["status"] == "abandoned"

    # More runs and more time change nothing: one abandonment, one event.
    await app.state.worker.run_once()
    clock(10)
    await app.state.worker.run_once()
    assert len(await events(sessionmaker, tenant, "cart.abandoned")) == 1

    # Ana comes back from the call center: the cart is active again, with the same id...
    back = await put_line(
        client, tenant, channel="callcenter", sku="CAM-M", quantity=1, customer_id=ana
    )
    assert (back.json()["id"], back.json()["status"]) == (cart["id"], "active")
    clock(29)
    await app.state.worker.run_once()
    assert await status() == "active"
    # ...and a new idle period abandons it again, once.
    clock(2)
    await app.state.worker.run_once()
    await app.state.worker.run_once()
    assert await status() == "abandoned"
    again = await events(sessionmaker, tenant, "cart.abandoned")
    assert len(again) == 2
    assert (again[1]["channel"], again[1]["total"]) == ("callcenter", 2 * 1999 + 1500)
    # The other shop's cart waits for its own hour.
    other_cart = (await client.get(f"/v1/customers/{eva}/cart", headers=other.headers)).json()
    assert other_cart["status"] == "abandoned"
    assert len(await events(sessionmaker, other, "cart.abandoned")) == 1
    luis_cart = (await client.get(f"/v1/customers/{luis}/cart", headers=tenant.headers)).json()
    assert (luis_cart["status"], luis_cart["lines"]) == ("active", [])


async def test_another_tenants_cart_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, sessionmaker: Any
) -> None:
    await catalog(client, tenant)
    cid = (await identify(client, tenant, EMAIL))["customer_id"]
    cart = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=cid)
    ).json()
    other = await make_tenant("Competencia")
    await catalog(client, other)

    assert (await client.get(f"/v1/carts/{cart['id']}", headers=other.headers)).status_code == 404
    assert (
        await client.delete(f"/v1/carts/{cart['id']}", headers=other.headers)
    ).status_code == 404
    assert (await client.get(f"/v1/customers/{cid}/cart", headers=other.headers)).status_code == 404
    sneaky = await put_line(client, other, channel="app", sku="ZAP-42", quantity=5, customer_id=cid)
    assert sneaky.status_code == 404
    assert await events(sessionmaker, other, "cart.updated") == []
    mine = (await client.get(f"/v1/carts/{cart['id']}", headers=tenant.headers)).json()
    assert (mine["status"], lines_of(mine)) == ("active", {"ZAP-42": (1, 1999, "app")})


async def test_closing_and_converting_end_the_cart(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await catalog(client, tenant)
    cid = (await identify(client, tenant, EMAIL))["customer_id"]
    first = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=cid)
    ).json()

    closed = await client.delete(f"/v1/carts/{first['id']}", headers=tenant.headers)
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    assert closed.json()["closed_at"] is not None
    assert (await client.delete(f"/v1/carts/{first['id']}", headers=tenant.headers)).json()[
        "status"
    ] == "closed"
    assert (
        await client.get(f"/v1/customers/{cid}/cart", headers=tenant.headers)
    ).status_code == 404

    # The next line starts a new cart.
    second = (
        await put_line(client, tenant, channel="web", sku="CAM-M", quantity=3, customer_id=cid)
    ).json()
    assert second["id"] != first["id"]
    assert lines_of(second) == {"CAM-M": (3, 1450, "web")}

    # The orders code converts it through the service.
    async with sessionmaker() as session, session.begin():
        found = await carts.active_cart(session, tenant.context, cid)
        assert found is not None
        assert [
            (line.sku, line.quantity, line.unit_price, line.currency) for line in found.lines
        ] == [("CAM-M", 3, 1450, "EUR")]
        await carts.mark_converted(session, tenant.context, cart_id=second["id"], order_id="ORD-1")
    async with sessionmaker() as session, session.begin():
        # The same order again changes nothing; another order is refused.
        await carts.mark_converted(session, tenant.context, cart_id=second["id"], order_id="ORD-1")
        with pytest.raises(carts.Conflict) as refused:
            await carts.mark_converted(
                session, tenant.context, cart_id=second["id"], order_id="ORD-2"
            )
        assert refused.value.code == "cart_converted"
        assert await carts.active_cart(session, tenant.context, cid) is None
    converted = (await client.get(f"/v1/carts/{second['id']}", headers=tenant.headers)).json()
    assert (converted["status"], converted["order_id"]) == ("converted", "ORD-1")
    assert [e["order_id"] for e in await events(sessionmaker, tenant, "cart.converted")] == [
        "ORD-1"
    ]
    cannot = await client.delete(f"/v1/carts/{second['id']}", headers=tenant.headers)
    assert cannot.status_code == 409
    assert cannot.json()["error"]["code"] == "cart_converted"
    view = (await client.get(f"/v1/customers/{cid}", headers=tenant.headers)).json()
    assert view["active_cart"] is None
    assert [item["name"] for item in view["timeline"] if item["type"] == "cart"] == ["converted"]


async def test_the_360_view_shows_the_shared_cart(
    client: httpx.AsyncClient, tenant: TenantHandle, engine: AsyncEngine
) -> None:
    await catalog(client, tenant)
    cid = (await identify(client, tenant, EMAIL, name="Ana García"))["customer_id"]
    with statements(engine) as without_cart:
        empty = (await client.get(f"/v1/customers/{cid}", headers=tenant.headers)).json()
    assert empty["active_cart"] is None
    await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=cid)
    await put_line(client, tenant, channel="callcenter", sku="CAM-M", quantity=2, customer_id=cid)

    with statements(engine) as with_cart:
        view = (await client.get(f"/v1/customers/{cid}", headers=tenant.headers)).json()
    # A cart and its lines cost the 360° view no extra statement, however many lines.
    assert len(with_cart) == len(without_cart)
    cart = view["active_cart"]
    assert (cart["status"], cart["channel"], cart["currency"], cart["total"]) == (
        "active",
        "callcenter",
        "EUR",
        1999 + 3000,
    )
    assert cart["updated_at"]
    assert [
        (line["sku"], line["name"], line["quantity"], line["unit_price"], line["channel"])
        for line in cart["lines"]
    ] == [
        ("ZAP-42", "Zapatilla trail 42", 1, 1999, "app"),
        ("CAM-M", "Camiseta técnica M", 2, 1500, "callcenter"),
    ]


async def test_the_console_customer_page_shows_the_cart(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any, app: Any, clock: Any
) -> None:
    await catalog(client, tenant)
    cid = (await identify(client, tenant, EMAIL, name="Ana García"))["customer_id"]
    await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=cid)
    await put_line(client, tenant, channel="callcenter", sku="CAM-M", quantity=2, customer_id=cid)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)

    page = await client.get(f"/console/customers/{cid}")
    assert page.status_code == 200
    for expected in (
        "Carrito",
        "Activo",
        "Último canal",
        "callcenter",
        "1 × Zapatilla trail 42",
        "2 × Camiseta técnica M",
        "19,99\xa0€",
        "15,00\xa0€",
        "Total del carrito: 49,99\xa0€",
    ):
        assert expected in page.text, expected

    english = await client.get(f"/console/customers/{cid}?lang=en")
    for expected in ("Cart total: €49.99", "Last channel", "Active"):
        assert expected in english.text, expected

    # Abandoned, it says so, and the timeline shows the abandonment.
    clock(61)
    await app.state.worker.run_once()
    abandoned = await client.get(f"/console/customers/{cid}?lang=es")
    assert "Abandonado" in abandoned.text
    assert "Carrito abandonado" in abandoned.text

    nobody = (await identify(client, tenant, ("email", "sin-carrito@example.es")))["customer_id"]
    assert (
        "No tiene ningún carrito abierto."
        in (await client.get(f"/console/customers/{nobody}")).text
    )


async def test_carts_follow_merges_and_unmerges(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await catalog(client, tenant)
    # Ana shops on the app signed in by email, and anonymously on the web with her phone.
    ana = (await identify(client, tenant, EMAIL))["customer_id"]
    phone = (await identify(client, tenant, ("phone", "+34600123456")))["customer_id"]
    kept = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=ana)
    ).json()
    folded = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=2, customer_id=phone)
    ).json()
    await put_line(client, tenant, channel="web", sku="CAM-M", quantity=1, customer_id=phone)

    merged = await identify(client, tenant, EMAIL, ("phone", "+34600123456"))
    assert merged["customer_id"] == ana
    assert merged["merged_customer_ids"] == [phone]

    survivor = (await client.get(f"/v1/customers/{ana}/cart", headers=tenant.headers)).json()
    assert survivor["id"] == kept["id"]
    assert {line["sku"]: line["quantity"] for line in survivor["lines"]} == {
        "ZAP-42": 3,
        "CAM-M": 1,
    }
    # The merged customer's id leads to the survivor's cart; their own cart is set aside.
    via_merged = (await client.get(f"/v1/customers/{phone}/cart", headers=tenant.headers)).json()
    assert via_merged["id"] == kept["id"]
    assert (await client.get(f"/v1/carts/{folded['id']}", headers=tenant.headers)).json()[
        "status"
    ] == "merged"
    # The survivor keeps shopping after the merge.
    await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=4, customer_id=ana)

    undone = await client.post(f"/v1/customers/{phone}/unmerge", headers=tenant.headers)
    assert undone.status_code == 200, undone.text
    back = (await client.get(f"/v1/customers/{phone}/cart", headers=tenant.headers)).json()
    assert back["id"] == folded["id"]
    assert back["status"] == "active"
    assert {line["sku"]: line["quantity"] for line in back["lines"]} == {"ZAP-42": 2, "CAM-M": 1}
    mine = (await client.get(f"/v1/customers/{ana}/cart", headers=tenant.headers)).json()
    # What the merge added is taken away; what Ana added since stays.
    assert {line["sku"]: line["quantity"] for line in mine["lines"]} == {"ZAP-42": 2}

    # A customer without a cart merged into one: the cart simply moves, and back.
    luis = (await identify(client, tenant, ("email", "luis@example.es")))["customer_id"]
    device = (await identify(client, tenant, ("anonymous", "device-99")))["customer_id"]
    moved = (
        await put_line(client, tenant, channel="app", sku="CAM-M", quantity=1, customer_id=device)
    ).json()
    await identify(client, tenant, ("email", "luis@example.es"), ("anonymous", "device-99"))
    assert (await client.get(f"/v1/customers/{luis}/cart", headers=tenant.headers)).json()[
        "id"
    ] == moved["id"]
    await client.post(f"/v1/customers/{device}/unmerge", headers=tenant.headers)
    assert (await client.get(f"/v1/customers/{device}/cart", headers=tenant.headers)).json()[
        "id"
    ] == moved["id"]
    assert (
        await client.get(f"/v1/customers/{luis}/cart", headers=tenant.headers)
    ).status_code == 404

    # Carts in two currencies cannot be folded: the merged customer's is set aside, whole.
    eva = (await identify(client, tenant, ("email", "eva@example.es")))["customer_id"]
    traveller = (await identify(client, tenant, ("phone", "+34600999888")))["customer_id"]
    euros = (
        await put_line(client, tenant, channel="app", sku="ZAP-42", quantity=1, customer_id=eva)
    ).json()
    dollars = (
        await put_line(
            client, tenant, channel="web-us", sku="GORRA", quantity=1, customer_id=traveller
        )
    ).json()
    await identify(client, tenant, ("email", "eva@example.es"), ("phone", "+34600999888"))
    kept_euros = (await client.get(f"/v1/customers/{eva}/cart", headers=tenant.headers)).json()
    assert (kept_euros["id"], lines_of(kept_euros)) == (euros["id"], {"ZAP-42": (1, 1999, "app")})
    aside = (await client.get(f"/v1/carts/{dollars['id']}", headers=tenant.headers)).json()
    assert (aside["status"], aside["currency"]) == ("merged", "USD")
    await client.post(f"/v1/customers/{traveller}/unmerge", headers=tenant.headers)
    restored = (await client.get(f"/v1/customers/{traveller}/cart", headers=tenant.headers)).json()
    assert (restored["id"], restored["status"], restored["total"]) == (
        dollars["id"],
        "active",
        2500,
    )

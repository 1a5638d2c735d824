"""Journeys: refused when they could loop or stall; customers enter on the trigger, walk the
steps on the worker's durable timer, branch, wait for time windows and events, and exit when
they buy in any channel."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from hilos.core import clock
from hilos.core.outbox import relay
from hilos.engagement import journeys
from hilos.engagement.journeys import next_window
from tests.commerce.orders_helpers import location, place, product, receive
from tests.conftest import TenantHandle, identify


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[Clock]:
    # A Monday at 11:00 in Madrid.
    manual = Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def tick(app: Any) -> int:
    """What the worker does each round for journeys: relay events (runs start, exit, wake),
    then walk the due steps, until nothing moves."""
    steps = 0
    while True:
        while await relay(app.state.sessionmaker, app.state.bus):
            pass
        taken = await journeys.run_due(app.state.sessionmaker)
        steps += taken
        if not taken:
            return steps


async def create(
    client: httpx.AsyncClient, tenant: TenantHandle, *, status: str = "active", **body: Any
) -> dict[str, Any]:
    body = {"name": "viaje", "trigger": {"event": "cart.abandoned"}, **body}
    response = await client.post("/v1/journeys", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    journey: dict[str, Any] = response.json()
    if status != "draft":
        response = await client.patch(
            f"/v1/journeys/{journey['id']}", json={"status": status}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        journey = response.json()
    return journey


async def start_cart(
    client: httpx.AsyncClient, tenant: TenantHandle, email: str, sku: str = "GORRO"
) -> dict[str, Any]:
    response = await client.put(
        "/v1/carts/lines",
        json={
            "customer": {"identities": [{"kind": "email", "value": email}]},
            "channel": "web",
            "sku": sku,
            "quantity": 1,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    cart: dict[str, Any] = response.json()
    return cart


async def abandon(app: Any, frozen: Clock) -> None:
    from hilos.commerce import carts

    frozen.advance(hours=2)
    await carts.abandon_idle(app.state.sessionmaker)


async def place_of(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/customers/{customer_id}/journeys", headers=tenant.headers)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


async def traits_of(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    traits: dict[str, Any] = response.json()["traits"]
    return traits


# --- refused at save ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "code", "field"),
    [
        (
            {
                "start": "a",
                "steps": [
                    {"id": "a", "type": "set_trait", "key": "k", "value": 1, "next": "b"},
                    {"id": "b", "type": "wait", "seconds": 60, "next": "a"},
                ],
            },
            "journey_cycle",
            "definition.steps",
        ),
        (
            {"start": "a", "steps": [{"id": "a", "type": "wait", "seconds": 60}]},
            "wait_without_exit",
            "definition.steps.0.next",
        ),
        (
            {
                "start": "a",
                "steps": [{"id": "a", "type": "wait", "event": "order.placed", "next": None}],
            },
            "wait_without_exit",
            "definition.steps.0.timeout_seconds",
        ),
        (
            {"start": "a", "steps": [{"id": "a", "type": "teleport", "next": None}]},
            "invalid_journey",
            "definition.steps.0.type",
        ),
        (
            {"start": "a", "steps": [{"id": "a", "type": "add_tag", "tag": "x", "next": "zz"}]},
            "invalid_journey",
            "definition.steps.0",
        ),
        (
            {
                "start": "a",
                "steps": [
                    {"id": "a", "type": "condition", "if": {"horoscope": "leo"}, "then": None}
                ],
            },
            "invalid_journey",
            "definition.steps.0.if",
        ),
        (
            {
                "start": "a",
                "steps": [{"id": "a", "type": "send", "template_id": "nope", "next": None}],
            },
            "unknown_template",
            "definition.steps.0.template_id",
        ),
    ],
)
async def test_a_journey_that_could_loop_stall_or_name_nothing_is_refused(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    definition: dict[str, Any],
    code: str,
    field: str,
) -> None:
    response = await client.post(
        "/v1/journeys",
        json={"name": "roto", "trigger": {"event": "cart.abandoned"}, "definition": definition},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    listed = await client.get("/v1/journeys", headers=tenant.headers)
    assert listed.json() == []


# --- walking ---------------------------------------------------------------------------------


async def test_steps_branch_wait_and_tag_and_each_customer_place_is_visible(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    await create(
        client,
        tenant,
        definition={
            "start": "is-vip",
            "steps": [
                {
                    "id": "is-vip",
                    "type": "condition",
                    "if": {"trait": "plan", "op": "eq", "value": "premium"},
                    "then": "tag-vip",
                    "else": "wait",
                },
                {"id": "tag-vip", "type": "add_tag", "tag": "vip", "next": "wait"},
                {"id": "wait", "type": "wait", "seconds": 3 * 86_400, "next": "mark"},
                {
                    "id": "mark",
                    "type": "set_trait",
                    "key": "recordado",
                    "value": True,
                    "next": None,
                },
            ],
        },  # fmt: skip
    )
    premium = await identify(
        client, tenant, ("email", "ana@example.com"), traits={"plan": "premium"}
    )
    basic = await identify(client, tenant, ("email", "bea@example.com"))
    await start_cart(client, tenant, "ana@example.com")
    await start_cart(client, tenant, "bea@example.com")
    await abandon(app, frozen)
    await tick(app)

    ana, bea = premium["customer_id"], basic["customer_id"]
    assert (await traits_of(client, tenant, ana))["tags"] == ["vip"]
    assert "tags" not in await traits_of(client, tenant, bea)
    (run,) = await place_of(client, tenant, ana)
    assert (run["status"], run["step_id"]) == ("active", "wait")
    assert datetime.fromisoformat(run["next_at"]) == frozen.now + timedelta(days=3)

    # Three days later (a restart in between changes nothing: the run is a row).
    frozen.advance(days=3)
    await tick(app)
    assert (await traits_of(client, tenant, ana))["recordado"] is True
    (run,) = await place_of(client, tenant, ana)
    assert run["status"] == "done"
    detail = (await client.get(f"/v1/journey-runs/{run['id']}", headers=tenant.headers)).json()
    assert [(s["step_id"], s["outcome"]) for s in detail["steps"]] == [
        ("is-vip", "branched:then"),
        ("tag-vip", "tagged"),
        ("wait", "waiting"),
        ("wait", "waited"),
        ("mark", "set"),
    ]


async def test_buying_in_a_store_ends_the_abandoned_cart_journey(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    await location(client, tenant, "SOL", "store")
    await product(client, tenant, "GORRO", prices={"web": 1500, "store:SOL": 1500})
    await receive(client, tenant, "GORRO", "SOL", 3)
    await create(
        client,
        tenant,
        definition={
            "start": "wait",
            "steps": [
                {"id": "wait", "type": "wait", "seconds": 86_400, "next": "mark"},
                {
                    "id": "mark",
                    "type": "set_trait",
                    "key": "recordado",
                    "value": True,
                    "next": None,
                },
            ],
        },
        exit_on=["order.placed"],
    )
    cart = await start_cart(client, tenant, "carla@example.com")
    await abandon(app, frozen)
    await tick(app)

    # She walks into the shop and buys it at the till.
    sold = await place(
        client,
        tenant,
        {"sku": "GORRO", "quantity": 1, "fulfilment": "in_store"},
        channel="store:SOL",
        email="carla@example.com",
    )
    assert sold.status_code == 201, sold.text
    frozen.advance(days=2)
    await tick(app)
    (run,) = await place_of(client, tenant, cart["customer_id"])
    assert (run["status"], run["exit_reason"]) == ("exited", "order.placed")
    assert "recordado" not in await traits_of(client, tenant, cart["customer_id"])


async def test_a_wait_for_an_event_goes_on_when_it_comes_or_at_the_timeout(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    await receive(client, tenant, "GORRO", "ALM", 5)
    await create(
        client,
        tenant,
        definition={
            "start": "wait",
            "steps": [
                {
                    "id": "wait",
                    "type": "wait",
                    "event": "order.placed",
                    "timeout_seconds": 86_400,
                    "on_event": "thanks",
                    "next": "nudge",
                },
                {"id": "thanks", "type": "add_tag", "tag": "compró", "next": None},
                {"id": "nudge", "type": "add_tag", "tag": "no-compró", "next": None},
            ],
        },  # fmt: skip
    )
    buyer = await start_cart(client, tenant, "dani@example.com")
    idle = await start_cart(client, tenant, "eva@example.com")
    await abandon(app, frozen)
    await tick(app)
    response = await place(
        client, tenant, {"sku": "GORRO", "quantity": 1}, email="dani@example.com"
    )
    assert response.status_code == 201, response.text
    await tick(app)
    assert (await traits_of(client, tenant, buyer["customer_id"]))["tags"] == ["compró"]
    assert "tags" not in await traits_of(client, tenant, idle["customer_id"])
    frozen.advance(days=1, seconds=1)
    await tick(app)
    assert (await traits_of(client, tenant, idle["customer_id"]))["tags"] == ["no-compró"]


async def test_reentry_policy_and_one_run_per_event(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    once = await create(
        client,
        tenant,
        name="una vez",
        reentry="never",
        definition={
            "start": "t",
            "steps": [{"id": "t", "type": "add_tag", "tag": "a", "next": None}],
        },
    )
    every = await create(
        client,
        tenant,
        name="siempre",
        reentry="always",
        definition={
            "start": "t",
            "steps": [{"id": "t", "type": "add_tag", "tag": "b", "next": None}],
        },
    )
    cart = await start_cart(client, tenant, "fede@example.com")
    await abandon(app, frozen)
    await tick(app)
    # The cart is touched and abandoned again: a second cart.abandoned.
    await start_cart(client, tenant, "fede@example.com", sku="GORRO")
    response = await client.put(
        "/v1/carts/lines",
        json={"customer_id": cart["customer_id"], "channel": "web", "sku": "GORRO", "quantity": 2},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    await abandon(app, frozen)
    await tick(app)
    # Relaying the same events again starts nothing more.
    await tick(app)
    runs = await place_of(client, tenant, cart["customer_id"])
    assert sorted(r["journey_id"] for r in runs) == sorted([once["id"], every["id"], every["id"]])


async def test_a_paused_journey_holds_its_runs_and_starts_none(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    journey = await create(
        client,
        tenant,
        definition={
            "start": "wait",
            "steps": [
                {"id": "wait", "type": "wait", "seconds": 60, "next": "t"},
                {"id": "t", "type": "add_tag", "tag": "x", "next": None},
            ],
        },
    )
    first = await start_cart(client, tenant, "gema@example.com")
    await abandon(app, frozen)
    await tick(app)
    paused = await client.patch(
        f"/v1/journeys/{journey['id']}", json={"status": "paused"}, headers=tenant.headers
    )
    assert paused.status_code == 200
    await start_cart(client, tenant, "hugo@example.com")
    frozen.advance(minutes=2)
    await abandon(app, frozen)
    await tick(app)
    (run,) = await place_of(client, tenant, first["customer_id"])
    assert (run["status"], run["step_id"]) == ("active", "wait")
    counts = (await client.get(f"/v1/journeys/{journey['id']}", headers=tenant.headers)).json()
    assert counts["counts"] == {"active": 1, "at:wait": 1}


async def test_another_tenants_journey_and_runs_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    journey = await create(
        client,
        tenant,
        definition={
            "start": "t",
            "steps": [{"id": "t", "type": "add_tag", "tag": "x", "next": None}],
        },
    )
    other = await make_tenant("Otra")
    for path in (f"/v1/journeys/{journey['id']}", f"/v1/journeys/{journey['id']}/runs"):
        assert (await client.get(path, headers=other.headers)).status_code == 404
    patched = await client.patch(
        f"/v1/journeys/{journey['id']}", json={"status": "archived"}, headers=other.headers
    )
    assert patched.status_code == 404


def test_a_time_window_opens_in_the_customers_zone_and_crosses_midnight() -> None:
    madrid, mexico = ZoneInfo("Europe/Madrid"), ZoneInfo("America/Mexico_City")
    # 23:30 in Madrid on a Monday: the 10:00-20:00 window opens at 10:00 on Tuesday there.
    late = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
    assert next_window(late, madrid, "10:00", "20:00") == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    # The same instant is 16:30 in Mexico City: inside.
    assert next_window(late, mexico, "10:00", "20:00") == late
    # A night window 22:00-06:00 at 23:30 Madrid time is open.
    assert next_window(late, madrid, "22:00", "06:00") == late


async def test_abandoned_cart_on_the_web_reminded_by_whatsapp_then_bought_in_a_store(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock, sessionmaker: Any
) -> None:
    from sqlalchemy import select

    from hilos.conversations.models import Message
    from tests.conftest import add_channel

    whatsapp = await add_channel(client, tenant, "whatsapp")
    await add_channel(client, tenant, "email")
    await location(client, tenant, "SOL", "store")
    await product(client, tenant, "GORRO", prices={"web": 1500, "store:SOL": 1500})
    await receive(client, tenant, "GORRO", "SOL", 3)
    example = await client.post(
        "/v1/journeys/examples/abandoned-cart", json={"activate": True}, headers=tenant.headers
    )
    assert example.status_code == 201, example.text
    assert example.json()["status"] == "active"

    identities = [
        {"kind": "whatsapp", "value": "34611222333"},
        {"kind": "email", "value": "irene@example.es"},
    ]
    cart = await client.put(
        "/v1/carts/lines",
        json={
            "customer": {"identities": identities},
            "channel": "web",
            "sku": "GORRO",
            "quantity": 1,
        },
        headers=tenant.headers,
    )
    assert cart.status_code == 200, cart.text
    customer_id = cart.json()["customer_id"]
    for kind in ("whatsapp", "email"):
        granted = await client.post(
            f"/v1/customers/{customer_id}/consents",
            json={"purpose": "marketing", "channel_kind": kind, "granted": True},
            headers=tenant.headers,
        )
        assert granted.status_code == 201, granted.text

    await abandon(app, frozen)
    await tick(app)
    async with sessionmaker() as session:
        sent = (
            await session.scalars(
                select(Message).where(
                    Message.tenant_id == tenant.id, Message.direction == "outbound"
                )
            )
        ).all()
    # The customer never wrote on WhatsApp: the reminder goes as the approved template.
    [reminder] = sent
    assert reminder.channel_id == whatsapp
    assert reminder.data["template"]["parameters"] == ["cliente", "15,00\xa0€"]
    assert reminder.data["template"]["name"] == "carrito_abandonado"
    (run,) = await place_of(client, tenant, customer_id)
    assert (run["status"], run["step_id"]) == ("active", "a-day")

    # She buys it at the shop's till before the day is over: the journey ends there.
    sold = await client.post(
        "/v1/orders",
        json={
            "customer": {"identities": identities[:1]},
            "channel": "store:SOL",
            "lines": [{"sku": "GORRO", "quantity": 1, "fulfilment": "in_store"}],
            "idempotency_key": "tpv-1",
        },
        headers=tenant.headers,
    )
    assert sold.status_code == 201, sold.text
    frozen.advance(days=2)
    await tick(app)
    (run,) = await place_of(client, tenant, customer_id)
    assert (run["status"], run["exit_reason"]) == ("exited", "order.placed")
    async with sessionmaker() as session:
        data = (
            await session.scalars(
                select(Message.data).where(
                    Message.tenant_id == tenant.id, Message.direction == "outbound"
                )
            )
        ).all()
    count = sum(1 for d in data if "send_id" in ((d or {}).get("automated") or {}))
    assert count == 1  # no second reminder


async def test_a_step_opens_a_conversation_that_routing_offers_to_an_agent(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    from tests.conftest import add_channel
    from tests.routing.helpers import create_agent, create_queue, offers

    await add_channel(client, tenant, "email")
    await create_queue(client, tenant, "Atención", channel_kinds=["email"])
    ana = await create_agent(client, tenant, "ana@tienda.es")
    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    await create(
        client,
        tenant,
        definition={
            "start": "call",
            "steps": [
                {
                    "id": "call",
                    "type": "open_conversation",
                    "note": "Carrito grande abandonado: llamar para ayudar.",
                    "next": None,
                }
            ],
        },
    )
    cart = await start_cart(client, tenant, "jose@example.es")
    await abandon(app, frozen)
    await tick(app)
    await app.state.worker.run_once()
    (run,) = await place_of(client, tenant, cart["customer_id"])
    detail = (await client.get(f"/v1/journey-runs/{run['id']}", headers=tenant.headers)).json()
    conversation_id = detail["steps"][0]["detail"]["conversation_id"]
    assert [o["conversation_id"] for o in await offers(client, tenant) if o["agent_id"] == ana] == [
        conversation_id
    ]
    listed = await client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers
    )
    [note] = listed.json()["items"]
    assert (note["direction"], note["text"]) == (
        "note",
        "Carrito grande abandonado: llamar para ayudar.",
    )


async def test_the_console_shows_where_the_customer_is_in_each_journey(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    from tests.web.test_console import make_agent, sign_in

    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    await create(
        client,
        tenant,
        name="Bienvenida",
        definition={
            "start": "wait",
            "steps": [
                {"id": "wait", "type": "wait", "seconds": 86_400, "next": "tag"},
                {"id": "tag", "type": "add_tag", "tag": "x", "next": None},
            ],
        },
    )
    cart = await start_cart(client, tenant, "luz@example.es")
    await abandon(app, frozen)
    await tick(app)
    runs = await client.get(f"/v1/customers/{cart['customer_id']}", headers=tenant.headers)
    assert [(j["journey"], j["status"], j["step_id"]) for j in runs.json()["journeys"]] == [
        ("Bienvenida", "active", "wait")
    ]
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    page = await client.get(f"/console/customers/{cart['customer_id']}")
    for expected in ("Recorridos", "Bienvenida", "En curso", "en el paso wait"):
        assert expected in page.text, expected
    english = await client.get(f"/console/customers/{cart['customer_id']}?lang=en")
    for expected in ("Journeys", "In progress", "at step wait"):
        assert expected in english.text, expected


async def test_a_webhook_step_posts_to_its_endpoint_signed(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    from hilos.integrations.delivery import send_due, verify_signature
    from tests.integrations.receiver import receiving

    await location(client, tenant, "ALM")
    await product(client, tenant, "GORRO")
    async with receiving() as receiver:
        endpoint = await client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url("/crm"), "topics": ["order.*"]},
            headers=tenant.headers,
        )
        assert endpoint.status_code == 201, endpoint.text
        bad = await client.post(
            "/v1/journeys",
            json={
                "name": "sin destino",
                "trigger": {"event": "cart.abandoned"},
                "definition": {
                    "start": "h",
                    "steps": [{"id": "h", "type": "webhook", "endpoint_id": "nope", "next": None}],
                },
            },
            headers=tenant.headers,
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "unknown_endpoint")
        await create(
            client,
            tenant,
            definition={
                "start": "h",
                "steps": [
                    {
                        "id": "h",
                        "type": "webhook",
                        "endpoint_id": endpoint.json()["id"],
                        "next": None,
                    }
                ],
            },
        )
        cart = await start_cart(client, tenant, "mar@example.es")
        await abandon(app, frozen)
        await tick(app)
        while await send_due(app.state.sessionmaker, app.state.worker.http_client()):
            pass
        [request] = receiver.at("/crm")
        verify_signature(endpoint.json()["secret"], request.headers, request.body, at=frozen.now)
        body = request.json()
        assert body["type"] == "journey.webhook"
        assert body["data"]["customer_id"] == cart["customer_id"]
        assert body["data"]["context"]["cart_id"] == cart["id"]


async def test_a_purchase_relayed_together_with_the_abandonment_ends_the_run_at_once(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    from hilos.commerce import carts

    await location(client, tenant, "SOL", "store")
    await product(client, tenant, "GORRO", prices={"web": 1500, "store:SOL": 1500})
    await receive(client, tenant, "GORRO", "SOL", 3)
    await create(
        client,
        tenant,
        definition={
            "start": "t",
            "steps": [
                {"id": "t", "type": "wait", "seconds": 3600, "next": "mark"},
                {"id": "mark", "type": "add_tag", "tag": "recordado", "next": None},
            ],
        },
        exit_on=["order.placed"],
    )
    cart = await start_cart(client, tenant, "olga@example.es")
    frozen.advance(hours=2)
    await carts.abandon_idle(app.state.sessionmaker)
    # She buys at the till before the worker relays the abandonment: one batch holds both.
    frozen.advance(minutes=1)
    sold = await place(
        client,
        tenant,
        {"sku": "GORRO", "quantity": 1, "fulfilment": "in_store"},
        channel="store:SOL",
        email="olga@example.es",
    )
    assert sold.status_code == 201, sold.text
    frozen.advance(minutes=1)  # the worker's round comes a moment later
    await tick(app)
    (run,) = await place_of(client, tenant, cart["customer_id"])
    assert (run["status"], run["exit_reason"]) == ("exited", "order.placed")

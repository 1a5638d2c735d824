"""Loyalty: earning per channel and currency, an idempotent ledger that never overspends,
returns and refunds, tiers that feed routing, the 360, merges, tenants and bad programs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.commerce import loyalty
from hilos.commerce.loyalty_models import LoyaltyBalance, LoyaltyMovement
from hilos.core import clock
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.models import OutboxEvent
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.routing.helpers import ManualClock, create_agent, create_queue, offers, routing_log

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]

PROGRAM: dict[str, Any] = {
    "earn_rules": {"web": {"EUR": 1, "JPY": 0.01}, "MAD01": {"EUR": 2}, "marketplace": {}},
    "default_earn_rule": {"EUR": 0.5, "CLP": 0.001},
    "tiers": [
        {"code": "silver", "name": "Plata", "threshold_points": 100, "routing_priority": 1},
        {"code": "gold", "name": "Oro", "threshold_points": 500, "routing_priority": 4},
    ],
    "redemption_values": {"EUR": 1},
    "min_redemption_points": 10,
}


async def put_program(
    client: httpx.AsyncClient, tenant: TenantHandle, **changes: Any
) -> dict[str, Any]:
    response = await client.put(
        "/v1/loyalty/program", json={**PROGRAM, **changes}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def new_customer(client: httpx.AsyncClient, tenant: TenantHandle, email: str) -> str:
    customer_id: str = (await identify(client, tenant, ("email", email)))["customer_id"]
    return customer_id


async def move(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str, kind: str, **fields: Any
) -> httpx.Response:
    body = {"customer_id": customer_id, "kind": kind, **fields}
    body.setdefault("idempotency_key", f"{kind}-{customer_id}-{fields}")
    return await client.post("/v1/loyalty/movements", json=body, headers=tenant.headers)


async def points_of(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}/loyalty", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def in_session(
    sessionmaker: Sessions,
    tenant: TenantHandle,
    call: Callable[..., Awaitable[T]],
    **arguments: Any,
) -> T:
    """A service call in a transaction of its own, as the orders code makes it."""
    async with sessionmaker() as session, session.begin():
        return await call(session, tenant.context, **arguments)


async def ledger(sessionmaker: Sessions, tenant: TenantHandle, customer_id: str) -> list[int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(LoyaltyMovement.points)
            .where(
                LoyaltyMovement.tenant_id == tenant.id,
                LoyaltyMovement.customer_id == customer_id,
            )
            .order_by(LoyaltyMovement.id)
        )
        return list(rows.scalars())


async def events(sessionmaker: Sessions, tenant: TenantHandle, topic: str) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.id)
        )
        return list(rows.scalars())


async def earn(
    sessionmaker: Sessions,
    tenant: TenantHandle,
    customer_id: str,
    *,
    amount: int,
    channel: str = "web",
    currency: str = "EUR",
    reference: str = "order:1",
    key: str | None = None,
) -> int:
    return await in_session(
        sessionmaker,
        tenant,
        loyalty.earn_for_purchase,
        customer_id=customer_id,
        channel=channel,
        amount=amount,
        currency=currency,
        reference=reference,
        idempotency_key=key or f"earn:{reference}:{channel}:{currency}:{amount}",
    )


# --- the program ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"earn_rules": {"web": {"EURO": 1}}}, "earn_rules.web.EURO.[key]"),
        ({"default_earn_rule": {"EUR": -1}}, "default_earn_rule.EUR"),
        ({"default_earn_rule": {"EUR": 0.00001}}, "default_earn_rule.EUR"),
        ({"earn_rules": {"web shop": {"EUR": 1}}}, "earn_rules.web shop.[key]"),
        ({"redemption_values": {"EUR": 0}}, "redemption_values.EUR"),
        ({"min_redemption_points": 0}, "min_redemption_points"),
        (
            {
                "tiers": [
                    {"code": "gold", "name": "Oro", "threshold_points": 1, "routing_priority": 11}
                ]
            },
            "tiers.0.routing_priority",
        ),
        (
            {
                "tiers": [
                    {"code": "gold", "name": "Oro", "threshold_points": 500},
                    {"code": "silver", "name": "Plata", "threshold_points": 100},
                ]
            },
            "tiers.1.threshold_points",
        ),
        (
            {
                "tiers": [
                    {"code": "gold", "name": "Oro", "threshold_points": 100},
                    {"code": "gold", "name": "Oro+", "threshold_points": 500},
                ]
            },
            "tiers.1.code",
        ),
        ({"tiers": [{"code": "Gold", "name": "Oro", "threshold_points": 1}]}, "tiers.0.code"),
    ],
)
async def test_a_bad_program_is_refused_naming_the_field_and_nothing_is_saved(
    client: httpx.AsyncClient, tenant: TenantHandle, changes: dict[str, Any], field: str
) -> None:
    response = await client.put(
        "/v1/loyalty/program", json={**PROGRAM, **changes}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    missing = await client.get("/v1/loyalty/program", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "no_loyalty_program"


async def test_the_service_checks_a_program_as_strictly_as_the_api(
    sessionmaker: Sessions, tenant: TenantHandle
) -> None:
    with pytest.raises(Invalid) as refused:
        await in_session(
            sessionmaker,
            tenant,
            loyalty.set_program,
            earn_rules={"web": {"EUR": 1}},
            tiers=[
                {"code": "gold", "name": "Oro", "threshold_points": 500},
                {"code": "silver", "name": "Plata", "threshold_points": 500},
            ],
        )
    assert refused.value.field == "tiers.1.threshold_points"
    assert "increasing" in refused.value.message


async def test_the_program_is_read_back_and_gives_routing_its_tier_priorities(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    saved = await put_program(client, tenant)
    read = (await client.get("/v1/loyalty/program", headers=tenant.headers)).json()
    assert read == saved
    assert read["earn_rules"]["web"] == {"EUR": 1.0, "JPY": 0.01}
    assert [t["code"] for t in read["tiers"]] == ["silver", "gold"]
    settings = (await client.get("/v1/routing/settings", headers=tenant.headers)).json()
    # The program's priorities replace routing's defaults for its tiers and keep the others.
    assert settings["tier_priorities"] == {"vip": 3, "platinum": 3, "gold": 4, "silver": 1}


# --- earning ----------------------------------------------------------------------------------


async def test_earning_follows_the_channel_rule_and_the_currency_exponent(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")

    async def earned(channel: str, amount: int, currency: str) -> int:
        return await earn(
            sessionmaker,
            tenant,
            ana,
            amount=amount,
            channel=channel,
            currency=currency,
            reference=f"order:{channel}:{currency}",
        )

    # 123.45 EUR on the web at a point per euro; in store MAD01 at two.
    assert await earned("web", 12_345, "EUR") == 123
    assert await earned("MAD01", 12_345, "EUR") == 246
    # A channel the program does not name earns by the default rule: half a point per euro.
    assert await earned("app", 12_345, "EUR") == 61
    # Yen and Chilean pesos have no minor unit: 12 345 JPY is 12 345 yen, not 123.45.
    assert await earned("web", 12_345, "JPY") == 123
    assert await earned("app", 25_990, "CLP") == 25
    # A named channel's rule replaces the default: the marketplace earns nothing, and the web
    # earns nothing in a currency its rule leaves out.
    assert await earned("marketplace", 12_345, "EUR") == 0
    assert await earned("web", 12_345, "CLP") == 0
    # Nothing earned, no row: five movements for five earnings.
    assert await ledger(sessionmaker, tenant, ana) == [123, 246, 61, 123, 25]
    view = await points_of(client, tenant, ana)
    assert (view["balance"], view["lifetime_earned"]) == (578, 578)
    assert view["movements"][0]["balance_after"] == 578
    assert view["movements"][0]["currency"] == "CLP"
    changed = await events(sessionmaker, tenant, "loyalty.points_changed")
    assert [(e["kind"], e["points"], e["balance"]) for e in changed][-1] == ("earn", 25, 578)


async def test_without_a_program_nothing_is_earned(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    ana = await new_customer(client, tenant, "ana@example.es")
    assert await earn(sessionmaker, tenant, ana, amount=10_000) == 0
    assert await ledger(sessionmaker, tenant, ana) == []
    response = await move(client, tenant, ana, "earn", points=10)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_loyalty_program"
    # The 360 has no loyalty block then.
    view = (await client.get(f"/v1/customers/{ana}", headers=tenant.headers)).json()
    assert view["loyalty"] is None


async def test_a_resent_movement_changes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    bruno = await new_customer(client, tenant, "bruno@example.es")
    # A till earns by the purchase's amount (49.90 EUR at two points per euro in MAD01),
    # naming the customer by their loyalty card.
    body = {
        "customer": {"identities": [{"kind": "loyalty", "value": "td0001"}]},
        "kind": "earn",
        "amount": 4_990,
        "currency": "EUR",
        "channel": "MAD01",
        "reference": "ticket:MAD01-77",
        "idempotency_key": "MAD01-77",
    }
    first = await client.post("/v1/loyalty/movements", json=body, headers=tenant.headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/loyalty/movements", json=body, headers=tenant.headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (first.json()["points"], first.json()["balance_after"]) == (99, 99)
    card_holder = first.json()["customer_id"]
    assert await ledger(sessionmaker, tenant, card_holder) == [99]

    # The orders code resends too: the same key returns the first points, once in the ledger.
    assert await earn(sessionmaker, tenant, ana, amount=20_000, key="order:9:earn") == 200
    assert await earn(sessionmaker, tenant, ana, amount=20_000, key="order:9:earn") == 200
    assert await ledger(sessionmaker, tenant, ana) == [200]
    # The same key for another customer is a mistake, refused without a change.
    with pytest.raises(Conflict) as reused:
        await earn(sessionmaker, tenant, bruno, amount=20_000, key="order:9:earn")
    assert reused.value.code == "idempotency_conflict"
    assert await ledger(sessionmaker, tenant, bruno) == []
    assert len(await events(sessionmaker, tenant, "loyalty.points_changed")) == 2
    # A key sent again with other points is refused rather than taken for a resend.
    gift = await move(client, tenant, ana, "earn", points=10, idempotency_key="gift-1")
    assert gift.status_code == 201
    other = await move(client, tenant, ana, "earn", points=20, idempotency_key="gift-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert await ledger(sessionmaker, tenant, ana) == [200, 10]


# --- redeeming --------------------------------------------------------------------------------


async def test_redeeming_more_than_the_balance_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    assert (await move(client, tenant, ana, "earn", points=100)).status_code == 201

    response = await move(client, tenant, ana, "redeem", points=150, currency="EUR")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_points"
    assert "100" in error["message"]
    assert "150" in error["message"]
    assert (error["balance"], error["asked"]) == (100, 150)
    assert (await points_of(client, tenant, ana))["balance"] == 100
    assert await ledger(sessionmaker, tenant, ana) == [100]
    assert len(await events(sessionmaker, tenant, "loyalty.points_changed")) == 1

    # The orders code may catch the refusal and go on without a discount: its transaction
    # holds nothing of the refused redemption.
    async with sessionmaker() as session, session.begin():
        with pytest.raises(Conflict) as short:
            await loyalty.redeem(
                session,
                tenant.context,
                customer_id=ana,
                points=101,
                currency="EUR",
                reference="order:2",
                idempotency_key="order:2:redeem",
            )
        assert short.value.code == "insufficient_points"
        assert (
            await loyalty.earn_for_purchase(
                session,
                tenant.context,
                customer_id=ana,
                channel="web",
                amount=1_000,
                currency="EUR",
                reference="order:2",
                idempotency_key="order:2:earn",
            )
            == 10
        )
    assert await ledger(sessionmaker, tenant, ana) == [100, 10]

    # What redeeming is worth: a cent a point.
    discount = await in_session(
        sessionmaker,
        tenant,
        loyalty.redeem,
        customer_id=ana,
        points=60,
        currency="EUR",
        reference="order:3",
        idempotency_key="order:3:redeem",
    )
    assert discount == 60
    assert (await points_of(client, tenant, ana))["balance"] == 50
    # A redemption does not lower the points that count for tiers.
    assert (await points_of(client, tenant, ana))["lifetime_earned"] == 110


@pytest.mark.parametrize(
    ("points", "currency", "field"),
    [(5, "EUR", "points"), (0, "EUR", "points"), (20, "USD", "currency")],
)
async def test_points_that_cannot_be_redeemed_are_refused(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: Sessions,
    points: int,
    currency: str,
    field: str,
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    await move(client, tenant, ana, "earn", points=100)
    with pytest.raises(Invalid) as refused:
        await in_session(
            sessionmaker,
            tenant,
            loyalty.redeem,
            customer_id=ana,
            points=points,
            currency=currency,
            reference="order:1",
            idempotency_key="order:1:redeem",
        )
    assert (refused.value.code, refused.value.field) == ("points_not_redeemable", field)
    response = await move(client, tenant, ana, "redeem", points=points, currency=currency)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "points_not_redeemable"
    assert await ledger(sessionmaker, tenant, ana) == [100]


async def test_twenty_concurrent_redemptions_never_overspend(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    assert (await move(client, tenant, ana, "earn", points=1_000)).status_code == 201

    # Twenty tills at once, 70 points each: 1 400 asked of 1 000.
    responses = await asyncio.gather(
        *(
            move(
                client,
                tenant,
                ana,
                "redeem",
                points=70,
                channel=f"store-{n}",
                idempotency_key=f"till-{n}",
            )
            for n in range(20)
        )
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 14, [r.text for r in responses]
    assert statuses.count(409) == 6
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "insufficient_points"
    }
    view = await points_of(client, tenant, ana)
    assert view["balance"] == 20
    movements = await ledger(sessionmaker, tenant, ana)
    assert sum(movements) == 20
    assert len(movements) == 15
    # Every successful redemption left a balance that was never negative.
    afters = sorted(r.json()["balance_after"] for r in responses if r.status_code == 201)
    assert afters == list(range(20, 1_000, 70))


# --- returns and cancellations ----------------------------------------------------------------


async def test_a_return_takes_back_its_share_even_of_points_already_spent(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    assert await earn(sessionmaker, tenant, ana, amount=10_000, reference="order:1") == 100

    async def returned(
        amount: int, key: str, reference: str = "order:1", total: int = 10_000
    ) -> int:
        return await in_session(
            sessionmaker,
            tenant,
            loyalty.reverse_for_return,
            customer_id=ana,
            reference=reference,
            returned_amount=amount,
            order_amount=total,
            idempotency_key=key,
        )

    # A quarter of the order comes back, then the rest; resending changes nothing; nothing
    # is left to take back after that.
    assert await returned(2_500, "return:1") == 25
    assert await returned(2_500, "return:1") == 25
    assert await returned(7_500, "return:2") == 75
    assert await returned(1_000, "return:3") == 0
    assert await ledger(sessionmaker, tenant, ana) == [100, -25, -75]
    view = await points_of(client, tenant, ana)
    assert (view["balance"], view["lifetime_earned"]) == (0, 0)
    # A third of 100 points is 33, rounded down.
    assert await earn(sessionmaker, tenant, ana, amount=10_000, reference="order:2") == 100
    assert await returned(3_333, "return:4", reference="order:2") == 33

    # Points already spent: the return still takes back its share, and the customer owes it.
    assert await earn(sessionmaker, tenant, ana, amount=10_000, reference="order:3") == 100
    spent = await in_session(
        sessionmaker,
        tenant,
        loyalty.redeem,
        customer_id=ana,
        points=160,
        currency="EUR",
        reference="order:4",
        idempotency_key="order:4:redeem",
    )
    assert spent == 160
    assert (await points_of(client, tenant, ana))["balance"] == 7
    assert await returned(10_000, "return:5", reference="order:3") == 100
    assert (await points_of(client, tenant, ana))["balance"] == -93
    # Nothing can be redeemed while owing; the next earnings pay the debt first.
    refused = await move(client, tenant, ana, "redeem", points=10)
    assert refused.status_code == 409
    assert await earn(sessionmaker, tenant, ana, amount=5_000, reference="order:5") == 50
    assert (await points_of(client, tenant, ana))["balance"] == -43

    # Order 4 is cancelled before it ships: its 160 points come back, once.
    async def refunded(key: str) -> int:
        return await in_session(
            sessionmaker,
            tenant,
            loyalty.refund_redemption,
            customer_id=ana,
            reference="order:4",
            idempotency_key=key,
        )

    assert await refunded("cancel:4") == 160
    assert await refunded("cancel:4") == 160
    assert await refunded("cancel:4:again") == 0
    view = await points_of(client, tenant, ana)
    assert view["balance"] == 117
    assert sum(await ledger(sessionmaker, tenant, ana)) == 117
    async with sessionmaker() as session:
        row = await session.get(LoyaltyBalance, (tenant.id, ana))
        assert row is not None
        assert (row.available, row.owed) == (117, 0)


async def test_a_refund_above_the_total_returns_the_whole_order_and_no_more(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    assert await earn(sessionmaker, tenant, ana, amount=9_000, reference="order:1") == 90

    async def returned(amount: int, total: int, key: str) -> int:
        return await in_session(
            sessionmaker,
            tenant,
            loyalty.reverse_for_return,
            customer_id=ana,
            reference="order:1",
            returned_amount=amount,
            order_amount=total,
            idempotency_key=key,
        )

    # Lines refunded at full price (10 000) on an order whose total was 9 000 after points.
    assert await returned(10_000, 9_000, "return:1") == 90
    assert await returned(0, 0, "return:free") == 0
    with pytest.raises(Invalid) as refused:
        await returned(-1, 9_000, "return:bad")
    assert refused.value.field == "returned_amount"
    assert await ledger(sessionmaker, tenant, ana) == [90, -90]


# --- tiers and routing ------------------------------------------------------------------------


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    manual = ManualClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def test_a_customer_reaching_gold_is_routed_ahead(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: Sessions,
    manual_clock: ManualClock,
) -> None:
    await put_program(client, tenant)
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    regular = (await identify(client, tenant, ("whatsapp", "+34600200301")))["customer_id"]
    loyal = (await identify(client, tenant, ("whatsapp", "+34600200302")))["customer_id"]

    assert await earn(sessionmaker, tenant, loyal, amount=15_000, reference="order:1") == 150
    assert await earn(sessionmaker, tenant, loyal, amount=40_000, reference="order:2") == 400
    view = await points_of(client, tenant, loyal)
    assert (view["tier"], view["tier_name"], view["next_tier"]) == ("gold", "Oro", None)
    customer = (await client.get(f"/v1/customers/{loyal}", headers=tenant.headers)).json()
    assert customer["traits"]["tier"] == "gold"
    assert [
        (e["customer_id"], e["tier"], e["previous_tier"])
        for e in await events(sessionmaker, tenant, "loyalty.tier_changed")
    ] == [(loyal, "silver", None), (loyal, "gold", "silver")]

    # The regular customer writes first; the gold one half a minute later, and goes first.
    first = await inbound(
        client, tenant, channel_id=channel, external_id="w1", kind="whatsapp", value="+34600200301"
    )
    manual_clock.advance(seconds=30)
    second = await inbound(
        client, tenant, channel_id=channel, external_id="w2", kind="whatsapp", value="+34600200302"
    )
    waiting, gold = first.json()["conversation_id"], second.json()["conversation_id"]
    await app.state.worker.run_once()
    ana = await create_agent(client, tenant, "ana@tienda.es", capacity={"whatsapp": 1})
    assert [o["conversation_id"] for o in await offers(client, tenant, agent_id=ana)] == [gold]
    assert (await routing_log(client, tenant, gold))[0]["details"]["priority"] == 4
    assert (await routing_log(client, tenant, waiting))[0]["details"]["priority"] == 0
    assert queue["id"]

    # Returning most of it drops the customer back to silver, and their trait with it.
    reversed_points = await in_session(
        sessionmaker,
        tenant,
        loyalty.reverse_for_return,
        customer_id=loyal,
        reference="order:2",
        returned_amount=40_000,
        order_amount=40_000,
        idempotency_key="return:2",
    )
    assert reversed_points == 400
    customer = (await client.get(f"/v1/customers/{loyal}", headers=tenant.headers)).json()
    assert customer["traits"]["tier"] == "silver"
    assert customer["loyalty"]["tier"] == "silver"
    assert regular != loyal


async def test_the_360_shows_the_balance_and_the_timeline_the_movements(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    await earn(sessionmaker, tenant, ana, amount=12_000, reference="order:1")
    view = (await client.get(f"/v1/customers/{ana}", headers=tenant.headers)).json()
    assert view["loyalty"] == {
        "balance": 120,
        "lifetime_earned": 120,
        "tier": "silver",
        "tier_name": "Plata",
        "next_tier": "gold",
        "next_tier_name": "Oro",
        "points_to_next_tier": 380,
    }
    entries = [(i["type"], i["name"]) for i in view["timeline"] if i["type"] == "loyalty"]
    assert sorted(entries) == [("loyalty", "earn"), ("loyalty", "tier_changed")]
    earned = next(i for i in view["timeline"] if i["name"] == "earn")
    assert earned["properties"]["points"] == 120
    assert earned["properties"]["reference"] == "order:1"
    # A customer with no points yet is a member at zero.
    bruno = await new_customer(client, tenant, "bruno@example.es")
    view = (await client.get(f"/v1/customers/{bruno}", headers=tenant.headers)).json()
    assert view["loyalty"]["balance"] == 0
    assert view["loyalty"]["points_to_next_tier"] == 100


# --- merges and tenants -----------------------------------------------------------------------


async def test_a_merge_moves_the_balance_and_an_unmerge_puts_it_back(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    web = await new_customer(client, tenant, "ana@example.es")
    store = (await identify(client, tenant, ("phone", "+34600300400")))["customer_id"]
    await earn(sessionmaker, tenant, web, amount=30_000, reference="order:1")
    await earn(sessionmaker, tenant, store, amount=25_000, reference="order:2")
    assert (await points_of(client, tenant, store))["tier"] == "silver"

    merged = await identify(client, tenant, ("email", "ana@example.es"), ("phone", "+34600300400"))
    assert merged["customer_id"] == web
    assert merged["merged_customer_ids"] == [store]
    view = await points_of(client, tenant, web)
    assert (view["balance"], view["lifetime_earned"], view["tier"]) == (550, 550, "gold")
    assert sorted(m["points"] for m in view["movements"]) == [250, 300]
    # The merged customer's id leads to the survivor's points.
    assert (await points_of(client, tenant, store))["customer_id"] == web
    survivor = (await client.get(f"/v1/customers/{web}", headers=tenant.headers)).json()
    assert survivor["traits"]["tier"] == "gold"
    # Spending after the merge uses the points of both.
    assert (await move(client, tenant, web, "redeem", points=500)).status_code == 201

    response = await client.post(f"/v1/customers/{web}/unmerge", headers=tenant.headers)
    assert response.status_code == 200, response.text
    view = await points_of(client, tenant, web)
    assert (view["balance"], view["lifetime_earned"], view["tier"]) == (-200, 300, "silver")
    view = await points_of(client, tenant, store)
    assert (view["customer_id"], view["balance"], view["tier"]) == (store, 250, "silver")
    assert sum(await ledger(sessionmaker, tenant, web)) == -200
    assert sum(await ledger(sessionmaker, tenant, store)) == 250


async def test_another_tenants_customer_is_not_found(
    client: httpx.AsyncClient, make_tenant: Any, sessionmaker: Sessions
) -> None:
    ours: TenantHandle = await make_tenant()
    theirs: TenantHandle = await make_tenant("Otra tienda")
    await put_program(client, ours)
    await put_program(client, theirs)
    ana = await new_customer(client, ours, "ana@example.es")
    await move(client, ours, ana, "earn", points=100)

    response = await client.get(f"/v1/customers/{ana}/loyalty", headers=theirs.headers)
    assert response.status_code == 404
    response = await move(client, theirs, ana, "redeem", points=50)
    assert response.status_code == 404
    response = await move(client, ours, "0" * 32, "earn", points=5)
    assert response.status_code == 404
    with pytest.raises(NotFound):
        await earn(sessionmaker, theirs, ana, amount=10_000)
    assert (await points_of(client, ours, ana))["balance"] == 100
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(LoyaltyMovement.tenant_id == theirs.id)
        )
    assert count == 0


async def test_adjustments_need_a_reason_and_a_supervisor(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions
) -> None:
    await put_program(client, tenant)
    ana = await new_customer(client, tenant, "ana@example.es")
    response = await move(client, tenant, ana, "adjust", points=30)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "reason"
    agent_key = await client.post(
        "/v1/api-keys", json={"name": "tienda", "role": "agent"}, headers=tenant.headers
    )
    assert agent_key.status_code == 201, agent_key.text
    agent = TenantHandle(id=tenant.id, key=agent_key.json()["key"], context=tenant.context)
    refused = await move(client, agent, ana, "adjust", points=30, reason="Compensación")
    assert refused.status_code == 403
    given = await move(client, tenant, ana, "adjust", points=30, reason="Compensación")
    assert given.status_code == 201
    # A negative adjustment spends, so it needs the points.
    taken = await move(client, tenant, ana, "adjust", points=-40, reason="Error de caja")
    assert taken.status_code == 409
    assert await ledger(sessionmaker, tenant, ana) == [30]
    view = await points_of(client, tenant, ana)
    # Adjustments do not count toward tiers.
    assert (view["balance"], view["lifetime_earned"]) == (30, 0)

"""KPIs on hand-made data whose answers are known: each figure of ``GET /v1/kpis``, its filters,
nulls when there is nothing to count, bad input refused with a 4xx that names it, and a
bounded number of queries whatever the amount of data.

Most tests write the rows a month of business would have left (conversations, messages, SLA
clocks, carts, orders, survey answers, page views) with the times they need, straight through
the ORM; one goes through the public API end to end, so the KPIs are also checked against data
the product itself wrote. Every time is in March 2026 unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.analytics import kpis
from hilos.analytics.survey_models import SurveyResponse
from hilos.channels.models import Channel
from hilos.commerce.cart_models import Cart
from hilos.commerce.models import Location
from hilos.commerce.order_models import Order, OrderLine
from hilos.conversations.models import Conversation, Message
from hilos.core import clock
from hilos.core.ids import new_id
from hilos.core.models import User
from hilos.customers.models import Customer, TimelineEvent
from hilos.routing.models import RoutedConversation, RoutingQueue
from hilos.routing.sla_models import ConversationSla
from tests.commerce.orders_helpers import product, receive
from tests.conftest import TenantHandle, add_channel, inbound

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0, *, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


async def get_kpis(
    client: httpx.AsyncClient, tenant: TenantHandle, **params: str
) -> dict[str, Any]:
    response = await client.get("/v1/kpis", params={**MARCH, **params}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Shop:
    """Rows of one tenant, written as the product would have written them."""

    session: AsyncSession
    tenant: TenantHandle
    channels: dict[str, str] = field(default_factory=dict)

    @property
    def tenant_id(self) -> str:
        return self.tenant.id

    async def channel(self, kind: str) -> str:
        if kind not in self.channels:
            row = Channel(id=new_id(), tenant_id=self.tenant_id, kind=kind, name=kind, config={})
            self.session.add(row)
            await self.session.flush()
            self.channels[kind] = row.id
        return self.channels[kind]

    async def customer(self, name: str = "Cliente") -> str:
        row = Customer(id=new_id(), tenant_id=self.tenant_id, name=name, traits={})
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def user(self) -> str:
        row = User(
            id=new_id(),
            tenant_id=self.tenant_id,
            email=f"{new_id()}@tienda.es",
            name="Agente",
            role="agent",
            password_hash="-",
        )
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def queue(self, name: str) -> str:
        row = RoutingQueue(id=new_id(), tenant_id=self.tenant_id, name=name)
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def conversation(
        self,
        customer_id: str,
        *,
        created: datetime,
        kind: str = "whatsapp",
        status: str = "open",
        resolved: datetime | None = None,
        assignee_id: str | None = None,
        queue_id: str | None = None,
    ) -> str:
        channel_id = await self.channel(kind)
        row = Conversation(
            id=new_id(),
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            status=status,
            channel_ids=[channel_id],
            last_channel_id=channel_id,
            created_at=created,
            updated_at=created,
            last_message_at=created,
            resolved_at=resolved,
            assignee_id=assignee_id,
        )
        self.session.add(row)
        await self.session.flush()
        if queue_id is not None:
            self.session.add(
                RoutedConversation(
                    conversation_id=row.id,
                    tenant_id=self.tenant_id,
                    queue_id=queue_id,
                    state="done",
                )
            )
            await self.session.flush()
        return row.id

    async def message(
        self,
        conversation_id: str,
        sent: datetime,
        *,
        direction: str = "inbound",
        kind: str = "message",
        channel: str = "whatsapp",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.session.add(
            Message(
                id=new_id(),
                tenant_id=self.tenant_id,
                conversation_id=conversation_id,
                channel_id=await self.channel(channel),
                direction=direction,
                kind=kind,
                text="hola",
                data=data,
                status="received" if direction == "inbound" else "sent",
                sent_at=sent,
                created_at=sent,
            )
        )
        await self.session.flush()

    async def exchange(
        self, customer_id: str, start: datetime, *replies_after: float, **options: Any
    ) -> str:
        """A conversation opened by the customer at ``start``; for each delay (seconds) an agent
        reply that long after the customer's latest message, and the customer writes again
        ten minutes after every reply but the last."""
        conversation_id = await self.conversation(customer_id, created=start, **options)
        moment = start
        await self.message(conversation_id, moment)
        for index, delay in enumerate(replies_after):
            moment += timedelta(seconds=delay)
            await self.message(conversation_id, moment, direction="outbound")
            if index < len(replies_after) - 1:
                moment += timedelta(minutes=10)
                await self.message(conversation_id, moment)
        return conversation_id

    async def answer(
        self,
        kind: str,
        score: int,
        answered: datetime,
        *,
        channel: str = "whatsapp",
        agent_id: str | None = None,
        queue_id: str | None = None,
    ) -> None:
        self.session.add(
            SurveyResponse(
                id=new_id(),
                tenant_id=self.tenant_id,
                customer_id=await self.customer(),
                kind=kind,
                score=score,
                channel=channel,
                agent_id=agent_id,
                queue_id=queue_id,
                source="api",
                dedupe_key=new_id(),
                answered_at=answered,
                created_at=answered,
            )
        )
        await self.session.flush()

    async def order(
        self,
        customer_id: str,
        placed: datetime,
        total: int,
        *,
        channel: str = "web",
        currency: str = "EUR",
        status: str = "placed",
        pickup_at: str | None = None,
        placed_by: str | None = None,
    ) -> str:
        row = Order(
            id=new_id(),
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            channel=channel,
            status=status,
            currency=currency,
            subtotal=total,
            discount=0,
            total=total,
            loyalty_points_redeemed=0,
            idempotency_key=new_id(),
            request_digest="-",
            sourcing={},
            placed_by_user_id=placed_by,
            created_at=placed,
            updated_at=placed,
        )
        self.session.add(row)
        self.session.add(
            OrderLine(
                id=new_id(),
                tenant_id=self.tenant_id,
                order_id=row.id,
                position=1,
                variant_id=new_id(),
                sku="SKU-1",
                name="Zapatilla",
                quantity=1,
                unit_price=total,
                fulfilment="pickup" if pickup_at else "ship",
                source_location_id=pickup_at or new_id(),
                source_location="ALM",
                pickup_location_id=pickup_at,
                pickup_location="MAD01" if pickup_at else None,
                status="reserved",
                returned_quantity=0,
            )
        )
        await self.session.flush()
        return row.id

    async def cart(
        self, customer_id: str, created: datetime, *, channel: str = "web", converted: bool
    ) -> None:
        self.session.add(
            Cart(
                id=new_id(),
                tenant_id=self.tenant_id,
                customer_id=customer_id,
                status="converted" if converted else "abandoned",
                channel=channel,
                line_count=1,
                version=1,
                created_at=created,
                updated_at=created,
                converted_at=created + timedelta(minutes=5) if converted else None,
            )
        )
        await self.session.flush()

    async def visit(self, customer_id: str, when: datetime, *, type: str = "page") -> None:
        self.session.add(
            TimelineEvent(
                id=new_id(),
                tenant_id=self.tenant_id,
                customer_id=customer_id,
                type=type,
                name="Inicio",
                properties={},
                context={},
                occurred_at=when,
                received_at=when,
            )
        )
        await self.session.flush()

    async def store(self, code: str) -> str:
        row = Location(
            id=new_id(), tenant_id=self.tenant_id, code=code, name=code, kind="store", pickup=True
        )
        self.session.add(row)
        await self.session.flush()
        return row.id


@pytest.fixture
async def shop(sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle) -> Any:
    """A ``Shop`` whose rows are committed when the test's block ends."""

    class Opener:
        def __init__(self) -> None:
            self.session: AsyncSession | None = None

        async def __aenter__(self) -> Shop:
            self.session = sessionmaker()
            await self.session.begin()
            return Shop(session=self.session, tenant=tenant)

        async def __aexit__(self, *exc: object) -> None:
            assert self.session is not None
            await self.session.commit()
            await self.session.close()

    return Opener()


# --- surveys ------------------------------------------------------------------------------------


async def test_nps_csat_and_ces_from_known_answers(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any, make_tenant: Any
) -> None:
    async with shop as s:
        # 5 promoters, 3 passives, 2 detractors: (5 - 2) / 10 = 30.
        for score in (9, 10, 9, 10, 9, 7, 8, 7, 3, 6):
            await s.answer("nps", score, at(5))
        await s.answer("nps", 0, at(5, month=4))  # after the range
        for score in (5, 4, 3, 5):
            await s.answer("csat", score, at(6), channel="email")
        for score in (2, 6, 7):
            await s.answer("ces", score, at(7))
    other = await make_tenant()
    body = await get_kpis(client, tenant)
    assert body["nps"] == 30
    assert body["surveys"]["nps"] == {
        "score": 30,
        "answers": 10,
        "promoters": 5,
        "passives": 3,
        "detractors": 2,
    }
    assert body["csat"] == 75.0
    assert body["ces"] == 5.0
    # By channel: the CSAT answers came by email, the NPS and CES ones by WhatsApp.
    email = await get_kpis(client, tenant, channel="email")
    assert (email["nps"], email["csat"], email["ces"]) == (None, 75.0, None)
    # Another tenant sees nothing of it.
    empty = await get_kpis(client, other)
    assert (empty["nps"], empty["csat"], empty["ces"]) == (None, None, None)
    assert empty["surveys"]["nps"]["answers"] == 0


async def test_survey_scores_by_agent_and_queue(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        lucia, pablo = await s.user(), await s.user()
        returns = await s.queue("Devoluciones")
        for score in (10, 10):
            await s.answer("nps", score, at(3), agent_id=lucia, queue_id=returns)
        await s.answer("nps", 2, at(3), agent_id=pablo)
    assert (await get_kpis(client, tenant))["nps"] == 33
    assert (await get_kpis(client, tenant, agent=lucia))["nps"] == 100
    assert (await get_kpis(client, tenant, agent=pablo))["nps"] == -100
    assert (await get_kpis(client, tenant, queue=returns))["nps"] == 100


# --- response and resolution times -------------------------------------------------------------


async def test_first_and_next_response_median_and_p90(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        for delay in (60, 120, 180, 240):
            await s.exchange(await s.customer(), at(2), delay)
        # The fifth also gets two more turns, answered after 30 s and 90 s.
        await s.exchange(await s.customer(), at(3), 600, 30, 90)
        # A customer still waiting: a turn without a reply has no duration.
        waiting = await s.conversation(await s.customer(), created=at(4))
        await s.message(waiting, at(4))
        # An automated notice (an order's status) and a private note answer nobody.
        noticed = await s.conversation(await s.customer(), created=at(5))
        await s.message(noticed, at(5))
        await s.message(noticed, at(5, 10, 1), direction="outbound", data={"automated": {}})
        await s.message(noticed, at(5, 10, 2), direction="note")
        await s.message(noticed, at(5, 11), direction="outbound")
        # Before the range: not counted.
        await s.exchange(await s.customer(), at(20, month=2), 5)
    body = await get_kpis(client, tenant)
    first = body["first_response_seconds"]
    # 60, 120, 180, 240, 600 and 3 600: the median is between 180 and 240; p90 at rank 4.5.
    assert first["count"] == 6
    assert first["median"] == 210.0
    assert first["p90"] == 2100.0
    assert first["unanswered"] == 1
    # Without business hours, business time is clock time.
    assert first["business_hours"] == {"median": 210.0, "p90": 2100.0}
    following = body["next_response_seconds"]
    assert (following["count"], following["median"], following["p90"]) == (2, 60.0, 84.0)


async def test_response_times_in_business_hours(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    response = await client.put(
        "/v1/business-hours",
        json={
            "timezone": "Europe/Madrid",
            "weekly": {day: [["09:00", "19:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    async with shop as s:
        # Friday 6 March 18:00 in Madrid (17:00 UTC), answered Monday 10:00 (09:00 UTC): one
        # open hour on Friday and one on Monday.
        weekend = await s.conversation(await s.customer(), created=at(6, 17))
        await s.message(weekend, at(6, 17))
        await s.message(weekend, at(9, 9), direction="outbound")
    first = (await get_kpis(client, tenant))["first_response_seconds"]
    assert first["median"] == (at(9, 9) - at(6, 17)).total_seconds()
    assert first["business_hours"] == {"median": 7200.0, "p90": 7200.0}


async def test_resolution_time_backlog_and_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        for hours, kind in ((1, "whatsapp"), (2, "whatsapp"), (3, "email"), (10, "email")):
            await s.conversation(
                await s.customer(),
                created=at(10),
                kind=kind,
                status="resolved",
                resolved=at(10) + timedelta(hours=hours),
            )
        # Open at the end of March: two still open, one resolved only in April.
        await s.conversation(await s.customer(), created=at(12))
        await s.conversation(await s.customer(), created=at(30), status="pending")
        await s.conversation(
            await s.customer(), created=at(31), status="resolved", resolved=at(2, month=4)
        )
        # Opened after the range: not in its backlog.
        await s.conversation(await s.customer(), created=at(3, month=4))
    body = await get_kpis(client, tenant)
    resolution = body["resolution_seconds"]
    assert resolution["count"] == 4
    assert resolution["median"] == 2.5 * 3600
    assert resolution["p90"] == 28440.0  # 3 h + 0.7 of the way to 10 h
    assert body["backlog"] == 3
    # By the channel the conversation ended on.
    email = await get_kpis(client, tenant, channel="email")
    assert email["resolution_seconds"]["median"] == 6.5 * 3600
    assert email["backlog"] == 0


async def test_sla_attainment_three_of_four_targets_met(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        for replied_after, breached in ((5, False), (10, False), (14, False), (40, True)):
            conversation_id = await s.conversation(await s.customer(), created=at(8))
            s.session.add(
                ConversationSla(
                    conversation_id=conversation_id,
                    tenant_id=s.tenant_id,
                    channel_kind="whatsapp",
                    first_response_seconds=900,
                    started_at=at(8),
                    first_response_due_at=at(8, 10, 15),
                    first_responded_at=at(8, 10, replied_after),
                    first_response_breached=breached,
                    breached=breached,
                    awaiting_reply=False,
                )
            )
        # Due in April: not decided within March.
        later = await s.conversation(await s.customer(), created=at(31, 23))
        s.session.add(
            ConversationSla(
                conversation_id=later,
                tenant_id=s.tenant_id,
                started_at=at(31, 23),
                first_response_due_at=at(1, 1, month=4),
            )
        )
    body = await get_kpis(client, tenant)
    assert body["sla_attainment"] == 0.75
    assert body["sla"]["met"] == 3
    assert body["sla"]["missed"] == 1
    assert body["sla"]["first_response"] == 0.75
    assert body["sla"]["resolution"] is None


async def test_repeat_contacts_within_seven_days(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        customers = [await s.customer() for _ in range(4)]
        for customer_id in customers:
            await s.conversation(customer_id, created=at(2), status="resolved", resolved=at(3))
        # The first writes again two days later, by email (a new conversation).
        again = await s.conversation(customers[0], created=at(5), kind="email")
        await s.message(again, at(5), channel="email")
        # The second calls the next day.
        call = await s.conversation(customers[1], created=at(4), kind="phone")
        await s.message(call, at(4), kind="call", channel="phone", data={"status": "ended"})
        # The third writes again after ten days: not a repeat.
        late = await s.conversation(customers[2], created=at(13))
        await s.message(late, at(13))
    body = await get_kpis(client, tenant)
    assert body["repeat_contact_rate"] == 0.5
    assert body["repeat_contacts"] == {"rate": 0.5, "resolved": 4, "repeated": 2}


async def test_channel_switches_per_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        hopping = await s.conversation(await s.customer(), created=at(4, 9))
        for hour, kind in ((9, "whatsapp"), (10, "email"), (11, "email"), (12, "whatsapp")):
            await s.message(hopping, at(4, hour), channel=kind)
        steady = await s.conversation(await s.customer(), created=at(4))
        await s.message(steady, at(4), channel="whatsapp")
    body = await get_kpis(client, tenant)
    assert body["channel_switches_per_conversation"] == 1.0
    assert body["channel_switches"] == {"per_conversation": 1.0, "conversations": 2, "switches": 2}


async def test_filters_by_agent_and_queue(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        lucia, pablo = await s.user(), await s.user()
        returns = await s.queue("Devoluciones")
        await s.exchange(await s.customer(), at(2), 60, assignee_id=lucia, queue_id=returns)
        await s.exchange(await s.customer(), at(2), 120, assignee_id=lucia)
        await s.exchange(await s.customer(), at(2), 600, assignee_id=pablo)
    assert (await get_kpis(client, tenant))["first_response_seconds"]["count"] == 3
    mine = await get_kpis(client, tenant, agent=lucia)
    assert mine["first_response_seconds"]["median"] == 90.0
    assert mine["filters"] == {"agent": lucia}
    queued = await get_kpis(client, tenant, queue=returns)
    assert queued["first_response_seconds"]["median"] == 60.0
    # A queue says nothing of prices or stock: those figures say they are unfiltered.
    assert queued["unfiltered"]["price_parity_score"] == ["queue"]
    assert "first_response_seconds" not in queued["unfiltered"]


# --- calls --------------------------------------------------------------------------------------


async def test_average_handle_time_and_missed_call_rate(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        conversation_id = await s.conversation(await s.customer(), created=at(2), kind="phone")
        calls = (
            ("inbound", {"status": "ended", "duration_seconds": 100}),
            ("inbound", {"status": "ended", "duration_seconds": 200}),
            ("outbound", {"status": "ended", "duration_seconds": 300}),
            ("inbound", {"status": "missed"}),
            ("inbound", {"status": "voicemail"}),
            ("inbound", {"status": "ringing"}),  # still ringing: not finished
        )
        for direction, data in calls:
            await s.message(
                conversation_id, at(2), direction=direction, kind="call", channel="phone", data=data
            )
    body = await get_kpis(client, tenant)
    assert body["average_handle_time_seconds"] == 200.0
    assert body["missed_call_rate"] == 0.5
    assert body["calls"]["incoming"] == 4
    assert (await get_kpis(client, tenant, channel="whatsapp"))["missed_call_rate"] is None


# --- commerce -----------------------------------------------------------------------------------


async def test_cart_and_session_conversion(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        buyers = [await s.customer() for _ in range(5)]
        for index, customer_id in enumerate(buyers):
            await s.cart(customer_id, at(10 + index), converted=index < 2)
        await s.cart(await s.customer(), at(11), channel="app", converted=True)
        await s.cart(await s.customer(), at(11, month=4), converted=True)  # after the range
        # Sessions: four customer-days on the web, one in the app; two of them ordered.
        for customer_id in buyers[:3]:
            await s.visit(customer_id, at(15, 9))
            await s.visit(customer_id, at(15, 9, 5))  # the same session
        await s.visit(buyers[0], at(16, 9))
        await s.visit(buyers[3], at(15), type="screen")
        await s.order(buyers[0], at(15, 12), 1000)
        await s.order(buyers[1], at(15, 20), 1000, channel="app")
    body = await get_kpis(client, tenant)
    assert body["conversion_rate"] == 0.5  # 3 of 6
    web = await get_kpis(client, tenant, channel="web")
    assert web["conversion_rate"] == 0.4  # 2 carts of 5
    carts = {row["channel"]: row for row in body["conversion"]["carts"]["by_channel"]}
    assert carts["web"] == {"channel": "web", "carts": 5, "converted": 2, "rate": 0.4}
    assert carts["app"]["rate"] == 1.0
    sessions = body["conversion"]["sessions"]
    assert (sessions["sessions"], sessions["converted"], sessions["rate"]) == (5, 2, 0.4)
    assert web["conversion"]["sessions"]["sessions"] == 4


async def test_average_order_value_and_bopis_share(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        madrid = await s.store("MAD01")
        customer_id = await s.customer()
        await s.order(customer_id, at(3), 1000)
        await s.order(customer_id, at(4), 2000, pickup_at=madrid)
        await s.order(customer_id, at(5), 3000, channel="store:MAD01")
        await s.order(customer_id, at(6), 4000, channel="app")
        await s.order(customer_id, at(7), 9999, status="cancelled")
        await s.order(customer_id, at(8), 5000, currency="USD")
    body = await get_kpis(client, tenant)
    assert body["average_order_value"] == {
        "EUR": {"amount": 2500, "orders": 4, "revenue": 10000},
        "USD": {"amount": 5000, "orders": 1, "revenue": 5000},
    }
    assert body["bopis_share"] == 0.2
    # A store's orders: sold at its till or collected there.
    store = await get_kpis(client, tenant, store="MAD01")
    assert store["average_order_value"] == {"EUR": {"amount": 2500, "orders": 2, "revenue": 5000}}
    assert store["bopis_share"] == 0.5
    app = await get_kpis(client, tenant, channel="app")
    assert app["average_order_value"]["EUR"]["amount"] == 4000


async def test_monthly_cohorts_retention_and_churn(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        january = [await s.customer() for _ in range(4)]
        for customer_id in january:
            await s.order(customer_id, at(10, month=1), 1000)
        # Two of January's customers come back in February, one of them again in March.
        await s.order(january[0], at(5, month=2), 1000)
        await s.order(january[1], at(6, month=2), 1000)
        await s.order(january[0], at(7), 1000)
        february = [await s.customer() for _ in range(2)]
        for customer_id in february:
            await s.order(customer_id, at(20, month=2), 1000)
        await s.order(february[0], at(2), 1000)
        # An older customer (December) is in no cohort of the range.
        await s.order(await s.customer(), at(1, month=12) - timedelta(days=365), 1000)
    body = await get_kpis(client, tenant, **{"from": "2026-01-01", "to": "2026-03-31"})
    assert body["retention"] == [
        {"cohort": "2026-01", "customers": 4, "retention": [1.0, 0.5, 0.25]},
        {"cohort": "2026-02", "customers": 2, "retention": [1.0, 0.5]},
    ]
    # March against the 31 days before it (29 Jan - 28 Feb): January's two returning customers
    # and February's two bought then; in March January[0] and February[0] came back.
    march = await get_kpis(client, tenant)
    assert march["churn"] == {"rate": 0.5, "customers": 4, "churned": 2}
    assert march["churn_rate"] == 0.5
    # Historic CLV: what each customer has spent so far, on average.
    # Eleven orders of 10.00 by seven customers.
    assert march["clv"]["historic"] == {"EUR": {"average": 1571, "customers": 7}}


async def test_multichannel_customer_share(
    client: httpx.AsyncClient, tenant: TenantHandle, shop: Any
) -> None:
    async with shop as s:
        both = await s.customer("WhatsApp y web")
        conversation_id = await s.conversation(both, created=at(3))
        await s.message(conversation_id, at(3))
        await s.order(both, at(4), 1000)
        browser = await s.customer("Web y tienda")
        await s.visit(browser, at(5))
        await s.order(browser, at(5), 1000, channel="store:MAD01")
        only_email = await s.customer("Solo email")
        conversation_id = await s.conversation(only_email, created=at(6), kind="email")
        await s.message(conversation_id, at(6), channel="email")
        loyal = await s.customer("Solo WhatsApp")
        conversation_id = await s.conversation(loyal, created=at(7))
        await s.message(conversation_id, at(7))
        await s.message(conversation_id, at(8))
    body = await get_kpis(client, tenant)
    assert body["multichannel_customer_share"] == 0.5
    assert body["multichannel"] == {"share": 0.5, "customers": 4, "multichannel": 2}
    # Of the customers who used WhatsApp, one of two also used another channel.
    assert (await get_kpis(client, tenant, channel="whatsapp"))[
        "multichannel_customer_share"
    ] == 0.5
    assert (await get_kpis(client, tenant, channel="email"))["multichannel_customer_share"] == 0.0


async def test_price_parity_and_stock_out_rate(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for code in ("ALM", "MAD01"):
        response = await client.post(
            "/v1/locations",
            json={"code": code, "name": code, "kind": "warehouse" if code == "ALM" else "store"},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text
    await product(client, tenant, "IGUAL", prices={"web": 1000, "app": 1000})
    await product(client, tenant, "CARO", prices={"web": 1000, "app": 1100})
    await product(client, tenant, "SOLO", prices={"web": 1000})
    await receive(client, tenant, "IGUAL", "ALM", 5)
    await receive(client, tenant, "CARO", "ALM", 5)
    await receive(client, tenant, "IGUAL", "MAD01", 2)
    sold = await client.post(
        "/v1/stock/movements",
        json={
            "sku": "IGUAL",
            "location": "MAD01",
            "quantity": -2,
            "reason": "sale",
            "idempotency_key": "venta-1",
        },
        headers=tenant.headers,
    )
    assert sold.status_code in (200, 201), sold.text
    today = datetime.now(UTC).date()
    span = {"from": (today - timedelta(days=7)).isoformat(), "to": today.isoformat()}
    body = await get_kpis(client, tenant, **span)
    # Two SKUs are priced in two channels; CARO's app price is 10 % above the web's.
    assert body["price_parity_score"] == 0.5
    assert body["price_parity"]["comparable"] == 2
    # Three SKU-location pairs hold or held stock; IGUAL sold out at MAD01.
    assert body["stock_out_rate"] == round(1 / 3, 4)
    assert (await get_kpis(client, tenant, store="MAD01", **span))["stock_out_rate"] == 1.0


# --- nulls, bad input, the query count, the product's own data ---------------------------------


async def test_a_tenant_without_data_gets_nulls_not_zeros(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = await get_kpis(client, tenant)
    for name in (
        "nps",
        "csat",
        "ces",
        "sla_attainment",
        "conversion_rate",
        "multichannel_customer_share",
        "repeat_contact_rate",
        "average_handle_time_seconds",
        "missed_call_rate",
        "average_order_value",
        "bopis_share",
        "churn_rate",
        "channel_switches_per_conversation",
        "price_parity_score",
        "stock_out_rate",
    ):
        assert body[name] is None, name
    assert body["first_response_seconds"]["median"] is None
    assert body["first_response_seconds"]["p90"] is None
    assert body["resolution_seconds"]["count"] == 0
    assert body["backlog"] == 0
    assert body["retention"] == []
    assert body["clv"] == {"historic": None, "predicted": None}
    assert body["from"] == "2026-03-01T00:00:00+00:00"
    assert body["to"] == "2026-04-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"from": "2026-03-31", "to": "2026-03-01"}, 422, "invalid_range", "from"),
        (
            {"from": "2026-03-01T10:00:00Z", "to": "2026-03-01T10:00:00Z"},
            422,
            "invalid_range",
            "from",
        ),
        ({"from": "2025-01-01", "to": "2026-03-01"}, 422, "range_too_long", "to"),
        ({"from": "1 de marzo"}, 422, "invalid", "from"),
        ({"chanel": "whatsapp"}, 422, "unknown_parameter", "chanel"),
        ({"channel": "paloma_mensajera"}, 422, "unknown_channel", "channel"),
        ({"channel": "0" * 32}, 404, "not_found", "channel"),
        ({"channel": "store:NADA"}, 404, "unknown_location", "channel"),
        ({"store": "NADA"}, 404, "unknown_location", "store"),
        ({"queue": "0" * 32}, 404, "not_found", "queue"),
        ({"agent": "0" * 32}, 404, "not_found", "agent"),
    ],
)
async def test_bad_input_is_a_4xx_that_names_it(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    params: dict[str, str],
    status: int,
    code: str,
    field: str,
) -> None:
    query = {**MARCH, **params} if "from" not in params else params
    response = await client.get("/v1/kpis", params=query, headers=tenant.headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]


async def test_another_tenants_queue_agent_and_channel_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, sessionmaker: Any
) -> None:
    other = await make_tenant()
    channel_id = await add_channel(client, other, "whatsapp")
    async with sessionmaker() as session, session.begin():
        theirs = Shop(session=session, tenant=other)
        queue_id, agent_id = await theirs.queue("Suya"), await theirs.user()
    for name, value in (("channel", channel_id), ("queue", queue_id), ("agent", agent_id)):
        response = await client.get(
            "/v1/kpis", params={**MARCH, name: value}, headers=tenant.headers
        )
        assert response.status_code == 404, (name, response.text)
        assert response.json()["error"]["field"] == name
    response = await client.get("/v1/kpis", params={"channel": channel_id}, headers=other.headers)
    assert response.status_code == 200


async def test_a_date_range_defaults_to_the_last_thirty_days(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    clock.set_now(lambda: at(15, 12))
    try:
        response = await client.get("/v1/kpis", headers=tenant.headers)
    finally:
        clock.set_now(None)
    assert response.status_code == 200, response.text
    assert (response.json()["from"], response.json()["to"]) == (
        "2026-02-14T00:00:00+00:00",
        "2026-03-16T00:00:00+00:00",
    )


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_the_number_of_queries_does_not_grow_with_the_data(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    shop: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    statements: list[str],
) -> None:
    async def count_queries() -> int:
        statements.clear()
        async with sessionmaker() as session:
            filters = await kpis.resolve_filters(
                session, tenant.context, start=at(1), end=at(31) + timedelta(days=1)
            )
            await kpis.compute(session, tenant.context, filters)
        return len(statements)

    async with shop as s:
        customer_id = await s.customer()
        await s.exchange(customer_id, at(2), 60, 30)
        await s.order(customer_id, at(2), 1000)
    few = await count_queries()
    async with shop as s:
        for day in range(3, 28):
            customer_id = await s.customer()
            await s.exchange(customer_id, at(day), 60, 30, 20)
            await s.order(customer_id, at(day), 1000)
            await s.cart(customer_id, at(day), converted=True)
            await s.answer("nps", day % 11, at(day))
    many = await count_queries()
    assert few == many
    assert many <= 25


async def test_kpis_of_conversations_the_product_itself_recorded(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    """Inbound messages, replies, an automated notice and a resolution through the API."""
    channel_id = await add_channel(client, tenant, "whatsapp")
    moments = iter([at(9, 10), at(9, 10, 2), at(9, 10, 3), at(9, 10, 10), at(9, 10, 11)])
    clock.set_now(lambda: current)
    try:
        current = next(moments)
        received = await inbound(
            client,
            tenant,
            channel_id=channel_id,
            external_id="wamid.1",
            kind="whatsapp",
            value="+34600111222",
            text="¿Dónde está mi pedido?",
        )
        assert received.status_code in (200, 201), received.text
        conversation_id = received.json()["conversation_id"]
        current = next(moments)
        replied = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Sale hoy mismo"},
            headers=tenant.headers,
        )
        assert replied.status_code == 201, replied.text
        current = next(moments)
        again = await inbound(
            client,
            tenant,
            channel_id=channel_id,
            external_id="wamid.2",
            kind="whatsapp",
            value="+34600111222",
            text="Gracias, ¿y la factura?",
        )
        assert again.status_code in (200, 201), again.text
        current = next(moments)
        replied = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Adjunta en el correo"},
            headers=tenant.headers,
        )
        assert replied.status_code == 201, replied.text
        current = next(moments)
        resolved = await client.patch(
            f"/v1/conversations/{conversation_id}",
            json={"status": "resolved"},
            headers=tenant.headers,
        )
        assert resolved.status_code == 200, resolved.text
    finally:
        clock.set_now(None)
    body = await get_kpis(client, tenant)
    assert body["first_response_seconds"]["median"] == 120.0
    assert body["next_response_seconds"]["median"] == 420.0
    assert body["resolution_seconds"]["median"] == 660.0
    assert body["backlog"] == 0
    assert (await get_kpis(client, tenant, channel=channel_id))["first_response_seconds"][
        "count"
    ] == 1

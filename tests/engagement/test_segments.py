"""Segments: every kind of condition, combined; live counts and pages of members; the refresh
that announces who entered and who left exactly once; bad rules refused with the path of the
mistake; another tenant's segments invisible."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hilos.core import clock
from hilos.core.errors import NotFound
from hilos.core.models import OutboxEvent
from hilos.engagement import segments
from hilos.engagement.segment_models import SegmentMember
from tests.commerce.orders_helpers import location, place, product, receive
from tests.conftest import TenantHandle, add_channel, identify, inbound

_names = itertools.count(1)


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    moment = FrozenClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


async def person(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    email: str,
    *,
    traits: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    result = await identify(client, tenant, ("email", email), traits=traits or {}, **extra)
    customer_id: str = result["customer_id"]
    return customer_id


async def save(
    client: httpx.AsyncClient, tenant: TenantHandle, rule: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/segments",
        json={"name": name or f"Segmento {next(_names)}", "rule": rule},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    segment: dict[str, Any] = response.json()
    return segment


async def members_of(
    client: httpx.AsyncClient, tenant: TenantHandle, segment_id: str, *, limit: int = 1000
) -> list[str]:
    """Every member, page by page, checking the pages against the live count."""
    found: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        response = await client.get(
            f"/v1/segments/{segment_id}/members", params=params, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(item["customer_id"] for item in page["items"])
        after = page["next_after"]
        if after is None:
            break
    count = await client.get(f"/v1/segments/{segment_id}/count", headers=tenant.headers)
    assert count.status_code == 200, count.text
    assert count.json()["count"] == len(found)
    return found


async def matching(
    client: httpx.AsyncClient, tenant: TenantHandle, rule: dict[str, Any]
) -> set[str]:
    """Who a rule matches now, through a saved segment (and the preview agrees)."""
    segment = await save(client, tenant, rule)
    found = await members_of(client, tenant, segment["id"])
    preview = await client.post("/v1/segments/preview", json={"rule": rule}, headers=tenant.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["count"] == len(found)
    return set(found)


async def track(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    email: str,
    event: str,
    at: datetime,
    *,
    type_: str = "track",
    **properties: Any,
) -> None:
    body: dict[str, Any] = {
        "userId": email,
        "context": {"traits": {"email": email}},
        "properties": properties,
        "timestamp": at.isoformat(),
    }
    body["event" if type_ == "track" else "name"] = event
    response = await client.post(f"/v1/{type_}", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text


async def events(sessionmaker: Any, tenant: TenantHandle, segment_id: str) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.tenant_id == tenant.id,
                OutboxEvent.topic.in_(("segment.entered", "segment.exited")),
            )
            .order_by(OutboxEvent.id)
        )
        return [
            (event.topic, event.payload["customer_id"])
            for event in rows.all()
            if event.payload["segment_id"] == segment_id
        ]


# --- conditions -----------------------------------------------------------------------------


async def test_traits_compare_by_their_json_type(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    ana = await person(
        client,
        tenant,
        "ana@example.es",
        traits={
            "city": "Madrid",
            "age": 34,
            "vip": True,
            "tags": ["running", "outlet"],
            "address": {"city": "Madrid"},
            "bio": "Corredora de Maratón",
        },
    )
    bea = await person(
        client,
        tenant,
        "bea@example.es",
        traits={"city": "Barcelona", "age": 19, "vip": False, "tags": ["yoga"]},
    )
    # Age written as text: never a number to numeric comparisons.
    carlos = await person(client, tenant, "carlos@example.es", traits={"age": "40", "city": None})
    dani = await person(client, tenant, "dani@example.es")

    def trait(name: str, op: str, value: Any = None) -> dict[str, Any]:
        return {"trait": name, "op": op, **({} if value is None else {"value": value})}

    assert await matching(client, tenant, trait("city", "eq", "Madrid")) == {ana}
    # Missing, null and other values are all "not Madrid".
    assert await matching(client, tenant, trait("city", "neq", "Madrid")) == {bea, carlos, dani}
    assert await matching(client, tenant, trait("city", "in", ["Madrid", "Barcelona"])) == {
        ana,
        bea,
    }
    assert await matching(client, tenant, trait("address.city", "eq", "Madrid")) == {ana}
    assert await matching(client, tenant, trait("tags", "contains", "yoga")) == {bea}
    assert await matching(client, tenant, trait("bio", "contains", "corredora")) == {ana}
    assert await matching(client, tenant, trait("bio", "contains", "%")) == set()
    assert await matching(client, tenant, trait("vip", "eq", True)) == {ana}
    assert await matching(client, tenant, trait("vip", "eq", False)) == {bea}
    assert await matching(client, tenant, trait("age", "eq", 34)) == {ana}
    assert await matching(client, tenant, trait("age", "gte", 19)) == {ana, bea}
    assert await matching(client, tenant, trait("age", "gt", 19)) == {ana}
    assert await matching(client, tenant, trait("age", "lt", 34)) == {bea}
    assert await matching(client, tenant, trait("age", "lte", 34.5)) == {ana, bea}
    assert await matching(client, tenant, trait("age", "eq", "40")) == {carlos}
    assert await matching(client, tenant, trait("age", "in", [19, "40"])) == {bea, carlos}
    assert await matching(client, tenant, trait("city", "gte", "C")) == {ana}
    # A trait set to null is not there.
    assert await matching(client, tenant, trait("city", "exists")) == {ana, bea}
    assert await matching(client, tenant, trait("city", "exists", False)) == {carlos, dani}


async def test_profile_fields(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: FrozenClock
) -> None:
    old = await person(client, tenant, "old@example.es", name="Olga Pérez", language="es")
    frozen.advance(days=30)
    new = await person(client, tenant, "new@example.com", name="Nick Brown", language="en")
    anonymous = await person(client, tenant, "anon@example.es")

    def field(name: str, op: str, value: Any = None) -> dict[str, Any]:
        return {"field": name, "op": op, **({} if value is None else {"value": value})}

    assert await matching(client, tenant, field("language", "eq", "es")) == {old}
    assert await matching(client, tenant, field("language", "neq", "es")) == {new, anonymous}
    assert await matching(client, tenant, field("language", "in", ["es", "en"])) == {old, new}
    assert await matching(client, tenant, field("name", "contains", "brown")) == {new}
    assert await matching(client, tenant, field("name", "exists", False)) == {anonymous}
    since = (frozen.now - timedelta(days=1)).isoformat()
    assert await matching(client, tenant, field("created_at", "gte", since)) == {new, anonymous}
    assert await matching(client, tenant, field("created_at", "lt", since)) == {old}


async def test_events_by_type_name_properties_window_and_count(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: FrozenClock
) -> None:
    today = frozen.now
    ana, bea, carlos = "ana@example.es", "bea@example.es", "carlos@example.es"
    ids = {email: await person(client, tenant, email) for email in (ana, bea, carlos)}
    await track(
        client,
        tenant,
        ana,
        "Product Viewed",
        today - timedelta(days=2),
        category="zapatillas",
        price=90,
    )
    await track(
        client,
        tenant,
        ana,
        "Product Viewed",
        today - timedelta(days=1),
        category="zapatillas",
        price=60,
    )
    # Too long ago for "the last 7 days".
    await track(
        client,
        tenant,
        bea,
        "Product Viewed",
        today - timedelta(days=9),
        category="zapatillas",
        price=80,
    )
    await track(
        client,
        tenant,
        bea,
        "Product Viewed",
        today - timedelta(days=1),
        category="camisetas",
        price=20,
    )
    await track(
        client,
        tenant,
        carlos,
        "Zapatillas",
        today - timedelta(days=3),
        type_="page",
        category="zapatillas",
    )

    viewed = {
        "event": {
            "type": "track",
            "name": "Product Viewed",
            "where": {"properties.category": "zapatillas"},
        },
        "within_days": 7,
    }
    assert await matching(client, tenant, viewed) == {ids[ana]}
    assert await matching(client, tenant, {**viewed, "within_days": 30}) == {ids[ana], ids[bea]}
    assert await matching(client, tenant, {**viewed, "count_gte": 2}) == {ids[ana]}
    assert await matching(client, tenant, {**viewed, "within_days": 30, "count_lte": 1}) == {
        ids[bea],
        ids[carlos],
    }
    expensive = {
        "event": {"type": "track", "where": {"properties.price": {"op": "gte", "value": 80}}}
    }
    assert await matching(client, tenant, expensive) == {ids[ana], ids[bea]}
    pages = {"event": {"type": "page", "where": {"properties.category": ["zapatillas", "bolsos"]}}}
    assert await matching(client, tenant, pages) == {ids[carlos]}


async def shop(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store")
    await product(client, tenant, "CAMISA", prices={"web": 3000, "store:SOL": 2500})
    await receive(client, tenant, "CAMISA", "ALM", 50)
    await receive(client, tenant, "CAMISA", "SOL", 50)


async def buy(
    client: httpx.AsyncClient, tenant: TenantHandle, email: str, key: str, *, store: bool = False
) -> dict[str, Any]:
    line = {"sku": "CAMISA", "quantity": 1, "fulfilment": "in_store" if store else "ship"}
    response = await place(
        client, tenant, line, channel="SOL" if store else "web", key=key, email=email
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def test_orders_from_any_channel_by_count_window_channel_and_total(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: FrozenClock
) -> None:
    await shop(client, tenant)
    ana, bea, carlos = "ana@example.es", "bea@example.es", "carlos@example.es"
    await buy(client, tenant, ana, "a-1")
    frozen.advance(days=100)
    await buy(client, tenant, ana, "a-2", store=True)
    await buy(client, tenant, bea, "b-1", store=True)
    await buy(client, tenant, bea, "b-2")
    cancelled = await buy(client, tenant, carlos, "c-1")
    response = await client.post(f"/v1/orders/{cancelled['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.text
    ids = {email: await person(client, tenant, email) for email in (ana, bea, carlos)}
    nobody = await person(client, tenant, "dani@example.es")

    assert await matching(client, tenant, {"orders": {}}) == {ids[ana], ids[bea]}
    assert await matching(client, tenant, {"orders": {"count_gte": 2}}) == {ids[ana], ids[bea]}
    assert await matching(client, tenant, {"orders": {"count_gte": 2, "within_days": 90}}) == {
        ids[bea]
    }
    assert await matching(client, tenant, {"orders": {"channel": "store:SOL"}}) == {
        ids[ana],
        ids[bea],
    }
    assert await matching(client, tenant, {"orders": {"channel": "store", "count_gte": 1}}) == {
        ids[ana],
        ids[bea],
    }
    assert await matching(client, tenant, {"orders": {"channel": "web", "within_days": 30}}) == {
        ids[bea]
    }
    # Spent at least 55 € in 90 days: bea (25 + 30), not ana (25 in the window).
    spent = {"orders": {"within_days": 90, "total_gte": 5500, "currency": "EUR"}}
    assert await matching(client, tenant, spent) == {ids[bea]}
    # Never bought (a cancelled order does not count).
    assert await matching(client, tenant, {"orders": {"count_lte": 0}}) == {ids[carlos], nobody}


async def test_channel_used_is_where_the_customer_wrote(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: FrozenClock
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")

    async def writes(channel: str, kind: str, value: str, external_id: str) -> str:
        response = await inbound(
            client, tenant, channel_id=channel, external_id=external_id, kind=kind, value=value
        )
        assert response.status_code == 200, response.text
        customer_id: str = response.json()["customer_id"]
        return customer_id

    early = await writes(whatsapp, "whatsapp", "+34600111001", "w-1")
    frozen.advance(days=40)
    late = await writes(whatsapp, "whatsapp", "+34600111002", "w-2")
    mailer = await writes(email, "email", "eva@example.es", "e-1")

    assert await matching(client, tenant, {"channel_used": "whatsapp"}) == {early, late}
    assert await matching(client, tenant, {"channel_used": "whatsapp", "within_days": 30}) == {late}
    assert await matching(client, tenant, {"channel_used": ["email", "sms"]}) == {mailer}


async def test_loyalty_tier(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    program = {
        "default_earn_rule": {"EUR": 1},
        "tiers": [
            {"code": "plata", "name": "Plata", "threshold_points": 100},
            {"code": "oro", "name": "Oro", "threshold_points": 500},
        ],
    }
    response = await client.put("/v1/loyalty/program", json=program, headers=tenant.headers)
    assert response.status_code == 200, response.text
    points = {"ana@example.es": 600, "bea@example.es": 150, "carlos@example.es": 10}
    ids = {}
    for email, earned in points.items():
        ids[email] = await person(client, tenant, email)
        moved = await client.post(
            "/v1/loyalty/movements",
            json={
                "customer_id": ids[email],
                "kind": "earn",
                "points": earned,
                "idempotency_key": f"earn-{email}",
            },
            headers=tenant.headers,
        )
        assert moved.status_code == 201, moved.text

    assert await matching(client, tenant, {"loyalty_tier": "oro"}) == {ids["ana@example.es"]}
    assert await matching(client, tenant, {"loyalty_tier": ["oro", "plata"]}) == {
        ids["ana@example.es"],
        ids["bea@example.es"],
    }
    unknown = await client.post(
        "/v1/segments",
        json={"name": "Diamante", "rule": {"all": [{"loyalty_tier": ["oro", "diamante"]}]}},
        headers=tenant.headers,
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "rule.all.0.loyalty_tier.1"
    assert "diamante" in unknown.json()["error"]["message"]


async def test_consent_is_the_latest_decision(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: FrozenClock
) -> None:
    async def decide(customer_id: str, channel_kind: str, granted: bool) -> None:
        frozen.advance(minutes=1)
        response = await client.post(
            f"/v1/customers/{customer_id}/consents",
            json={"purpose": "marketing", "channel_kind": channel_kind, "granted": granted},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text

    granted = await person(client, tenant, "si@example.es")
    await decide(granted, "email", True)
    withdrawn = await person(client, tenant, "ya-no@example.es")
    await decide(withdrawn, "email", True)
    await decide(withdrawn, "email", False)
    regranted = await person(client, tenant, "otra-vez@example.es")
    await decide(regranted, "email", False)
    await decide(regranted, "email", True)
    only_whatsapp = await person(client, tenant, "whatsapp@example.es")
    await decide(only_whatsapp, "whatsapp", True)
    never_asked = await person(client, tenant, "nunca@example.es")

    email_ok = {"consent": {"purpose": "marketing", "channel_kind": "email", "granted": True}}
    assert await matching(client, tenant, email_ok) == {granted, regranted}
    email_not = {"consent": {"purpose": "marketing", "channel_kind": "email", "granted": False}}
    assert await matching(client, tenant, email_not) == {withdrawn, only_whatsapp, never_asked}
    service = {"consent": {"purpose": "service", "channel_kind": "email"}}
    assert await matching(client, tenant, service) == set()


async def test_has_identity(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    both = (await identify(client, tenant, ("email", "ana@example.es"), ("phone", "+34600222001")))[
        "customer_id"
    ]
    phone_only = (await identify(client, tenant, ("phone", "+34600222002")))["customer_id"]
    email_only = await person(client, tenant, "eva@example.es")

    assert await matching(client, tenant, {"has_identity": "phone"}) == {both, phone_only}
    assert await matching(client, tenant, {"has_identity": ["email", "loyalty"]}) == {
        both,
        email_only,
    }


async def test_all_any_and_not_nest(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    ana = await person(client, tenant, "ana@example.es", traits={"city": "Madrid", "age": 30})
    bea = await person(client, tenant, "bea@example.es", traits={"city": "Sevilla", "age": 30})
    carlos = await person(client, tenant, "carlos@example.es", traits={"city": "Madrid", "age": 60})
    dani = await person(client, tenant, "dani@example.es")

    madrid = {"trait": "city", "op": "eq", "value": "Madrid"}
    young = {"trait": "age", "op": "lt", "value": 40}
    assert await matching(client, tenant, {"all": [madrid, young]}) == {ana}
    assert await matching(client, tenant, {"any": [madrid, young]}) == {ana, bea, carlos}
    assert await matching(client, tenant, {"not": {"any": [madrid, young]}}) == {dani}
    assert await matching(
        client, tenant, {"all": [{"not": madrid}, {"any": [young, {"has_identity": "phone"}]}]}
    ) == {bea}
    # Everyone, and the complement of a condition is exactly everyone else.
    everyone = await matching(client, tenant, {"all": []})
    assert everyone == {ana, bea, carlos, dani}
    assert await matching(client, tenant, {"not": young}) == everyone - {ana, bea}


# --- counts, members, service ---------------------------------------------------------------


async def test_count_and_pages_leave_out_merged_customers_and_other_tenants(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, sessionmaker: Any
) -> None:
    other = await make_tenant("Otra tienda")
    await person(client, other, "ajena@example.es", traits={"plan": "pro"})
    ids = sorted(
        [
            await person(client, tenant, f"cliente{n}@example.es", traits={"plan": "pro"})
            for n in range(7)
        ]
    )
    await person(client, tenant, "gratis@example.es", traits={"plan": "free"})
    segment = await save(client, tenant, {"trait": "plan", "op": "eq", "value": "pro"})

    first = await client.get(
        f"/v1/segments/{segment['id']}/members", params={"limit": 3}, headers=tenant.headers
    )
    assert first.status_code == 200, first.text
    assert [m["customer_id"] for m in first.json()["items"]] == ids[:3]
    assert first.json()["next_after"] == ids[2]
    assert await members_of(client, tenant, segment["id"], limit=3) == ids

    async with sessionmaker() as session:
        page = await segments.member_ids(
            session, tenant.context, segment["id"], after=ids[4], limit=10
        )
        assert page == ids[5:]
        assert await segments.is_member(session, tenant.context, segment["id"], ids[0])

    # One customer absorbs another (a shared phone): the merged one is no member any more.
    await identify(client, tenant, ("email", "cliente0@example.es"), ("phone", "+34600333001"))
    await identify(client, tenant, ("email", "cliente1@example.es"), ("phone", "+34600333001"))
    remaining = await members_of(client, tenant, segment["id"])
    assert len(remaining) == 6
    async with sessionmaker() as session:
        gone = (set(ids) - set(remaining)).pop()
        assert not await segments.is_member(session, tenant.context, segment["id"], gone)

    too_many = await client.get(
        f"/v1/segments/{segment['id']}/members", params={"limit": 5000}, headers=tenant.headers
    )
    assert too_many.status_code == 422


async def test_is_member_is_evaluated_live(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    ana = await person(client, tenant, "ana@example.es", traits={"city": "Madrid"})
    segment = await save(client, tenant, {"trait": "city", "op": "eq", "value": "Valencia"})
    async with sessionmaker() as session:
        assert not await segments.is_member(session, tenant.context, segment["id"], ana)
    moved = await client.patch(
        f"/v1/customers/{ana}", json={"traits": {"city": "Valencia"}}, headers=tenant.headers
    )
    assert moved.status_code == 200, moved.text
    async with sessionmaker() as session:
        assert await segments.is_member(session, tenant.context, segment["id"], ana)
        assert not await segments.is_member(session, tenant.context, segment["id"], "0" * 32)


# --- membership refresh ---------------------------------------------------------------------


async def test_refresh_announces_entries_and_exits_once(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: Any,
    frozen: FrozenClock,
) -> None:
    ana = await person(client, tenant, "ana@example.es", traits={"city": "Madrid"})
    bea = await person(client, tenant, "bea@example.es", traits={"city": "Madrid"})
    carlos = await person(client, tenant, "carlos@example.es", traits={"city": "Bilbao"})
    segment = await save(client, tenant, {"trait": "city", "op": "eq", "value": "Madrid"})
    assert segment["refreshed_at"] is None

    await segments.refresh_due(sessionmaker)
    assert sorted(await events(sessionmaker, tenant, segment["id"])) == [
        ("segment.entered", ana),
        ("segment.entered", bea),
    ]
    refreshed = (await client.get(f"/v1/segments/{segment['id']}", headers=tenant.headers)).json()
    assert refreshed["member_count"] == 2
    assert refreshed["refreshed_at"] is not None

    # Not due again yet, and nothing changed anyway: no new events.
    await segments.refresh_due(sessionmaker)
    assert len(await events(sessionmaker, tenant, segment["id"])) == 2

    # Bea moves away and Carlos moves in; the change shows at the next due refresh.
    for customer_id, city in ((bea, "Sevilla"), (carlos, "Madrid")):
        response = await client.patch(
            f"/v1/customers/{customer_id}", json={"traits": {"city": city}}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
    await segments.refresh_due(sessionmaker)
    assert len(await events(sessionmaker, tenant, segment["id"])) == 2
    frozen.advance(seconds=segments.REFRESH_SECONDS + 1)
    await segments.refresh_due(sessionmaker)
    await segments.refresh_due(sessionmaker)
    assert (await events(sessionmaker, tenant, segment["id"]))[2:] == [
        ("segment.exited", bea),
        ("segment.entered", carlos),
    ]
    async with sessionmaker() as session:
        stored = await session.scalars(
            select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment["id"])
        )
        assert set(stored.all()) == {ana, carlos}

    # A new rule makes the segment due at once.
    changed = await client.patch(
        f"/v1/segments/{segment['id']}",
        json={"rule": {"trait": "city", "op": "eq", "value": "Sevilla"}},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["refreshed_at"] is None
    await segments.refresh_due(sessionmaker)
    assert sorted((await events(sessionmaker, tenant, segment["id"]))[4:]) == [
        ("segment.entered", bea),
        ("segment.exited", ana),
        ("segment.exited", carlos),
    ]


async def test_refresh_works_in_bounded_batches(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    # Whatever other segments are due first, so the budget is this segment's alone.
    await segments.refresh_due(sessionmaker)
    ids = [
        await person(client, tenant, f"lote{n}@example.es", traits={"lote": True}) for n in range(5)
    ]
    segment = await save(client, tenant, {"trait": "lote", "op": "eq", "value": True})
    assert await segments.refresh_due(sessionmaker, budget=2) == 2
    assert await segments.refresh_due(sessionmaker, budget=2) == 2
    assert await segments.refresh_due(sessionmaker, budget=2) == 1
    assert await segments.refresh_due(sessionmaker, budget=2) == 0
    entered = await events(sessionmaker, tenant, segment["id"])
    assert sorted(entered) == sorted(("segment.entered", i) for i in ids)


async def test_a_merged_customer_leaves_their_segments_and_the_survivor_is_refreshed(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    survivor = await person(client, tenant, "ana@example.es")
    merged = await person(client, tenant, "ana.work@example.es", traits={"vip": True})
    segment = await save(client, tenant, {"trait": "vip", "op": "eq", "value": True})
    await segments.refresh_due(sessionmaker)
    assert await events(sessionmaker, tenant, segment["id"]) == [("segment.entered", merged)]

    linked = await identify(
        client, tenant, ("email", "ana@example.es"), ("email", "ana.work@example.es")
    )
    assert linked["customer_id"] == survivor
    assert linked["merged_customer_ids"] == [merged]
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment["id"])
        )
        assert rows.all() == []
    # The survivor took the trait over; the segment is due at once and takes them in.
    assert (await client.get(f"/v1/segments/{segment['id']}", headers=tenant.headers)).json()[
        "refreshed_at"
    ] is None
    await segments.refresh_due(sessionmaker)
    assert await events(sessionmaker, tenant, segment["id"]) == [
        ("segment.entered", merged),
        ("segment.entered", survivor),
    ]


# --- saving, bad input, tenants -------------------------------------------------------------


async def test_sending_a_segment_twice_saves_it_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {"name": "Madrid", "rule": {"trait": "city", "op": "eq", "value": "Madrid"}}
    first = await client.post("/v1/segments", json=body, headers=tenant.headers)
    again = await client.post("/v1/segments", json=body, headers=tenant.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other_rule = {**body, "rule": {"trait": "city", "op": "eq", "value": "Lugo"}}
    taken = await client.post("/v1/segments", json=other_rule, headers=tenant.headers)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "segment_exists"
    listed = await client.get("/v1/segments", headers=tenant.headers)
    assert [s["name"] for s in listed.json()] == ["Madrid"]

    second = await save(client, tenant, {"all": []}, name="Todos")
    renamed = await client.patch(
        f"/v1/segments/{second['id']}", json={"name": "Madrid"}, headers=tenant.headers
    )
    assert renamed.status_code == 409


BAD_RULES = [
    ({"everyone": True}, "rule.everyone"),
    ({}, "rule"),
    (
        {"all": [{"trait": "city", "op": "exists"}, {"orders": {"count_gte": 0}}]},
        "rule.all.1.orders.count_gte",
    ),
    ({"all": [{"trait": "city", "op": "like", "value": "M%"}]}, "rule.all.0.op"),
    ({"any": [{"trait": "city", "op": "eq"}]}, "rule.any.0.value"),
    ({"any": []}, "rule.any"),
    ({"not": {"trait": "city", "op": "in", "value": []}}, "rule.not.value"),
    ({"trait": "city", "op": "eq", "value": {"nested": 1}}, "rule.value"),
    ({"trait": "first name", "op": "exists"}, "rule.trait"),
    ({"trait": "city", "op": "eq", "value": "M", "colour": "red"}, "rule.colour"),
    ({"trait": "city", "orders": {}}, "rule"),
    ({"field": "email", "op": "eq", "value": "a@b.es"}, "rule.field"),
    ({"field": "created_at", "op": "gte", "value": "yesterday"}, "rule.value"),
    ({"event": {"type": "click"}}, "rule.event.type"),
    ({"event": {"type": "track", "where": {"category": "x"}}}, "rule.event.where.category"),
    ({"event": {"type": "track"}, "within_days": 0}, "rule.within_days"),
    ({"event": {"type": "track"}, "count_gte": 3, "count_lte": 1}, "rule.count_lte"),
    ({"orders": {"total_gte": 10000}}, "rule.orders.currency"),
    ({"orders": {"channel": "tiktok"}}, "rule.orders.channel"),
    ({"orders": {"count_gte": "2"}}, "rule.orders.count_gte"),
    ({"channel_used": "pigeon"}, "rule.channel_used"),
    ({"consent": {"purpose": "spam", "channel_kind": "email"}}, "rule.consent.purpose"),
    (
        {"consent": {"purpose": "marketing", "channel_kind": "email", "granted": "yes"}},
        "rule.consent.granted",
    ),
    ({"has_identity": ["email", "fax"]}, "rule.has_identity.1"),
    ({"loyalty_tier": "oro"}, "rule.loyalty_tier"),
]


@pytest.mark.parametrize(("rule", "field"), BAD_RULES)
async def test_a_bad_rule_is_refused_naming_where(
    client: httpx.AsyncClient, tenant: TenantHandle, rule: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/v1/segments", json={"name": "Malo", "rule": rule}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_rule", field)
    assert error["message"].startswith(f"{field}: ")
    preview = await client.post("/v1/segments/preview", json={"rule": rule}, headers=tenant.headers)
    assert (preview.status_code, preview.json()["error"]["field"]) == (422, field)
    # Nothing was saved.
    assert (await client.get("/v1/segments", headers=tenant.headers)).json() == []


async def test_a_rule_too_deep_or_too_long_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    deep: dict[str, Any] = {"trait": "x", "op": "exists"}
    for _ in range(segments.MAX_DEPTH):
        deep = {"not": deep}
    response = await client.post(
        "/v1/segments/preview", json={"rule": deep}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert "deeper" in response.json()["error"]["message"]
    long = {"any": [{"trait": f"t{n}", "op": "exists"} for n in range(segments.MAX_CONDITIONS)]}
    response = await client.post(
        "/v1/segments/preview", json={"rule": long}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == f"rule.any.{segments.MAX_CONDITIONS - 1}"


async def test_another_tenants_segment_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, sessionmaker: Any
) -> None:
    segment = await save(client, tenant, {"all": []})
    other = await make_tenant("Otra tienda")
    path = f"/v1/segments/{segment['id']}"
    for method, url in (
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("GET", f"{path}/count"),
        ("GET", f"{path}/members"),
    ):
        body = {"name": "Mío"} if method == "PATCH" else None
        response = await client.request(method, url, json=body, headers=other.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    async with sessionmaker() as session:
        with pytest.raises(NotFound):
            await segments.member_ids(session, other.context, segment["id"], after=None, limit=10)
    assert (await client.get(path, headers=tenant.headers)).json()["name"] == segment["name"]


async def test_only_a_supervisor_changes_segments_and_deleting_removes_the_membership(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    created = await client.post(
        "/v1/api-keys", json={"name": "agente", "role": "agent"}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    agent = {"Authorization": f"Bearer {created.json()['key']}"}
    rule = {"trait": "city", "op": "exists"}
    refused = await client.post("/v1/segments", json={"name": "X", "rule": rule}, headers=agent)
    assert refused.status_code == 403
    segment = await save(client, tenant, rule)
    assert (
        await client.get(f"/v1/segments/{segment['id']}/count", headers=agent)
    ).status_code == 200

    await person(client, tenant, "ana@example.es", traits={"city": "Madrid"})
    await segments.refresh_due(sessionmaker)
    deleted = await client.delete(f"/v1/segments/{segment['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/v1/segments/{segment['id']}", headers=tenant.headers)
    ).status_code == 404
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(SegmentMember).where(SegmentMember.segment_id == segment["id"])
        )
        assert rows.all() == []

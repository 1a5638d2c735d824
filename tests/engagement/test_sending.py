"""The sending rules: the preferred channel with fallbacks, marketing consent per channel, quiet
hours in the customer's time zone, a frequency cap across every channel, idempotent keys, and
every outcome in the sends log with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.models import Message
from hilos.core import clock
from hilos.engagement import sending
from hilos.engagement.sending import SendResult
from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel, deliver
from tests.commerce.orders_helpers import product
from tests.conftest import TenantHandle, add_channel, identify, inbound

# Monday 23 November 2026, 12:00 UTC: 13:00 in Madrid, 06:00 in Mexico City.
NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[Clock]:
    moment = Clock(NOON_UTC)
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


MARKETING = {
    "es": {
        "email": {
            "subject": "{{ customer.first_name }}, novedades para ti",
            "text": "Hola {{ customer.first_name }}. Baja: {{ unsubscribe_url }}",
            "html": "<p>Hola {{ customer.first_name }}</p>"
            '<p><a href="{{ unsubscribe_url }}">Darse de baja</a></p>',
        },
        "whatsapp": {
            "template_name": "novedades",
            "language": "es_ES",
            "parameters": ["customer.first_name"],
        },
        "sms": {"text": "{{ tenant.name }}: novedades para ti"},
        "text": "Hola {{ customer.first_name }}, novedades para ti",
    },
    "en": {"text": "Hi {{ customer.first_name }}, news for you"},
}


async def template(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    name: str = "novedades",
    *,
    purpose: str = "marketing",
    variants: dict[str, Any] | None = None,
) -> str:
    response = await client.post(
        "/v1/templates",
        json={"name": name, "purpose": purpose, "variants": variants or MARKETING},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def shop(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, str]:
    return {kind: await add_channel(client, tenant, kind) for kind in ("whatsapp", "email", "sms")}


async def consent(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str, kind: str, granted: bool
) -> None:
    response = await client.post(
        f"/v1/customers/{customer_id}/consents",
        json={"purpose": "marketing", "channel_kind": kind, "granted": granted},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


async def customer(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    n: int,
    *,
    consents: tuple[str, ...] = ("whatsapp", "email", "sms"),
    **traits: Any,
) -> str:
    phone = f"+3461000{n:04d}"
    found = await identify(
        client,
        tenant,
        ("email", f"cliente{n}@example.es"),
        ("phone", phone),
        ("whatsapp", phone),
        name="Lucía García",
        traits=traits,
    )
    customer_id: str = found["customer_id"]
    for kind in consents:
        await consent(client, tenant, customer_id, kind, True)
    return customer_id


async def send(
    sessionmaker: Sessions,
    tenant: TenantHandle,
    customer_id: str,
    template_id: str,
    key: str,
    *,
    channel_order: list[str] | None = None,
    context: dict[str, Any] | None = None,
) -> SendResult:
    async with sessionmaker() as session, session.begin():
        return await sending.send(
            session,
            tenant.context,
            customer_id=customer_id,
            template_id=template_id,
            context=context or {},
            channel_order=channel_order,
            source={"journey_id": "j1", "step_id": "remind"},
            idempotency_key=key,
        )


async def message(sessionmaker: Sessions, message_id: str | None) -> Message:
    assert message_id is not None
    async with sessionmaker() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def outbound_count(sessionmaker: Sessions, tenant: TenantHandle) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.tenant_id == tenant.id, Message.direction == "outbound")
        )
    return int(count or 0)


async def consents_of(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/customers/{customer_id}/consents", headers=tenant.headers)
    assert response.status_code == 200, response.text
    history: list[dict[str, Any]] = response.json()
    return history


async def log(
    client: httpx.AsyncClient, tenant: TenantHandle, **params: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/engagement/sends", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_consent_is_per_channel_and_the_send_falls_back_to_the_next_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    channels = await shop(client, tenant)
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1, consents=("email",), preferred_channel="whatsapp")

    result = await send(
        sessionmaker, tenant, lucia, template_id, "k1", channel_order=["email", "sms"]
    )
    assert (result.status, result.channel_kind, result.reason) == ("queued", "email", None)
    sent = await message(sessionmaker, result.message_id)
    assert sent.channel_id == channels["email"]
    assert sent.text.startswith("Hola Lucía. Baja: http")
    assert sent.data["subject"] == "Lucía, novedades para ti"
    assert sent.data["html"].startswith("<p>Hola Lucía</p>")
    # Marked automated: it answers nobody, so it stops no SLA clock.
    assert sent.data["automated"]["send_id"] == result.send_id
    [row] = await log(client, tenant, customer_id=lucia)
    assert row["tried"] == [
        {"kind": "whatsapp", "channel_id": channels["whatsapp"], "reason": "no_consent:whatsapp"}
    ]
    assert row["source"] == {"journey_id": "j1", "step_id": "remind"}

    await consent(client, tenant, lucia, "email", False)
    refused = await send(sessionmaker, tenant, lucia, template_id, "k2")
    assert (refused.status, refused.reason, refused.message_id) == (
        "suppressed",
        "no_consent",
        None,
    )
    latest = (await log(client, tenant, customer_id=lucia))[0]
    assert [t["reason"] for t in latest["tried"]] == [
        "no_consent:whatsapp",
        "no_consent:email",
        "no_consent:sms",
    ]
    assert await outbound_count(sessionmaker, tenant) == 1

    # A service message needs no marketing consent: it goes on the preferred channel.
    service_id = await template(client, tenant, "aviso", purpose="service")
    notice = await send(sessionmaker, tenant, lucia, service_id, "k3")
    assert (notice.status, notice.channel_kind) == ("queued", "whatsapp")


async def test_quiet_hours_defer_in_each_customers_time_zone(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    madrid = await customer(client, tenant, 1)  # no zone of their own: the tenant's, Madrid
    mexico = await customer(client, tenant, 2, timezone="America/Mexico_City")
    lost = await customer(client, tenant, 3, timezone="Mars/Olympus_Mons")  # not a zone: Madrid

    # 12:00 UTC: 13:00 in Madrid, 06:00 in Mexico City.
    assert (await send(sessionmaker, tenant, madrid, template_id, "madrid-noon")).status == "queued"
    assert (await send(sessionmaker, tenant, lost, template_id, "lost-noon")).status == "queued"
    early = await send(sessionmaker, tenant, mexico, template_id, "mexico-noon")
    assert (early.status, early.reason, early.message_id) == ("deferred", "quiet_hours", None)
    assert early.retry_at == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 09:00 in Mexico City

    # 21:30 UTC: 22:30 in Madrid (quiet until 09:00 CET, 08:00 UTC), 15:30 in Mexico City.
    frozen.set(datetime(2026, 11, 23, 21, 30, tzinfo=UTC))
    late = await send(sessionmaker, tenant, madrid, template_id, "madrid-night")
    assert (late.status, late.reason) == ("deferred", "quiet_hours")
    assert late.retry_at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert (await send(sessionmaker, tenant, mexico, template_id, "mexico-night")).status == (
        "queued"
    )

    # The deferred send asked again with its key: still quiet before retry_at, sent after.
    frozen.set(datetime(2026, 11, 24, 7, 59, tzinfo=UTC))
    again = await send(sessionmaker, tenant, madrid, template_id, "madrid-night")
    assert (again.status, again.send_id) == ("deferred", late.send_id)
    frozen.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    sent = await send(sessionmaker, tenant, madrid, template_id, "madrid-night")
    assert (sent.status, sent.send_id, sent.retry_at) == ("queued", late.send_id, None)
    [row] = [r for r in await log(client, tenant, customer_id=madrid) if r["id"] == sent.send_id]
    assert row["attempts"] == 2
    assert [(h["status"], h["reason"]) for h in row["history"]] == [("deferred", "quiet_hours")]


async def test_quiet_hours_follow_the_tenants_settings(
    client: httpx.AsyncClient, make_tenant: Any, sessionmaker: Sessions, frozen: Clock
) -> None:
    shop_in_mexico = await make_tenant("Tienda CDMX", timezone="America/Mexico_City")
    await shop(client, shop_in_mexico)
    template_id = await template(client, shop_in_mexico)
    local = await customer(client, shop_in_mexico, 1)
    deferred = await send(sessionmaker, shop_in_mexico, local, template_id, "a")
    assert deferred.status == "deferred"

    changed = await client.put(
        "/v1/engagement/settings",
        json={"quiet_hours": {"start": "22:00", "end": "06:00"}},
        headers=shop_in_mexico.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["quiet_hours"] == {"start": "22:00", "end": "06:00"}
    assert (await send(sessionmaker, shop_in_mexico, local, template_id, "b")).status == "queued"


async def test_the_frequency_cap_counts_marketing_across_every_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    channels = await shop(client, tenant)
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1)

    for n, kind in enumerate(("whatsapp", "email", "sms")):
        result = await send(sessionmaker, tenant, lucia, template_id, f"k{n}", channel_order=[kind])
        assert (result.status, result.channel_kind) == ("queued", kind)
        assert (await message(sessionmaker, result.message_id)).channel_id == channels[kind]
        frozen.advance(hours=1)

    fourth = await send(sessionmaker, tenant, lucia, template_id, "k3", channel_order=["email"])
    assert (fourth.status, fourth.reason, fourth.message_id) == (
        "suppressed",
        "frequency_cap",
        None,
    )
    assert "3 marketing messages in the last 7 days" in (fourth.detail or "")
    assert await outbound_count(sessionmaker, tenant) == 3

    # Service messages are not marketing: the cap does not apply to them nor count them.
    service_id = await template(client, tenant, "pedido", purpose="service")
    assert (await send(sessionmaker, tenant, lucia, service_id, "s1")).status == "queued"

    # Seven days after the first one, a place is free again.
    frozen.set(NOON_UTC + timedelta(days=7, minutes=1))
    assert (await send(sessionmaker, tenant, lucia, template_id, "k4")).status == "queued"
    assert (await send(sessionmaker, tenant, lucia, template_id, "k5")).reason == "frequency_cap"

    # Another customer has their own count.
    other = await customer(client, tenant, 2)
    assert (await send(sessionmaker, tenant, other, template_id, "o1")).status == "queued"


async def test_a_repeated_key_returns_the_first_result_and_sends_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    sessionmaker: Sessions,
    frozen: Clock,
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1)
    body = {"customer_id": lucia, "template_id": template_id, "idempotency_key": "campaign-1:1"}

    first = await client.post("/v1/engagement/sends", json=body, headers=tenant.headers)
    again = await client.post("/v1/engagement/sends", json=body, headers=tenant.headers)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["status"] == "queued"
    assert again.json() == first.json()
    assert await outbound_count(sessionmaker, tenant) == 1
    assert len(await log(client, tenant)) == 1

    other_template = await template(client, tenant, "otra")
    reused = await client.post(
        "/v1/engagement/sends",
        json={**body, "template_id": other_template},
        headers=tenant.headers,
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    # A suppressed send is final too: the same key suppresses again without counting anew.
    frozen.advance(hours=1)
    for n in range(2):
        await send(sessionmaker, tenant, lucia, template_id, f"more-{n}")
    capped = await send(sessionmaker, tenant, lucia, template_id, "capped")
    assert capped.reason == "frequency_cap"
    assert await send(sessionmaker, tenant, lucia, template_id, "capped") == capped

    stranger = await make_tenant("Otra tienda")
    outsider = await client.post(
        "/v1/engagement/sends",
        json={**body, "idempotency_key": "x"},
        headers=stranger.headers,
    )
    assert outsider.status_code == 404
    assert await log(client, stranger) == []


async def test_every_outcome_is_in_the_log_with_its_reason(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    coupon_id = await template(
        client, tenant, "cupon", variants={"es": {"text": "Tu cupón: {{ data.cupon }}"}}
    )
    lucia = await customer(client, tenant, 1)
    silent = await customer(client, tenant, 2, consents=())
    mexico = await customer(client, tenant, 3, timezone="America/Mexico_City")
    card_only = (await identify(client, tenant, ("loyalty", "TARJETA-99")))["customer_id"]
    await consent(client, tenant, card_only, "email", True)

    assert (await send(sessionmaker, tenant, lucia, template_id, "a")).status == "queued"
    with_coupon = await send(
        sessionmaker, tenant, lucia, coupon_id, "b", context={"data": {"cupon": "VUELVE10"}}
    )
    assert (await message(sessionmaker, with_coupon.message_id)).text == "Tu cupón: VUELVE10"
    no_coupon = await send(sessionmaker, tenant, lucia, coupon_id, "c")
    assert (no_coupon.status, no_coupon.reason) == ("suppressed", "render_failed")
    assert "cupon" in (no_coupon.detail or "")
    assert (await send(sessionmaker, tenant, silent, template_id, "d")).reason == "no_consent"
    assert (await send(sessionmaker, tenant, mexico, template_id, "e")).reason == "quiet_hours"
    unreachable = await send(sessionmaker, tenant, card_only, template_id, "f")
    assert (unreachable.status, unreachable.reason) == ("suppressed", "no_reachable_channel")

    everything = await log(client, tenant)
    assert [(r["idempotency_key"], r["status"], r["reason"]) for r in everything] == [
        ("f", "suppressed", "no_reachable_channel"),
        ("e", "deferred", "quiet_hours"),
        ("d", "suppressed", "no_consent"),
        ("c", "suppressed", "render_failed"),
        ("b", "queued", None),
        ("a", "queued", None),
    ]
    suppressed = await log(client, tenant, status="suppressed")
    assert {r["idempotency_key"] for r in suppressed} == {"c", "d", "f"}
    assert [r["idempotency_key"] for r in await log(client, tenant, customer_id=mexico)] == ["e"]
    deferred = (await log(client, tenant, status="deferred"))[0]
    assert deferred["retry_at"].startswith("2026-11-23T15:00:00")
    bad = await client.get(
        "/v1/engagement/sends", params={"status": "lost"}, headers=tenant.headers
    )
    assert bad.status_code == 422


async def test_whatsapp_marketing_outside_the_window_goes_as_an_approved_template(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: Sessions,
    app: Any,
    frozen: Clock,
) -> None:
    whatsapp = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    await add_channel(client, tenant, "email")
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1, preferred_channel="whatsapp")

    result = await send(sessionmaker, tenant, lucia, template_id, "wa-1")
    assert (result.status, result.channel_kind) == ("queued", "whatsapp")
    queued = await message(sessionmaker, result.message_id)
    assert queued.channel_id == whatsapp
    assert queued.data["template"] == {
        "name": "novedades",
        "language": "es_ES",
        "parameters": ["Lucía"],
    }
    provider = fake_whatsapp.FakeWhatsApp()
    await deliver(app, provider, tenant)
    [sent] = provider.sent
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "novedades"
    assert sent["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Lucía"}]

    # Without a WhatsApp rendering, free text cannot go outside the window: email instead.
    text_only = await template(
        client, tenant, "solo-texto", variants={"es": {"text": "Hola {{ customer.first_name }}"}}
    )
    fallback = await send(sessionmaker, tenant, lucia, text_only, "wa-2")
    assert (fallback.status, fallback.channel_kind) == ("queued", "email")
    row = (await log(client, tenant, customer_id=lucia))[0]
    assert row["tried"] == [
        {"kind": "whatsapp", "channel_id": whatsapp, "reason": "whatsapp_window_closed"}
    ]

    # Once the customer writes on WhatsApp, the window is open and the text goes there.
    wrote = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="wamid.hola",
        kind="whatsapp",
        value="+34610000001",
        text="Hola",
    )
    assert wrote.status_code in (200, 201), wrote.text
    inside = await send(sessionmaker, tenant, lucia, text_only, "wa-3")
    assert (inside.status, inside.channel_kind) == ("queued", "whatsapp")
    assert (await message(sessionmaker, inside.message_id)).data.get("template") is None


async def test_the_unsubscribe_link_refuses_marketing_on_that_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1, preferred_channel="email")
    result = await send(sessionmaker, tenant, lucia, template_id, "news-1")
    assert result.channel_kind == "email"
    text = (await message(sessionmaker, result.message_id)).text
    link = text.split("Baja: ", 1)[1].strip()
    path = link[link.index("/v1/engagement/unsubscribe/") :]

    # Opening the link (a person, or a mail scanner) only asks.
    page = await client.get(path)
    assert page.status_code == 200
    assert "¿Dejar de recibir mensajes de marketing por Correo electrónico?" in page.text
    assert '<form method="post">' in page.text
    assert all(c["granted"] for c in await consents_of(client, tenant, lucia))

    confirmed = await client.post(path)
    assert confirmed.status_code == 200
    assert "Ya no recibirás mensajes de marketing por Correo electrónico." in confirmed.text
    assert (await client.post(path)).status_code == 200  # again: nothing new recorded
    assert "Ya no recibirás" in (await client.get(path)).text
    consents = await consents_of(client, tenant, lucia)
    refusals = [c for c in consents if c["channel_kind"] == "email" and not c["granted"]]
    assert len(refusals) == 1

    frozen.advance(hours=1)
    after = await send(sessionmaker, tenant, lucia, template_id, "news-2")
    assert after.channel_kind != "email"
    assert (await log(client, tenant, customer_id=lucia))[0]["tried"][0]["reason"] == (
        "no_consent:email"
    )
    assert (await client.get("/v1/engagement/unsubscribe/not-a-token")).status_code == 404


async def test_settings_are_checked_and_kept_per_tenant(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    defaults = await client.get("/v1/engagement/settings", headers=tenant.headers)
    assert defaults.json() == {
        "quiet_hours": {"start": "21:00", "end": "09:00"},
        "frequency_cap": {"messages": 3, "days": 7},
        "cart_url": None,
    }
    changed = await client.put(
        "/v1/engagement/settings",
        json={"frequency_cap": {"messages": 5, "days": 14}},
        headers=tenant.headers,
    )
    assert changed.json()["frequency_cap"] == {"messages": 5, "days": 14}
    assert changed.json()["quiet_hours"] == {"start": "21:00", "end": "09:00"}
    off = await client.put(
        "/v1/engagement/settings", json={"quiet_hours": None}, headers=tenant.headers
    )
    assert off.json()["quiet_hours"] is None
    for bad in (
        {"quiet_hours": {"start": "25:00", "end": "09:00"}},
        {"quiet_hours": {"start": "09:00", "end": "09:00"}},
        {"frequency_cap": {"messages": 0, "days": 7}},
        {"cart_url": "javascript:alert(1)"},
        {"quiet": True},
    ):
        refused = await client.put("/v1/engagement/settings", json=bad, headers=tenant.headers)
        assert refused.status_code == 422, bad
    kept = await client.get("/v1/engagement/settings", headers=tenant.headers)
    assert kept.json()["frequency_cap"] == {"messages": 5, "days": 14}
    other = await make_tenant("Otra")
    assert (await client.get("/v1/engagement/settings", headers=other.headers)).json() == (
        defaults.json()
    )


async def test_two_sends_at_once_cannot_both_take_the_last_place_under_the_cap(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    lucia = await customer(client, tenant, 1)
    await client.put(
        "/v1/engagement/settings",
        json={"frequency_cap": {"messages": 1, "days": 7}},
        headers=tenant.headers,
    )
    results = await asyncio.gather(
        *(
            send(sessionmaker, tenant, lucia, template_id, f"journey-{n}", channel_order=[kind])
            for n, kind in enumerate(("whatsapp", "email", "sms", "email"))
        )
    )
    assert sorted(r.status for r in results) == ["queued", "suppressed", "suppressed", "suppressed"]
    assert {r.reason for r in results if r.status == "suppressed"} == {"frequency_cap"}
    assert await outbound_count(sessionmaker, tenant) == 1


async def test_a_merged_customers_messages_count_for_the_survivor(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    template_id = await template(client, tenant)
    by_email = (await identify(client, tenant, ("email", "marta@example.es")))["customer_id"]
    by_phone = (await identify(client, tenant, ("phone", "+34699000111")))["customer_id"]
    await consent(client, tenant, by_email, "email", True)
    await consent(client, tenant, by_phone, "sms", True)
    for n in range(2):
        assert (await send(sessionmaker, tenant, by_email, template_id, f"e{n}")).status == (
            "queued"
        )
    assert (await send(sessionmaker, tenant, by_phone, template_id, "p0")).status == "queued"

    merged = await identify(
        client, tenant, ("email", "marta@example.es"), ("phone", "+34699000111")
    )
    survivor = merged["customer_id"]
    assert merged["merged_customer_ids"]
    capped = await send(sessionmaker, tenant, survivor, template_id, "after-merge")
    assert capped.reason == "frequency_cap"
    assert len(await log(client, tenant, customer_id=survivor)) == 4


async def test_the_customers_open_cart_fills_a_template_that_reads_it(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Sessions, frozen: Clock
) -> None:
    await shop(client, tenant)
    await product(client, tenant, "ZAP-42", prices={"web": 5999})
    lucia = await customer(client, tenant, 1, preferred_channel="sms")
    line = await client.put(
        "/v1/carts/lines",
        json={"customer_id": lucia, "channel": "web", "sku": "ZAP-42", "quantity": 2},
        headers=tenant.headers,
    )
    assert line.status_code in (200, 201), line.text
    await client.put(
        "/v1/engagement/settings",
        json={"cart_url": "https://tienda.example/carrito/{cart_id}"},
        headers=tenant.headers,
    )
    reminder = await template(
        client,
        tenant,
        "recordatorio",
        variants={
            "es": {
                "text": "{% for line in cart.lines %}{{ line.quantity }}× {{ line.name }} "
                "({{ line.total }}) {% endfor %}= {{ cart.total }} {{ cart.url }}"
                "{% for item in recommendations %} · {{ item.name }}{% endfor %}"
            }
        },
    )
    result = await send(sessionmaker, tenant, lucia, reminder, "cart-1")
    assert (result.status, result.channel_kind) == ("queued", "sms")
    cart_id = line.json()["id"]
    assert (await message(sessionmaker, result.message_id)).text.startswith(
        f"2× Producto ZAP-42 (119,98\xa0€) = 119,98\xa0€ https://tienda.example/carrito/{cart_id}"
    )

    # Without an open cart the reminder cannot be written: nothing goes, and the log says why.
    closed = await client.delete(f"/v1/carts/{cart_id}", headers=tenant.headers)
    assert closed.status_code == 200, closed.text
    frozen.advance(hours=1)
    nothing = await send(sessionmaker, tenant, lucia, reminder, "cart-2")
    assert (nothing.status, nothing.reason) == ("suppressed", "render_failed")
    assert "cart" in (nothing.detail or "")

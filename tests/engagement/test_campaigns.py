"""Campaigns: a segment gets a template at the scheduled time, each customer on their preferred
channel with their consent, throttled per channel, and the counts show what came of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hilos.core import clock
from hilos.core.outbox import relay
from hilos.engagement import campaigns
from tests.commerce.orders_helpers import location, product, receive
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.engagement.test_sending import consent

TEMPLATE = {
    "es": {
        "text": "Hola {{ customer.first_name }}, nueva colección en {{ tenant.name }}.",
        "email": {
            "subject": "Nueva colección",
            "text": "Hola {{ customer.first_name }}, nueva colección.",
            "html": "<p>Nueva colección</p>",
        },
        "whatsapp": {
            "template_name": "nueva_coleccion",
            "language": "es_ES",
            "parameters": ["customer.first_name"],
        },
    }
}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[Clock]:
    manual = Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))  # 11:00 in Madrid
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


async def run(app: Any) -> int:
    sent = await campaigns.run_due(app.state.sessionmaker)
    while await relay(app.state.sessionmaker, app.state.bus):
        pass
    return sent


async def setup(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, Any]:
    channels = {kind: await add_channel(client, tenant, kind) for kind in ("whatsapp", "email")}
    template = await client.post(
        "/v1/templates",
        json={"name": "coleccion", "purpose": "marketing", "variants": TEMPLATE},
        headers=tenant.headers,
    )
    assert template.status_code == 201, template.text
    segment = await client.post(
        "/v1/segments",
        json={"name": "con email", "rule": {"has_identity": "email"}},
        headers=tenant.headers,
    )
    assert segment.status_code == 201, segment.text
    people = {}
    for name, email, consents, extra in (
        ("Ana Ruiz", "ana@example.es", ("email",), {}),
        ("Bea Sanz", "bea@example.es", ("email",), {}),
        ("Carla Gil", "carla@example.es", ("whatsapp",), {"preferred_channel": "whatsapp"}),
        ("Dani Paz", "dani@example.es", (), {}),
    ):
        phone = f"3460000{len(people):04d}"
        found = await identify(
            client, tenant, ("email", email), ("whatsapp", phone), name=name, traits=extra
        )
        for kind in consents:
            await consent(client, tenant, found["customer_id"], kind, True)
        people[name.split()[0]] = found["customer_id"]
    return {
        "channels": channels,
        "template_id": template.json()["id"],
        "segment_id": segment.json()["id"],
        "people": people,
    }


async def test_a_campaign_reaches_each_customer_where_they_agreed_throttled_and_counted(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    shop = await setup(client, tenant)
    created = await client.post(
        "/v1/campaigns",
        json={
            "name": "Nueva colección",
            "segment_id": shop["segment_id"],
            "template_id": shop["template_id"],
            "channel_order": ["email"],
            "throttle_per_minute": {"email": 1},
            "scheduled_at": (frozen.now + timedelta(hours=1)).isoformat(),
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["status"] == "scheduled"

    assert await run(app) == 0  # not yet
    frozen.advance(hours=1)
    await run(app)
    state = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.headers)).json()
    stats = state["stats"]
    assert (state["status"], stats["recipients"]) == ("sending", 4)
    # Carla on WhatsApp (she prefers it), one of Ana and Bea by email (1 a minute), Dani has
    # agreed to nothing.
    assert stats["by_channel"] == {"whatsapp": 1, "email": 1}
    assert stats["suppressed_reasons"] == {"no_consent": 1}
    assert stats["by_status"]["pending"] == 1

    frozen.advance(minutes=1, seconds=1)
    await run(app)
    state = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.headers)).json()
    assert state["status"] == "sent"
    assert state["stats"]["by_channel"] == {"whatsapp": 1, "email": 2}

    # Carla answers on WhatsApp; Ana buys the next day.
    answered = await inbound(
        client,
        tenant,
        channel_id=shop["channels"]["whatsapp"],
        external_id="wamid.respuesta",
        kind="whatsapp",
        value="34600000002",
        text="¡Me encanta!",
    )
    assert answered.status_code == 200, answered.text
    await location(client, tenant, "ALM")
    await product(client, tenant, "VESTIDO")
    await receive(client, tenant, "VESTIDO", "ALM", 2)
    frozen.advance(days=1)
    bought = await client.post(
        "/v1/orders",
        json={
            "customer": {"id": shop["people"]["Ana"]},
            "channel": "web",
            "lines": [{"sku": "VESTIDO", "quantity": 1}],
            "idempotency_key": "ana-1",
        },
        headers=tenant.headers,
    )
    assert bought.status_code == 201, bought.text
    stats = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=tenant.headers)).json()[
        "stats"
    ]
    assert (stats["queued"], stats["replied"], stats["converted"]) == (3, 1, 1)
    recipients = await client.get(
        f"/v1/campaigns/{campaign['id']}/recipients",
        params={"status": "suppressed"},
        headers=tenant.headers,
    )
    assert [(r["customer_id"], r["reason"]) for r in recipients.json()] == [
        (shop["people"]["Dani"], "no_consent")
    ]

    # Running again sends nobody twice.
    frozen.advance(minutes=5)
    assert await run(app) == 0


async def test_quiet_hours_hold_a_campaign_until_morning(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    shop = await setup(client, tenant)
    frozen.now = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # 23:30 in Madrid
    created = await client.post(
        "/v1/campaigns",
        json={
            "name": "Noche",
            "segment_id": shop["segment_id"],
            "template_id": shop["template_id"],
            "scheduled_at": frozen.now.isoformat(),
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    await run(app)
    stats = (
        await client.get(f"/v1/campaigns/{created.json()['id']}", headers=tenant.headers)
    ).json()["stats"]
    assert stats["queued"] == 0
    assert stats["by_status"]["pending"] == 3
    frozen.now = datetime(2026, 11, 24, 8, 0, 1, tzinfo=UTC)  # 09:00 in Madrid
    await run(app)
    stats = (
        await client.get(f"/v1/campaigns/{created.json()['id']}", headers=tenant.headers)
    ).json()["stats"]
    assert stats["queued"] == 3


async def test_bad_campaigns_are_refused_and_another_tenants_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    shop = await setup(client, tenant)
    base = {"name": "x", "segment_id": shop["segment_id"], "template_id": shop["template_id"]}
    for change, field in (
        ({"segment_id": "nope"}, "segment_id"),
        ({"template_id": "nope"}, "template_id"),
        ({"throttle_per_minute": {"fax": 3}}, "throttle_per_minute.fax"),
        ({"throttle_per_minute": {"email": 0}}, "throttle_per_minute.email"),
        ({"channel_order": ["paloma"]}, "channel_order.0"),
    ):
        response = await client.post(
            "/v1/campaigns", json={**base, **change}, headers=tenant.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    created = await client.post("/v1/campaigns", json=base, headers=tenant.headers)
    assert created.status_code == 201
    other = await make_tenant("Otra")
    campaign_id = created.json()["id"]
    assert (
        await client.get(f"/v1/campaigns/{campaign_id}", headers=other.headers)
    ).status_code == 404
    cancelled = await client.post(f"/v1/campaigns/{campaign_id}/cancel", headers=other.headers)
    assert cancelled.status_code == 404

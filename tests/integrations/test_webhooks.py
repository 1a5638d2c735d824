"""Outbound signed webhooks, end to end: a stock movement through the API, the worker's relay
and webhook stage, a real HTTP receiver on a local port that checks the Standard Webhooks
signature as an ERP would, and the retries, failures and API a tenant's admin sees.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core import clock
from hilos.core.models import OutboxEvent
from hilos.core.outbox import relay
from hilos.integrations import delivery as webhooks
from hilos.integrations import service
from hilos.integrations.delivery import InvalidSignature, send_due, verify_signature
from hilos.integrations.models import WebhookDelivery
from tests.conftest import TenantHandle
from tests.integrations.receiver import Receiver, receiving


@dataclass
class ManualClock:
    now: datetime

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def moment() -> Iterator[ManualClock]:
    manual = ManualClock(datetime.now(UTC).replace(microsecond=0))
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as receiver:
        yield receiver


# --- helpers --------------------------------------------------------------------------------


async def subscribe(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    url: str,
    topics: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"url": url, "topics": topics or ["stock.changed"], **fields}
    response = await client.post("/v1/webhook-endpoints", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def stock_place(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    product = {"sku": "TEE-M", "name": "Camiseta M"}
    response = await client.post("/v1/products", json=product, headers=tenant.headers)
    assert response.status_code == 201, response.text
    location = {"code": "MAD", "name": "Almacén Madrid", "kind": "warehouse"}
    response = await client.post("/v1/locations", json=location, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def receive_stock(
    client: httpx.AsyncClient, tenant: TenantHandle, quantity: int, key: str
) -> None:
    body = {
        "sku": "TEE-M",
        "location": "MAD",
        "quantity": quantity,
        "reason": "receipt",
        "idempotency_key": key,
    }
    response = await client.post("/v1/stock/movements", json=body, headers=tenant.headers)
    assert response.status_code in (200, 201), response.text


async def publish(app: Any) -> None:
    while await relay(app.state.sessionmaker, app.state.bus):
        pass


async def send(app: Any) -> int:
    return await send_due(app.state.sessionmaker, app.state.worker.http_client())


async def deliveries(
    client: httpx.AsyncClient, tenant: TenantHandle, endpoint_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params=params, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def endpoint_of(
    client: httpx.AsyncClient, tenant: TenantHandle, endpoint_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def as_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the happy path -------------------------------------------------------------------------


async def test_a_stock_movement_reaches_the_erp_signed_and_only_where_subscribed(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    erp = await subscribe(client, tenant, receiver.url("/erp"), ["stock.changed"])
    family = await subscribe(client, tenant, receiver.url("/stock-family"), ["stock.*"])
    orders = await subscribe(client, tenant, receiver.url("/orders"), ["order.*"])
    off = await subscribe(client, tenant, receiver.url("/off"), ["*"], enabled=False)
    assert erp["secret"].startswith("whsec_")
    assert len(erp["secret"]) > len("whsec_") + 40
    assert erp["secret"] != family["secret"]
    shown = await endpoint_of(client, tenant, erp["id"])
    assert "secret" not in shown
    listed = await client.get("/v1/webhook-endpoints", headers=tenant.headers)
    assert {e["id"] for e in listed.json()["items"]} == {
        erp["id"],
        family["id"],
        orders["id"],
        off["id"],
    }
    assert all("secret" not in e for e in listed.json()["items"])

    await receive_stock(client, tenant, 5, "receipt-1")
    done = await app.state.worker.run_once()
    assert done["webhooks"] >= 2

    [request] = receiver.at("/erp")
    verify_signature(erp["secret"], request.headers, request.body)
    payload = request.json()
    assert payload["type"] == "stock.changed"
    assert payload["id"] == request.headers["webhook-id"]
    assert payload["tenant_id"] == tenant.id
    assert payload["data"]["sku"] == "TEE-M"
    assert payload["data"]["location"] == "MAD"
    assert payload["data"]["on_hand"] == 5
    assert request.headers["content-type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - moment.now.timestamp()) <= 1

    # What a receiver must refuse: another body, another secret, an old timestamp.
    tampered = request.body.replace(b'"on_hand":5', b'"on_hand":500')
    assert tampered != request.body
    with pytest.raises(InvalidSignature):
        verify_signature(erp["secret"], request.headers, tampered)
    with pytest.raises(InvalidSignature):
        verify_signature(family["secret"], request.headers, request.body)
    with pytest.raises(InvalidSignature):
        verify_signature(
            erp["secret"], request.headers, request.body, at=moment.now + timedelta(minutes=6)
        )

    [same_event] = receiver.at("/stock-family")
    verify_signature(family["secret"], same_event.headers, same_event.body)
    assert same_event.headers["webhook-id"] == request.headers["webhook-id"]
    assert receiver.at("/orders") == []
    assert receiver.at("/off") == []

    [seen] = await deliveries(client, tenant, erp["id"])
    assert seen["status"] == "delivered"
    assert seen["attempts"] == 1
    assert seen["last_status_code"] == 200
    assert seen["event_type"] == "stock.changed"
    assert seen["event_id"] == payload["id"]
    assert seen["next_attempt_at"] is None
    assert await deliveries(client, tenant, orders["id"]) == []
    assert await deliveries(client, tenant, off["id"]) == []

    # Nothing is sent twice.
    await app.state.worker.run_once()
    assert len(receiver.at("/erp")) == 1


async def test_an_event_is_fanned_out_once_even_if_the_relay_runs_twice(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    sessionmaker: async_sessionmaker[AsyncSession],
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    await receive_stock(client, tenant, 3, "once")
    await publish(app)
    await publish(app)
    # Even handed the same event again, the fan-out adds nothing.
    async with sessionmaker() as session, session.begin():
        events = (
            (await session.execute(select(OutboxEvent).where(OutboxEvent.tenant_id == tenant.id)))
            .scalars()
            .all()
        )
        await service.fan_out(session, events)
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(WebhookDelivery.endpoint_id == endpoint["id"])
        )
    assert count == 1
    await send(app)
    await send(app)
    assert len(receiver.requests) == 1


# --- retries and failures -------------------------------------------------------------------


async def test_a_500_is_retried_on_schedule_and_delivered_once(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    receiver.answer(500, text="database is down")
    await receive_stock(client, tenant, 2, "retry-me")
    await publish(app)
    await send(app)

    [first] = await deliveries(client, tenant, endpoint["id"])
    assert first["status"] == "pending"
    assert first["attempts"] == 1
    assert first["last_status_code"] == 500
    assert first["last_response"] == "database is down"
    due = as_time(first["next_attempt_at"])
    assert moment.now + timedelta(seconds=5) <= due <= moment.now + timedelta(seconds=6)
    assert (await endpoint_of(client, tenant, endpoint["id"]))["failing_since"] is not None

    await send(app)  # not due yet
    assert len(receiver.requests) == 1
    moment.advance(seconds=6)
    await send(app)
    await send(app)

    assert len(receiver.requests) == 2
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    assert one.body == two.body
    verify_signature(endpoint["secret"], two.headers, two.body)
    [done] = await deliveries(client, tenant, endpoint["id"])
    assert done["status"] == "delivered"
    assert done["attempts"] == 2
    assert done["last_status_code"] == 200
    assert (await endpoint_of(client, tenant, endpoint["id"]))["failing_since"] is None


async def test_retry_after_is_honoured(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    receiver.answer(429, headers={"Retry-After": "120"})
    await receive_stock(client, tenant, 2, "slow-down")
    await publish(app)
    await send(app)
    [waiting] = await deliveries(client, tenant, endpoint["id"])
    assert as_time(waiting["next_attempt_at"]) >= moment.now + timedelta(seconds=120)

    moment.advance(seconds=60)
    await send(app)
    assert len(receiver.requests) == 1
    moment.advance(seconds=61)
    await send(app)
    assert len(receiver.requests) == 2
    assert (await deliveries(client, tenant, endpoint["id"]))[0]["status"] == "delivered"


@pytest.mark.parametrize("status", [400, 410])
async def test_a_refusal_fails_at_once_and_is_not_retried(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
    status: int,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    receiver.answer(status, text='{"error": "unknown sku"}')
    await receive_stock(client, tenant, 1, "refused")
    await publish(app)
    await send(app)
    moment.advance(days=4)
    await send(app)

    assert len(receiver.requests) == 1
    [failed] = await deliveries(client, tenant, endpoint["id"], status="failed")
    assert failed["attempts"] == 1
    assert failed["last_status_code"] == status
    assert failed["last_response"] == '{"error": "unknown sku"}'
    assert failed["next_attempt_at"] is None
    shown = await endpoint_of(client, tenant, endpoint["id"])
    if status == 410:
        # Standard Webhooks: 410 Gone means "stop sending".
        assert shown["enabled"] is False
        assert shown["disabled_reason"] == "the receiver answered 410 Gone"
    else:
        assert shown["enabled"] is True


async def test_a_dead_receiver_fails_after_three_days_and_is_disabled_after_five(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    receiver.answer(*([503] * 30))
    start = moment.now
    await receive_stock(client, tenant, 1, "dead-1")
    await publish(app)
    await send(app)
    for delay in webhooks.RETRY_SCHEDULE:
        moment.advance(seconds=delay * (1 + webhooks.JITTER) + 1)
        await send(app)
    [gave_up] = await deliveries(client, tenant, endpoint["id"])
    assert gave_up["status"] == "failed"
    assert gave_up["attempts"] == webhooks.MAX_ATTEMPTS == 10
    assert "gave up after 10 attempts" in gave_up["last_error"]
    assert len(receiver.requests) == 10
    last_try = as_time(gave_up["last_attempt_at"])
    assert timedelta(days=3) < last_try - start < timedelta(days=3, hours=12)
    assert (await endpoint_of(client, tenant, endpoint["id"]))["enabled"] is True

    # Still failing more than five days after the first failure: Hilos stops sending.
    moment.now = start + timedelta(days=5, minutes=1)
    await receive_stock(client, tenant, 1, "dead-2")
    await publish(app)
    await send(app)
    shown = await endpoint_of(client, tenant, endpoint["id"])
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "no delivery succeeded for 5 days"
    async with sessionmaker() as session:
        disabled = (
            await session.execute(
                select(OutboxEvent.payload).where(
                    OutboxEvent.tenant_id == tenant.id,
                    OutboxEvent.topic == "webhook.endpoint_disabled",
                )
            )
        ).scalar_one()
    assert disabled["endpoint_id"] == endpoint["id"]

    # Events while disabled are not queued for it; enabling it starts afresh.
    await receive_stock(client, tenant, 1, "dead-3")
    await publish(app)
    assert len(await deliveries(client, tenant, endpoint["id"])) == 2
    response = await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["disabled_reason"] is None
    assert response.json()["failing_since"] is None
    # What waited while it was disabled (the second event's retry) goes out now.
    sent_before = len(receiver.requests)
    moment.advance(minutes=1)
    await send(app)
    assert len(receiver.requests) == sent_before + 1
    assert json.loads(receiver.requests[-1].body)["data"]["on_hand"] == 2


def test_signatures_match_the_standard_webhooks_reference_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = webhooks.signature_headers(
        [secret], webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    sent_at = datetime.fromtimestamp(1614265330, UTC)
    verify_signature(secret, headers, body, at=sent_at + timedelta(seconds=30))
    with pytest.raises(InvalidSignature):
        verify_signature(secret, {**headers, "webhook-id": "msg_other"}, body, at=sent_at)
    with pytest.raises(InvalidSignature):
        verify_signature(secret, {"webhook-id": "x", "webhook-timestamp": "1"}, body, at=sent_at)


def test_schedule_spans_about_three_days() -> None:
    total = sum(webhooks.RETRY_SCHEDULE)
    assert timedelta(days=3) <= timedelta(seconds=total) <= timedelta(days=3, hours=4)
    assert all(
        base <= webhooks.retry_delay(n + 1) <= base * 1.1
        for n, base in enumerate(webhooks.RETRY_SCHEDULE)
    )
    assert webhooks.retry_delay(1, retry_after=600) == 600
    assert webhooks.retry_delay(1, retry_after=10 * 86_400) == 86_400


async def test_a_claim_left_by_a_crashed_worker_is_sent_when_its_lease_lapses(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    await receive_stock(client, tenant, 1, "crash")
    await publish(app)
    # A worker claims everything due and dies before sending.
    async with sessionmaker() as session, session.begin():
        while await webhooks._claim(session, batch=100):
            pass
    [claimed] = await deliveries(client, tenant, endpoint["id"])
    assert claimed["status"] == "sending"

    await send(app)
    assert receiver.requests == []
    moment.advance(seconds=webhooks.CLAIM_SECONDS + 1)
    await send(app)
    assert len(receiver.requests) == 1
    [done] = await deliveries(client, tenant, endpoint["id"])
    assert done["status"] == "delivered"
    assert done["attempts"] == 2


# --- the API --------------------------------------------------------------------------------


async def test_a_failed_delivery_can_be_sent_again_by_hand(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    receiver.answer(422, text="bad payload")
    await receive_stock(client, tenant, 1, "by-hand")
    await publish(app)
    await send(app)
    [failed] = await deliveries(client, tenant, endpoint["id"])
    assert failed["status"] == "failed"

    response = await client.post(
        f"/v1/webhook-deliveries/{failed['id']}/retry", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    await send(app)
    [delivered] = await deliveries(client, tenant, endpoint["id"])
    assert delivered["status"] == "delivered"
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]

    # A delivered one can be replayed too; on a disabled endpoint it is refused.
    await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": False}, headers=tenant.headers
    )
    response = await client.post(
        f"/v1/webhook-deliveries/{failed['id']}/retry", headers=tenant.headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "endpoint_disabled"


async def test_rotating_the_secret_signs_with_both_until_the_old_one_expires(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    response = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"keep_previous_seconds": 3600},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    new_secret = response.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != endpoint["secret"]
    assert as_time(response.json()["previous_secret_expires_at"]) == moment.now + timedelta(hours=1)

    await receive_stock(client, tenant, 1, "rotation-1")
    await publish(app)
    await send(app)
    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verify_signature(endpoint["secret"], during.headers, during.body)
    verify_signature(new_secret, during.headers, during.body)

    moment.advance(hours=1, seconds=1)
    await receive_stock(client, tenant, 1, "rotation-2")
    await publish(app)
    await send(app)
    after = receiver.requests[1]
    verify_signature(new_secret, after.headers, after.body)
    with pytest.raises(InvalidSignature):
        verify_signature(endpoint["secret"], after.headers, after.body)

    # No body: the old secret keeps signing for a day.
    response = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    expires = as_time(response.json()["previous_secret_expires_at"])
    assert expires == moment.now + timedelta(days=1)


async def test_endpoints_can_be_changed_and_deleted(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url(), ["order.*"], description="ERP")
    url = f"/v1/webhook-endpoints/{endpoint['id']}"
    response = await client.patch(
        url,
        json={"topics": ["stock.*", "stock.*", "order.placed"], "description": "SAP"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["topics"] == ["stock.*", "order.placed"]
    assert response.json()["description"] == "SAP"
    assert response.json()["url"] == receiver.url()

    await receive_stock(client, tenant, 1, "patched")
    await publish(app)
    await send(app)
    assert len(receiver.requests) == 1

    response = await client.patch(url, json={"topics": None}, headers=tenant.headers)
    assert response.status_code == 422
    response = await client.delete(url, headers=tenant.headers)
    assert response.status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    await receive_stock(client, tenant, 1, "deleted")
    await publish(app)
    await send(app)
    assert len(receiver.requests) == 1


async def test_another_tenants_endpoints_and_deliveries_are_not_found(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    receiver: Receiver,
    moment: ManualClock,
) -> None:
    await stock_place(client, tenant)
    endpoint = await subscribe(client, tenant, receiver.url())
    await receive_stock(client, tenant, 1, "mine")
    await publish(app)
    [mine] = await deliveries(client, tenant, endpoint["id"])
    other: TenantHandle = await make_tenant("Otra tienda")
    base = f"/v1/webhook-endpoints/{endpoint['id']}"
    answers = [
        await client.get(base, headers=other.headers),
        await client.patch(base, json={"enabled": False}, headers=other.headers),
        await client.delete(base, headers=other.headers),
        await client.post(f"{base}/rotate-secret", headers=other.headers),
        await client.get(f"{base}/deliveries", headers=other.headers),
        await client.post(f"/v1/webhook-deliveries/{mine['id']}/retry", headers=other.headers),
    ]
    assert [answer.status_code for answer in answers] == [404] * 6
    assert all(answer.json()["error"]["code"] == "not_found" for answer in answers)
    listed = await client.get("/v1/webhook-endpoints", headers=other.headers)
    assert listed.json()["items"] == []
    # The other tenant's events never reach this tenant's endpoint.
    await stock_place(client, other)
    await receive_stock(client, other, 1, "theirs")
    await publish(app)
    await send(app)
    assert [json.loads(r.body)["tenant_id"] for r in receiver.requests] == [tenant.id]
    assert (await endpoint_of(client, tenant, endpoint["id"]))["enabled"] is True


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"url": "ftp://erp.example.com/hooks", "topics": ["stock.changed"]}, "url", "invalid_url"),
        ({"url": "erp.example.com/hooks", "topics": ["stock.changed"]}, "url", "invalid_url"),
        ({"url": "https://", "topics": ["stock.changed"]}, "url", "invalid_url"),
        ({"url": "http://xn--/", "topics": ["stock.changed"]}, "url", "invalid_url"),
        ({"url": "http://erp.example.com:99999/", "topics": ["*"]}, "url", "invalid_url"),
        ({"url": "https://erp.example.com/a b", "topics": ["stock.changed"]}, "url", "invalid_url"),
        (
            {"url": "https://erp.example.com", "topics": ["stok.changed"]},
            "topics.0",
            "unknown_topic",
        ),
        (
            {"url": "https://erp.example.com", "topics": ["stock.changed", "order"]},
            "topics.1",
            "invalid_topic",
        ),
        ({"url": "https://erp.example.com", "topics": ["order.*.x"]}, "topics.0", "invalid_topic"),
        ({"url": "https://erp.example.com", "topics": []}, "topics", "invalid"),
        ({"url": "https://erp.example.com"}, "topics", "invalid"),
        (
            {"url": "https://erp.example.com", "topics": ["*"], "secret": "whsec_x"},
            "secret",
            "invalid",
        ),
    ],
)
async def test_bad_endpoints_are_refused_naming_the_problem(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    body: dict[str, Any],
    field: str,
    code: str,
) -> None:
    response = await client.post("/v1/webhook-endpoints", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    listed = await client.get("/v1/webhook-endpoints", headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_only_admins_manage_endpoints(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.post(
        "/v1/api-keys", json={"name": "agente", "role": "agent"}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    agent = {"Authorization": f"Bearer {response.json()['key']}"}
    response = await client.get("/v1/webhook-endpoints", headers=agent)
    assert response.status_code == 403
    body = {"url": "https://erp.example.com", "topics": ["*"]}
    response = await client.post("/v1/webhook-endpoints", json=body, headers=agent)
    assert response.status_code == 403


async def test_an_order_and_its_return_reach_the_erp_signed(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, receiver: Receiver
) -> None:
    from tests.commerce.orders_helpers import advance, location, place, product, receive

    endpoint = await subscribe(client, tenant, receiver.url(), topics=["order.*", "return.*"])
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store", pickup=True)
    await product(client, tenant, "PARAGUAS")
    await receive(client, tenant, "PARAGUAS", "ALM", 2)
    order = (await place(client, tenant, {"sku": "PARAGUAS", "quantity": 1})).json()
    await advance(client, tenant, order["id"], "shipped")
    returned = await client.post(
        "/v1/returns",
        json={
            "order_id": order["id"],
            "lines": [{"sku": "PARAGUAS", "quantity": 1}],
            "location": "SOL",
        },
        headers=tenant.headers,
    )
    assert returned.status_code == 201, returned.text

    await publish(app)
    while await send(app):
        pass
    bodies = [request.json() for request in receiver.at("/hooks/erp")]
    assert [body["type"] for body in sorted(bodies, key=lambda b: b["created_at"])] == [
        "order.placed",
        "order.shipped",
        "return.created",
    ]
    placed = next(body for body in bodies if body["type"] == "order.placed")
    assert placed["data"]["order_id"] == order["id"]
    assert placed["data"]["lines"] == [
        {
            "sku": "PARAGUAS",
            "quantity": 1,
            "unit_price": 1999,
            "fulfilment": "ship",
            "location": "ALM",
            "pickup_location": None,
        }
    ]
    for request in receiver.at("/hooks/erp"):
        verify_signature(endpoint["secret"], request.headers, request.body)

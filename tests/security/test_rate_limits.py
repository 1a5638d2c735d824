"""Rate limits per API key, per console user and per webhook channel (``hilos.core.ratelimit``).

The app under test is the real one with low limits and a clock the test moves by hand, so
"the fourth request in the same instant" is exact and no test waits for time to pass.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.app import create_app
from hilos.conversations.models import Message
from hilos.core.bus import InProcessBus
from hilos.core.ratelimit import RateLimits, TokenBuckets
from hilos.core.settings import Settings
from tests.channels import fake_whatsapp
from tests.conftest import TenantHandle
from tests.web.test_console import csrf_of, make_agent, sign_in


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class LimitedApp:
    app: Any
    clock: ManualClock


@pytest.fixture
def limited(engine: AsyncEngine) -> LimitedApp:
    settings = Settings(
        database_url=str(engine.url),
        bus_url="memory://",
        rate_limit_api_per_minute=3,
        rate_limit_console_per_minute=4,
        rate_limit_webhook_per_second=2,
    )
    app = create_app(settings, engine=engine, bus=InProcessBus())
    clock = ManualClock()
    app.state.rate_limits = RateLimits(settings, clock=clock)
    return LimitedApp(app=app, clock=clock)


@pytest.fixture
async def limited_client(limited: LimitedApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=limited.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        yield client


async def _identify(client: httpx.AsyncClient, tenant: TenantHandle, email: str) -> httpx.Response:
    return await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": "email", "value": email}]},
        headers=tenant.headers,
    )


async def _customers_with(
    client: httpx.AsyncClient, tenant: TenantHandle, email: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/customers", params={"q": email}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def assert_rate_limited(response: httpx.Response, *, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.json()["error"]["retry_after"] == retry_after
    assert response.headers["Retry-After"] == str(retry_after)


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_writes_nothing(
    limited: LimitedApp,
    limited_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    make_tenant: Any,
) -> None:
    tenant: TenantHandle = await make_tenant()
    for n in range(3):
        response = await _identify(limited_client, tenant, f"cliente{n}@example.org")
        assert response.status_code == 200, response.text

    refused = await _identify(limited_client, tenant, "rechazado@example.org")
    # Three a minute: the next request is admitted one twentieth of a minute later.
    assert_rate_limited(refused, retry_after=20)
    # The unlimited app of the suite reads the same database: nobody was created.
    assert await _customers_with(client, tenant, "rechazado@example.org") == []

    limited.clock.advance(20)
    again = await _identify(limited_client, tenant, "rechazado@example.org")
    assert again.status_code == 200, again.text
    assert len(await _customers_with(client, tenant, "rechazado@example.org")) == 1


async def test_another_business_is_unaffected_and_no_key_is_not_counted(
    limited_client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant: TenantHandle = await make_tenant()
    other_business: TenantHandle = await make_tenant()
    for _ in range(3):
        assert (await limited_client.get("/v1/tenant", headers=tenant.headers)).status_code == 200
    refused = await limited_client.post(
        "/v1/api-keys", json={"name": "tienda", "role": "agent"}, headers=tenant.headers
    )
    assert_rate_limited(refused, retry_after=20)

    for _ in range(3):
        response = await limited_client.get("/v1/tenant", headers=other_business.headers)
        assert response.status_code == 200
    # A request without a valid key is refused for what it is, and counted against no one.
    assert (await limited_client.get("/v1/tenant")).status_code == 401
    unknown = {"Authorization": "Bearer hk_not_a_key"}
    assert (await limited_client.get("/v1/tenant", headers=unknown)).status_code == 401


async def test_keys_of_one_business_have_a_budget_each(
    limited: LimitedApp, limited_client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant: TenantHandle = await make_tenant()
    created = await limited_client.post(
        "/v1/api-keys", json={"name": "caja", "role": "agent"}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    till = {"Authorization": f"Bearer {created.json()['key']}"}
    for _ in range(2):
        assert (await limited_client.get("/v1/tenant", headers=tenant.headers)).status_code == 200
    assert_rate_limited(
        await limited_client.get("/v1/tenant", headers=tenant.headers), retry_after=20
    )
    for _ in range(3):
        assert (await limited_client.get("/v1/tenant", headers=till)).status_code == 200


async def _whatsapp_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    response = await client.post(
        "/v1/channels",
        json={"kind": "whatsapp", "name": "WhatsApp", "config": fake_whatsapp.CONFIG},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id


def _whatsapp_delivery(wamid: str) -> bytes:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34910000000",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "34612000111"}],
                            "messages": [
                                {
                                    "from": "34612000111",
                                    "id": wamid,
                                    "timestamp": "1763805600",
                                    "type": "text",
                                    "text": {"body": "Hola"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


async def _post_whatsapp(client: httpx.AsyncClient, channel_id: str, wamid: str) -> httpx.Response:
    body = _whatsapp_delivery(wamid)
    return await client.post(
        f"/webhooks/whatsapp/{channel_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": fake_whatsapp.sign(body),
        },
    )


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(count or 0)


async def test_a_webhook_channel_over_its_limit_gets_429_and_stores_nothing(
    limited: LimitedApp,
    limited_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    busy = await _whatsapp_channel(client, tenant)
    quiet = await _whatsapp_channel(client, tenant)
    for n in range(2):
        response = await _post_whatsapp(limited_client, busy, f"wamid.busy{n}")
        assert response.status_code == 200, response.text

    refused = await _post_whatsapp(limited_client, busy, "wamid.refused")
    assert_rate_limited(refused, retry_after=1)
    assert await _stored(sessionmaker, busy) == 2

    # Another channel, even of the same business, has its own budget.
    for n in range(2):
        response = await _post_whatsapp(limited_client, quiet, f"wamid.quiet{n}")
        assert response.status_code == 200, response.text

    # The provider retries after Retry-After and the message arrives once.
    limited.clock.advance(1)
    retried = await _post_whatsapp(limited_client, busy, "wamid.refused")
    assert retried.status_code == 200, retried.text
    assert await _stored(sessionmaker, busy) == 3


async def test_unknown_channels_and_bad_signatures_spend_no_budget(
    limited_client: httpx.AsyncClient, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for _ in range(5):
        response = await _post_whatsapp(limited_client, "ch_does_not_exist", "wamid.x")
        assert response.status_code == 404
    channel_id = await _whatsapp_channel(client, tenant)
    forged = _whatsapp_delivery("wamid.forged")
    for _ in range(5):
        response = await limited_client.post(
            f"/webhooks/whatsapp/{channel_id}",
            content=forged,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"},
        )
        assert response.status_code == 401
    for n in range(2):
        response = await _post_whatsapp(limited_client, channel_id, f"wamid.genuine{n}")
        assert response.status_code == 200, response.text


async def test_a_console_user_over_the_limit_sees_a_429_page_in_their_language(
    limited: LimitedApp,
    limited_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
) -> None:
    agent = await make_agent(client, tenant, locale="es")
    signed_in = await sign_in(limited_client, agent.email)
    assert signed_in.status_code == 303, signed_in.text
    # Signing in is not a signed-in page; each inbox view is.
    for _ in range(4):
        page = await limited_client.get("/console")
        assert page.status_code == 200
    refused = await limited_client.get("/console")
    assert refused.status_code == 429
    assert "Demasiadas peticiones" in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    # The form on the refused page is the session's own: nothing else was lost.
    assert csrf_of(page)

    colleague = await make_agent(client, tenant)
    transport = httpx.ASGITransport(app=limited.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as browser:
        assert (await sign_in(browser, colleague.email)).status_code == 303
        assert (await browser.get("/console")).status_code == 200


def test_a_bucket_lets_a_burst_through_then_refills_at_the_rate() -> None:
    clock = ManualClock()
    buckets = TokenBuckets(limit=60, period=60.0, clock=clock)
    assert [buckets.take("k") for _ in range(60)] == [0.0] * 60
    assert buckets.take("k") == pytest.approx(1.0)
    # A refused request takes nothing: waiting the second it was told is enough.
    assert buckets.take("k") == pytest.approx(1.0)
    clock.advance(0.5)
    assert buckets.take("k") == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.take("k") == 0.0
    assert buckets.take("k") > 0
    # After a quiet minute the whole burst is back.
    clock.advance(60)
    assert [buckets.take("k") for _ in range(60)] == [0.0] * 60


def test_the_table_of_keys_stays_bounded() -> None:
    clock = ManualClock()
    buckets = TokenBuckets(limit=10, period=1.0, clock=clock, max_keys=100)
    for n in range(1_000):
        buckets.take(f"channel-{n}")
        clock.advance(0.5)
    assert len(buckets._full_at) <= 100


def test_zero_turns_a_limit_off() -> None:
    limits = RateLimits(
        Settings(
            rate_limit_api_per_minute=0,
            rate_limit_console_per_minute=0,
            rate_limit_webhook_per_second=0,
        )
    )
    for _ in range(10_000):
        limits.admit_api_key("k")
        limits.admit_console_user("u")
        limits.admit_webhook("c")


def test_the_defaults_are_far_above_the_benchmarks() -> None:
    settings = Settings()
    # benchmarks/ingest.py and webhooks.py send about 1,500 a second with one key or channel.
    assert settings.rate_limit_api_per_minute >= 3 * 1_500 * 60
    assert settings.rate_limit_webhook_per_second >= 3 * 1_500

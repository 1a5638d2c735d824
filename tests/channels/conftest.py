"""Helpers for channel tests: configured channels, signed webhooks, delivery to fake providers.

Fake providers are ``httpx.MockTransport`` handlers built from each provider's documented
request and response formats; the delivery worker's real code talks to them through an
``httpx.AsyncClient`` whose transport is the fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hilos.channels.delivery import deliver_due
from hilos.core import clock
from tests.conftest import TenantHandle


async def add_configured_channel(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    kind: str,
    config: dict[str, Any],
    name: str | None = None,
) -> str:
    response = await client.post(
        "/v1/channels",
        json={"kind": kind, "name": name or kind, "config": config},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id


async def deliver(app: Any, handler: Any, tenant: TenantHandle | None = None) -> dict[str, int]:
    """Run the delivery worker once against a fake provider (an ``httpx.MockTransport``
    handler, or a fake object that is one). Tests share one database, so a test that counts
    what was sent names its tenant: other tests' replies are not its fake's business."""
    transport = (
        handler if isinstance(handler, httpx.AsyncBaseTransport) else httpx.MockTransport(handler)
    )
    async with httpx.AsyncClient(transport=transport) as http:
        return await deliver_due(
            app.state.sessionmaker, http, tenant_id=tenant.id if tenant else None
        )


async def messages(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[Any]:
    response = await client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


class FrozenClock:
    """The clock a test moves by hand (retry backoff, the WhatsApp window, polling)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    clock.set_now(lambda: frozen.now)
    yield frozen
    clock.set_now(None)

"""Helpers for channel tests: configured channels, signed webhooks, delivery to fake providers.

Fake providers are ``httpx.MockTransport`` handlers built from each provider's documented
request and response formats; the delivery worker's real code talks to them through an
``httpx.AsyncClient`` whose transport is the fake.
"""

from __future__ import annotations

from typing import Any

import httpx

from hilos.channels.delivery import deliver_due
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

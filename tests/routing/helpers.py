"""Helpers for routing tests: queues, agents, presence, offers and the routing log over the API,
and a clock the test moves by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.conftest import TenantHandle

PASSWORD = "una-clave-larga"


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def create_queue(
    client: httpx.AsyncClient, tenant: TenantHandle, name: str, **fields: Any
) -> dict[str, Any]:
    # These tests follow offers: a queue that asks its agents to accept, unless told otherwise.
    body = {
        "name": name,
        "skills": ["es"],
        "channel_kinds": ["whatsapp"],
        "auto_assign": False,
        **fields,
    }
    response = await client.post("/v1/queues", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_agent(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    email: str,
    *,
    skills: dict[str, int] | None = None,
    online: bool = True,
    **fields: Any,
) -> str:
    body = {
        "email": email,
        "name": email.split("@")[0].title(),
        "skills": {"es": 2} if skills is None else skills,
        "password": PASSWORD,
        **fields,
    }
    response = await client.post("/v1/agents", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    if online:
        await set_presence(client, tenant, agent_id, "online")
    return agent_id


async def set_presence(
    client: httpx.AsyncClient, tenant: TenantHandle, agent_id: str, status: str
) -> dict[str, Any]:
    response = await client.put(
        f"/v1/agents/{agent_id}/presence", json={"status": status}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def offers(
    client: httpx.AsyncClient, tenant: TenantHandle, **query: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/offers", params=query, headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def offer_of(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> dict[str, Any] | None:
    """The outstanding offer of a conversation, if any."""
    found = [o for o in await offers(client, tenant) if o["conversation_id"] == conversation_id]
    assert len(found) <= 1, found
    return found[0] if found else None


async def routing_log(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/conversations/{conversation_id}/routing", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def conversation(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def stats(client: httpx.AsyncClient, tenant: TenantHandle, queue_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/queues/{queue_id}/stats", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def accept(client: httpx.AsyncClient, tenant: TenantHandle, offer_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/offers/{offer_id}/accept", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result

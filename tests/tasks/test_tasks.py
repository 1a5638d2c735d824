"""Call-back tasks: opened by missed calls, listed, assigned, closed, and scoped by tenant."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.models import OutboxEvent
from tests.channels.conftest import add_configured_channel
from tests.conftest import TenantHandle, identify

TOKEN = "pbx-token-for-tasks"


async def missed_call(
    client: httpx.AsyncClient,
    channel_id: str,
    *,
    call_id: str,
    caller: str,
    at: str,
    event: str = "missed",
) -> None:
    body = {"call_id": call_id, "event": event, "from": caller, "occurred_at": at}
    response = await client.post(
        f"/webhooks/voice/{channel_id}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def three_missed_calls(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    channel_id = await add_configured_channel(client, tenant, "voice", {"auth_token": TOKEN})
    await missed_call(
        client, channel_id, call_id="m-1", caller="+34600000001", at="2026-11-22T09:00:00Z"
    )
    await missed_call(
        client, channel_id, call_id="m-3", caller="+34600000003", at="2026-11-22T11:00:00Z"
    )
    await missed_call(
        client, channel_id, call_id="m-2", caller="+34600000002", at="2026-11-22T10:00:00Z"
    )
    # An answered call that ended needs no call-back.
    await missed_call(
        client,
        channel_id,
        call_id="m-4",
        caller="+34600000004",
        at="2026-11-22T12:00:00Z",
        event="ended",
    )
    return channel_id


async def list_tasks(client: httpx.AsyncClient, tenant: TenantHandle, query: str = "") -> Any:
    response = await client.get(f"/v1/tasks{query}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def add_user(client: httpx.AsyncClient, tenant: TenantHandle, email: str) -> str:
    response = await client.post(
        "/v1/users",
        json={"email": email, "name": "Agente", "password": "una-clave-larga"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def test_open_call_backs_are_listed_newest_due_first_a_page_at_a_time(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await three_missed_calls(client, tenant)
    first = await list_tasks(client, tenant, "?status=open&kind=call_back&limit=2")
    assert [t["data"]["caller"] for t in first["items"]] == ["+34600000003", "+34600000002"]
    assert all(t["kind"] == "call_back" and t["status"] == "open" for t in first["items"])
    assert first["next_cursor"]
    second = await list_tasks(
        client, tenant, f"?status=open&kind=call_back&limit=2&cursor={first['next_cursor']}"
    )
    assert [t["data"]["caller"] for t in second["items"]] == ["+34600000001"]
    assert second["next_cursor"] is None
    assert (await list_tasks(client, tenant, "?kind=something_else"))["items"] == []


async def test_a_task_is_closed_reopened_and_cancelled(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await three_missed_calls(client, tenant)
    task = (await list_tasks(client, tenant, "?limit=1"))["items"][0]
    done = await client.patch(
        f"/v1/tasks/{task['id']}", json={"status": "done"}, headers=tenant.headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    assert done.json()["completed_at"] is not None
    open_ids = [t["id"] for t in (await list_tasks(client, tenant, "?status=open"))["items"]]
    assert task["id"] not in open_ids
    assert len(open_ids) == 2
    assert [t["id"] for t in (await list_tasks(client, tenant, "?status=done"))["items"]] == [
        task["id"]
    ]
    reopened = await client.patch(
        f"/v1/tasks/{task['id']}", json={"status": "open"}, headers=tenant.headers
    )
    assert reopened.json()["completed_at"] is None
    cancelled = await client.patch(
        f"/v1/tasks/{task['id']}", json={"status": "cancelled"}, headers=tenant.headers
    )
    assert cancelled.json()["status"] == "cancelled"
    fetched = await client.get(f"/v1/tasks/{task['id']}", headers=tenant.headers)
    assert fetched.json()["status"] == "cancelled"
    invalid = await client.patch(
        f"/v1/tasks/{task['id']}", json={"status": "archived"}, headers=tenant.headers
    )
    assert invalid.status_code == 422
    async with sessionmaker() as session:
        changes = list(
            await session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == "task.updated")
                .order_by(OutboxEvent.id)
            )
        )
    assert [c["status"] for c in changes] == ["done", "open", "cancelled"]


async def test_tasks_are_assigned_only_to_the_tenants_own_people(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    await three_missed_calls(client, tenant)
    other = await make_tenant("Otra tienda")
    stranger = await add_user(client, other, "extrana@otra.example")
    agent = await add_user(client, tenant, "agente@tienda.example")
    task = (await list_tasks(client, tenant, "?limit=1"))["items"][0]
    path = f"/v1/tasks/{task['id']}"
    refused = await client.patch(path, json={"assignee_id": stranger}, headers=tenant.headers)
    assert refused.status_code == 404
    assert (await client.get(path, headers=tenant.headers)).json()["assignee_id"] is None
    assigned = await client.patch(path, json={"assignee_id": agent}, headers=tenant.headers)
    assert assigned.json()["assignee_id"] == agent
    assert [t["id"] for t in (await list_tasks(client, tenant, f"?assignee_id={agent}"))["items"]]
    unassigned = await client.patch(path, json={"assignee_id": None}, headers=tenant.headers)
    assert unassigned.json()["assignee_id"] is None
    assert unassigned.json()["status"] == "open", "only what was sent changes"


async def test_another_tenants_task_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    await three_missed_calls(client, tenant)
    task = (await list_tasks(client, tenant, "?limit=1"))["items"][0]
    other = await make_tenant("Otra tienda")
    path = f"/v1/tasks/{task['id']}"
    assert (await client.get(path, headers=other.headers)).status_code == 404
    patched = await client.patch(path, json={"status": "done"}, headers=other.headers)
    assert patched.status_code == 404
    assert (await list_tasks(client, other))["items"] == []
    assert (await client.get(path, headers=tenant.headers)).json()["status"] == "open"


async def test_a_call_back_follows_its_customer_through_a_merge_and_back(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    older = await identify(client, tenant, ("email", "ana@example.es"))
    channel_id = await add_configured_channel(client, tenant, "voice", {"auth_token": TOKEN})
    await missed_call(
        client, channel_id, call_id="mm-1", caller="+34600000009", at="2026-11-22T09:00:00Z"
    )
    [task] = (await list_tasks(client, tenant))["items"]
    caller_id = task["customer_id"]
    assert caller_id != older["customer_id"]
    await identify(client, tenant, ("email", "ana@example.es"), ("phone", "+34600000009"))
    [merged] = (await list_tasks(client, tenant))["items"]
    assert merged["customer_id"] == older["customer_id"]
    undone = await client.post(
        f"/v1/customers/{caller_id}/unmerge", json={}, headers=tenant.headers
    )
    assert undone.status_code == 200, undone.text
    [restored] = (await list_tasks(client, tenant))["items"]
    assert restored["customer_id"] == caller_id

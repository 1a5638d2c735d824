"""``GET /v1/audit-log``: who did what, when and in which request, for the tenant's admins;
filtered and paged; written with the action it records and never changed afterwards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.clock import now
from hilos.privacy.models import AuditEntry
from tests.conftest import TenantHandle, identify


async def entries(
    client: httpx.AsyncClient, tenant: TenantHandle, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get("/v1/audit-log", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def admin_key_id(log: list[dict[str, Any]]) -> str:
    key_id: str = next(e["actor"]["key_id"] for e in log if e["actor"]["type"] == "api_key")
    return key_id


async def test_keys_users_and_settings_are_recorded_with_who_and_which_request(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await client.post(
        "/v1/api-keys",
        json={"name": "tpv", "role": "agent"},
        headers={**tenant.headers, "X-Request-ID": "req-key-1"},
    )
    assert created.status_code == 201, created.text
    key = created.json()
    user = await client.post(
        "/v1/users",
        json={
            "email": "lucia@tienda.es",
            "name": "Lucía",
            "password": "clave-de-prueba-1",
            "role": "supervisor",
        },
        headers={**tenant.headers, "X-Request-ID": "req-user-1"},
    )
    assert user.status_code == 201, user.text
    revoked = await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.headers)
    assert revoked.status_code == 200
    updated = await client.patch(
        "/v1/tenant", json={"reopen_window_seconds": 3600}, headers=tenant.headers
    )
    assert updated.status_code == 200

    log = await entries(client, tenant)
    assert [e["action"] for e in log] == [
        "tenant.updated",
        "api_key.revoked",
        "user.created",
        "api_key.created",
    ]
    by_action = {e["action"]: e for e in log}
    key_entry = by_action["api_key.created"]
    assert key_entry["subject_id"] == key["id"]
    assert key_entry["details"] == {"name": "tpv", "role": "agent", "user_id": None}
    assert key_entry["request_id"] == "req-key-1"
    assert key_entry["actor"]["type"] == "api_key"
    assert key_entry["actor"]["role"] == "admin"
    assert key_entry["actor"]["key_id"]
    assert key_entry["actor"]["key_id"] != key["id"]
    assert key["key"] not in str(log), "a key is shown once, never logged"
    user_entry = by_action["user.created"]
    assert (user_entry["subject_id"], user_entry["request_id"]) == (user.json()["id"], "req-user-1")
    assert user_entry["details"] == {"email": "lucia@tienda.es", "role": "supervisor"}
    assert "clave-de-prueba-1" not in str(log)
    assert by_action["tenant.updated"]["details"] == {"changes": {"reopen_window_seconds": 3600}}
    assert all(e["request_id"] for e in log)


async def test_a_refused_action_leaves_no_entry(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {
        "email": "lucia@tienda.es",
        "name": "L",
        "password": "clave-de-prueba-1",
        "role": "agent",
    }
    assert (await client.post("/v1/users", json=body, headers=tenant.headers)).status_code == 201
    again = await client.post("/v1/users", json=body, headers=tenant.headers)
    assert again.status_code == 409
    assert [e["action"] for e in await entries(client, tenant)] == ["user.created"]


async def test_merges_are_recorded_as_done_by_hilos_and_unmerges_by_whoever_asked(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    older = await identify(client, tenant, ("email", "ana@example.es"))
    newer = await identify(client, tenant, ("phone", "+34600999888"))
    response = await client.post(
        "/v1/customers/identify",
        json={
            "identities": [
                {"kind": "email", "value": "ana@example.es"},
                {"kind": "phone", "value": "+34600999888"},
            ]
        },
        headers={**tenant.headers, "X-Request-ID": "req-merge"},
    )
    assert response.json()["merged_customer_ids"] == [newer["customer_id"]]
    [merged] = await entries(client, tenant, action="customer.merged")
    assert merged["actor"] == {"type": "system", "key_id": None, "user_id": None, "role": None}
    assert merged["request_id"] == "req-merge"
    assert merged["subject_id"] == older["customer_id"]
    assert merged["details"]["merged_id"] == newer["customer_id"]
    assert merged["details"]["reason"] == "identify"
    assert "ana@example.es" not in str(merged)

    undone = await client.post(
        f"/v1/customers/{newer['customer_id']}/unmerge", headers=tenant.headers
    )
    assert undone.status_code == 200, undone.text
    [unmerged] = await entries(client, tenant, action="customer.unmerged")
    assert unmerged["actor"]["type"] == "api_key"
    assert unmerged["subject_id"] == older["customer_id"]
    assert unmerged["details"] == {
        "merge_id": merged["details"]["merge_id"],
        "merged_id": newer["customer_id"],
    }
    # A family of actions at once.
    assert [e["action"] for e in await entries(client, tenant, action="customer.*")] == [
        "customer.unmerged",
        "customer.merged",
    ]


async def test_the_log_filters_by_action_actor_subject_and_time_and_pages_with_a_cursor(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    for n in range(5):
        created = await client.post(
            "/v1/api-keys", json={"name": f"k{n}", "role": "agent"}, headers=tenant.headers
        )
        assert created.status_code == 201
    await identify(client, tenant, ("email", "ana@example.es"))
    await identify(client, tenant, ("phone", "+34600999888"))
    await identify(client, tenant, ("email", "ana@example.es"), ("phone", "+34600999888"))

    everything = await entries(client, tenant)
    assert len(everything) == 6
    admin = admin_key_id(everything)
    assert len(await entries(client, tenant, action="api_key.created")) == 5
    assert len(await entries(client, tenant, action="api_key.*")) == 5
    assert len(await entries(client, tenant, actor=admin)) == 5
    assert [e["action"] for e in await entries(client, tenant, actor="system")] == [
        "customer.merged"
    ]
    merged = everything[0]
    assert await entries(
        client, tenant, subject_type="customer", subject_id=merged["subject_id"]
    ) == [merged]
    assert await entries(client, tenant, since=(now() + timedelta(minutes=1)).isoformat()) == []
    assert len(await entries(client, tenant, until=(now() + timedelta(minutes=1)).isoformat())) == 6

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/audit-log", params=params, headers=tenant.headers)).json()
        pages.append([e["id"] for e in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [i for page in pages for i in page] == [e["id"] for e in everything]

    other: TenantHandle = await make_tenant("Otra tienda")
    assert await entries(client, other) == []

    for params, field in (
        ({"since": "2026-03-02", "until": "2026-03-01"}, "since"),
        ({"action": "*"}, "action"),
        ({"limit": 0}, "query.limit"),
        ({"since": "ayer"}, "query.since"),
    ):
        refused = await client.get("/v1/audit-log", params=params, headers=tenant.headers)
        assert refused.status_code == 422, (params, refused.text)
        assert refused.json()["error"]["field"] == field, params


async def test_the_database_refuses_to_change_an_entry(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await client.post(
        "/v1/api-keys", json={"name": "k", "role": "agent"}, headers=tenant.headers
    )
    assert created.status_code == 201
    async with sessionmaker() as session:
        with pytest.raises((DBAPIError, IntegrityError)) as refused:
            async with session.begin():
                await session.execute(
                    update(AuditEntry).where(AuditEntry.tenant_id == tenant.id).values(action="x")
                )
        assert "append-only" in str(refused.value)
    assert [e["action"] for e in await entries(client, tenant)] == ["api_key.created"]


async def test_every_settings_change_is_recorded_with_its_fields_and_no_secret(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await client.post(
        "/v1/channels",
        json={
            "kind": "whatsapp",
            "name": "WhatsApp tienda",
            "config": {"phone_number_id": "106540352242922", "access_token": "EAAG-secret-1"},
        },
        headers={**tenant.headers, "X-Request-ID": "req-channel-1"},
    )
    assert channel.status_code == 201, channel.text
    renamed = await client.patch(
        f"/v1/channels/{channel.json()['id']}", json={"name": "WA"}, headers=tenant.headers
    )
    assert renamed.status_code == 200, renamed.text
    policy = await client.post(
        "/v1/sla-policies",
        json={"name": "Oro", "first_response_seconds": 300},
        headers=tenant.headers,
    )
    assert policy.status_code == 201, policy.text
    agent = await client.post(
        "/v1/agents", json={"email": "ana@tienda.es", "name": "Ana"}, headers=tenant.headers
    )
    assert agent.status_code == 201, agent.text
    endpoint = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://crm.example.com/hilos", "topics": ["message.received"]},
        headers=tenant.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    rotated = await client.post(
        f"/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", headers=tenant.headers
    )
    assert rotated.status_code == 200, rotated.text
    refused = await client.post(
        "/v1/sla-policies", json={"name": "", "first_response_seconds": -1}, headers=tenant.headers
    )
    assert refused.status_code == 422

    log = await entries(client, tenant, action="settings.*")
    assert [e["action"] for e in log] == [
        "settings.integrations.rotate_secret",
        "settings.integrations.create_endpoint",
        "settings.routing.create_agent",
        "settings.sla.create_policy",
        "settings.channels.update_channel",
        "settings.channels.create_channel",
    ]
    by_action = {e["action"]: e for e in log}
    created = by_action["settings.channels.create_channel"]
    assert created["request_id"] == "req-channel-1"
    assert created["actor"]["role"] == "admin"
    assert created["details"]["route"] == "POST /v1/channels"
    assert created["details"]["fields"]["name"] == "WhatsApp tienda"
    assert created["details"]["fields"]["config"] == {"fields": ["access_token", "phone_number_id"]}
    update = by_action["settings.channels.update_channel"]
    assert (update["subject_type"], update["subject_id"]) == ("channel", channel.json()["id"])
    assert update["details"]["fields"] == {"name": "WA"}
    assert by_action["settings.routing.create_agent"]["details"]["fields"]["email"] == (
        "ana@tienda.es"
    )
    assert by_action["settings.integrations.rotate_secret"]["subject_id"] == endpoint.json()["id"]
    assert "EAAG-secret-1" not in str(log)
    assert endpoint.json()["secret"] not in str(log)
    assert rotated.json()["secret"] not in str(log)
    # Endpoints that write a precise entry of their own get no second, generic one.
    await client.patch("/v1/tenant", json={"reopen_window_seconds": 60}, headers=tenant.headers)
    assert [e["action"] for e in await entries(client, tenant)][0] == "tenant.updated"
    assert not await entries(client, tenant, action="settings.core.*")


async def test_an_agent_changes_nothing_and_logs_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    key = await client.post(
        "/v1/api-keys", json={"name": "ana", "role": "agent"}, headers=tenant.headers
    )
    agent_headers = {"Authorization": f"Bearer {key.json()['key']}"}
    refused = await client.post(
        "/v1/channels", json={"kind": "api", "name": "x"}, headers=agent_headers
    )
    assert refused.status_code == 403
    assert not await entries(client, tenant, action="settings.*")

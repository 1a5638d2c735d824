"""Tenants, keys and roles: who may do what, and what another tenant cannot see."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from hilos.cli import app as cli
from hilos.core.models import ApiKey, User
from hilos.core.settings import get_settings
from tests.conftest import TenantHandle, add_channel, identify, inbound


async def test_admin_manages_keys_and_a_revoked_key_is_401(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await client.post(
        "/v1/api-keys", json={"name": "integración", "role": "agent"}, headers=tenant.headers
    )
    assert created.status_code == 201
    secret = created.json()["key"]
    agent = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/v1/conversations", headers=agent)).status_code == 200

    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()
    assert all("key" not in row for row in listed)
    assert secret not in json.dumps(listed)
    async with sessionmaker() as session:
        stored = await session.scalar(select(ApiKey).where(ApiKey.id == created.json()["id"]))
    assert stored is not None
    assert secret not in stored.key_hash

    revoked = await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=tenant.headers)
    assert revoked.json()["revoked_at"] is not None
    after = await client.get("/v1/conversations", headers=agent)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "unauthorized"
    garbage = await client.get("/v1/conversations", headers={"Authorization": "Bearer hk_nope"})
    assert garbage.status_code == 401


async def test_an_agent_key_cannot_manage_keys_users_or_settings(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await client.post(
        "/v1/api-keys", json={"name": "agente", "role": "agent"}, headers=tenant.headers
    )
    agent = {"Authorization": f"Bearer {created.json()['key']}"}
    attempts = [
        ("POST", "/v1/api-keys", {"name": "x", "role": "admin"}),
        ("GET", "/v1/api-keys", None),
        ("DELETE", f"/v1/api-keys/{created.json()['id']}", None),
        ("POST", "/v1/users", {"email": "a@example.es", "name": "A", "password": "12345678"}),
        ("GET", "/v1/users", None),
        ("PATCH", "/v1/tenant", {"reopen_window_seconds": 60}),
        ("POST", "/v1/channels", {"kind": "sms", "name": "SMS"}),
        ("POST", "/v1/blocked-values", {"kind": "email", "value": "x@example.es"}),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, json=body, headers=agent)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "forbidden"


async def test_users_have_argon2_hashes_and_unique_emails(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = {
        "email": "Supervisora@Example.es",
        "name": "Sara",
        "role": "supervisor",
        "password": "contraseña-larga",
    }
    created = await client.post("/v1/users", json=body, headers=tenant.headers)
    assert created.status_code == 201
    assert created.json()["email"] == "supervisora@example.es"
    assert "password" not in created.text
    async with sessionmaker() as session:
        user = await session.scalar(select(User).where(User.id == created.json()["id"]))
    assert user is not None
    assert user.password_hash.startswith("$argon2")
    again = await client.post("/v1/users", json=body, headers=tenant.headers)
    assert again.status_code == 409
    short = await client.post(
        "/v1/users",
        json={**body, "email": "b@example.es", "password": "corta"},
        headers=tenant.headers,
    )
    assert short.status_code == 422


async def test_tenant_settings_validate_and_apply(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    bad = await client.patch(
        "/v1/tenant", json={"timezone": "Mars/Olympus"}, headers=tenant.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "timezone"
    changed = await client.patch(
        "/v1/tenant",
        json={"default_region": "mx", "timezone": "America/Mexico_City"},
        headers=tenant.headers,
    )
    assert changed.json()["default_region"] == "MX"
    customer = await identify(client, tenant, ("phone", "55 1234 5678"))
    view = (
        await client.get(f"/v1/customers/{customer['customer_id']}", headers=tenant.headers)
    ).json()
    assert view["identities"][0]["value"] == "+525512345678"


async def test_another_tenants_ids_are_404_everywhere(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id="m1",
            kind="whatsapp",
            value="34600123123",
        )
    ).json()
    key = (await client.post("/v1/api-keys", json={"name": "k"}, headers=tenant.headers)).json()
    blocked = (
        await client.post(
            "/v1/blocked-values",
            json={"kind": "email", "value": "b@example.es"},
            headers=tenant.headers,
        )
    ).json()
    intruder = await make_tenant(name="Otra tienda")
    customer, conversation = received["customer_id"], received["conversation_id"]
    attempts = [
        ("GET", f"/v1/channels/{channel}", None),
        ("GET", f"/v1/customers/{customer}", None),
        ("PATCH", f"/v1/customers/{customer}", {"name": "x"}),
        ("GET", f"/v1/customers/{customer}/merges", None),
        ("POST", f"/v1/customers/{customer}/unmerge", None),
        ("GET", f"/v1/customers/{customer}/consents", None),
        (
            "POST",
            f"/v1/customers/{customer}/consents",
            {"purpose": "marketing", "channel_kind": "email", "granted": True},
        ),
        ("GET", f"/v1/conversations/{conversation}", None),
        ("PATCH", f"/v1/conversations/{conversation}", {"status": "resolved"}),
        ("GET", f"/v1/conversations/{conversation}/messages", None),
        ("POST", f"/v1/conversations/{conversation}/messages", {"text": "hola"}),
        ("DELETE", f"/v1/api-keys/{key['id']}", None),
        ("DELETE", f"/v1/blocked-values/{blocked['id']}", None),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    listing = await client.get(
        "/v1/conversations", params={"customer_id": customer}, headers=intruder.headers
    )
    assert listing.json()["items"] == []
    still = await client.get(f"/v1/conversations/{conversation}", headers=tenant.headers)
    assert still.json()["status"] == "open"


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HILOS_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_tenant_create_json_prints_exactly_one_line_for_scripts(cli_database: str) -> None:
    result = CliRunner().invoke(cli, ["tenant", "create", "Tienda Uno", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    parsed = json.loads(lines[0])
    assert set(parsed) == {"tenant_id", "api_key"}
    assert parsed["api_key"].startswith("hk_")

    user = CliRunner().invoke(
        cli,
        [
            "user",
            "create",
            "--tenant",
            parsed["tenant_id"],
            "--email",
            "ana@example.es",
            "--name",
            "Ana",
            "--role",
            "admin",
            "--password",
            "una-clave-larga",
        ],
    )
    assert user.exit_code == 0, user.output
    duplicate = CliRunner().invoke(
        cli,
        [
            "user",
            "create",
            "--tenant",
            parsed["tenant_id"],
            "--email",
            "ana@example.es",
            "--name",
            "Ana",
            "--password",
            "una-clave-larga",
        ],
    )
    assert duplicate.exit_code == 2
    unknown = CliRunner().invoke(
        cli,
        [
            "user",
            "create",
            "--tenant",
            "nope",
            "--email",
            "b@example.es",
            "--name",
            "B",
            "--password",
            "una-clave-larga",
        ],
    )
    assert unknown.exit_code == 2

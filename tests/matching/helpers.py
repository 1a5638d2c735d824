"""Factories for the matching tests: profiles made through the public API, the online check
run the way the worker runs it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.clock import now
from hilos.matching import online
from tests.conftest import TenantHandle


async def profile(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    external: str,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    **traits: Any,
) -> str:
    """A customer identified by an external id (and email/phone), with traits; the email and
    phone are traits too, as Segment's identify keeps them (a value another profile holds stays
    in the traits, not linked)."""
    identities = [{"kind": "external", "value": external}]
    if email:
        identities.append({"kind": "email", "value": email})
        traits["email"] = email
    if phone:
        identities.append({"kind": "phone", "value": phone})
        traits["phone"] = phone
    response = await client.post(
        "/v1/customers/identify",
        json={
            "identities": identities,
            **({"name": name} if name else {}),
            "traits": {k: v for k, v in traits.items() if v is not None},
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    customer_id: str = response.json()["customer_id"]
    return customer_id


async def maria_jose(client: httpx.AsyncClient, tenant: TenantHandle) -> tuple[str, str]:
    """The issue's example: María José in the store and on the web, no email in common."""
    store = await profile(
        client,
        tenant,
        external="tpv-1001",
        name="María José Fernández",
        email="mjfernandez@example.es",
        postcode="28001",
        city="Madrid",
        birth_date="1980-05-17",
    )
    web = await profile(
        client,
        tenant,
        external="web-77",
        name="Mª José Fernandez Ruiz",
        email="mariajose.fr@example.org",
        postcode="28001",
        city="Madrid",
        birth_date="1980-05-17",
    )
    return store, web


async def father_and_son(client: httpx.AsyncClient, tenant: TenantHandle) -> tuple[str, str]:
    """José Luis García Pérez, born 1952, and his son of the same name, born 1981: one address
    and one landline (the father's identity, in the son's traits as a CRM would keep it)."""
    household: dict[str, Any] = {
        "name": "José Luis García Pérez",
        "street": "Calle Mayor 12, 3º B",
        "postcode": "28013",
        "city": "Madrid",
    }
    father = await profile(
        client, tenant, external="crm-3", phone="+34915550101", birth_date="1952-03-02", **household
    )
    son = await profile(client, tenant, external="crm-4", birth_date="1981-11-23", **household)
    patched = await client.patch(
        f"/v1/customers/{son}", json={"traits": {"phone": "+34915550101"}}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    return father, son


async def start_checking_now(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Put the online check's position at this moment: only this test's profiles are read."""
    async with sessionmaker() as session, session.begin():
        await online.move_cursor(session, to=now() - timedelta(milliseconds=1))


async def run_check(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """What the worker's matching stage does, without waiting for changes to settle."""
    done: dict[str, int] = {}
    while True:
        result = await online.check_due(sessionmaker, settle_seconds=0)
        for key, value in result.items():
            done[key] = done.get(key, 0) + value
        if result["matching_checked"] == 0:
            return done


async def suggestions(
    client: httpx.AsyncClient, tenant: TenantHandle, status: str = "pending"
) -> list[dict[str, Any]]:
    response = await client.get(
        "/v1/match-suggestions", params={"status": status}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def key_with_role(
    client: httpx.AsyncClient, tenant: TenantHandle, role: str
) -> dict[str, str]:
    response = await client.post(
        "/v1/api-keys", json={"name": f"clave {role}", "role": role}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def set_thresholds(
    client: httpx.AsyncClient, tenant: TenantHandle, **thresholds: float | None
) -> None:
    response = await client.patch("/v1/matching/settings", json=thresholds, headers=tenant.headers)
    assert response.status_code == 200, response.text

"""The console's possible duplicates, as a supervisor's browser without JavaScript uses them:
the queue, a pair side by side with why they look alike, accepting, undoing, rejecting."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TenantHandle
from tests.matching.helpers import profile, run_check, start_checking_now, suggestions
from tests.web.test_console import Agent, browser, csrf_of, make_agent, sign_in


async def _signed_in(
    page: httpx.AsyncClient,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    role: str,
    locale: str = "es",
) -> Agent:
    person = await make_agent(client, tenant, role=role, locale=locale)
    response = await sign_in(page, person.email)
    assert response.status_code == 303, response.text
    return person


async def _pair(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, Any]:
    await start_checking_now(sessionmaker)
    for external, name, email in (
        ("tpv-1", "María José Fernández", "mj@example.es"),
        ("web-1", "Mª José Fernandez Ruiz", "mariajose.fr@example.org"),
    ):
        await profile(
            client,
            tenant,
            external=external,
            name=name,
            email=email,
            birth_date="1980-05-17",
            postcode="28001",
            city="Madrid",
        )
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    return item


async def test_a_supervisor_reviews_accepts_and_undoes_in_spanish(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item = await _pair(client, tenant, sessionmaker)
    async with browser(app) as page:
        await _signed_in(page, client, tenant, "supervisor")
        queue = await page.get("/console/duplicates")
        assert queue.status_code == 200
        assert "<h1>Duplicados</h1>" in queue.text
        assert f'href="/console/duplicates/{item["id"]}"' in queue.text
        assert "María José Fernández" in queue.text

        detail = await page.get(f"/console/duplicates/{item['id']}")
        assert detail.status_code == 200
        assert "Mª José Fernandez Ruiz" in detail.text
        assert "mariajose.fr@example.org" in detail.text
        assert "Por qué se parecen" in detail.text
        assert "Fecha de nacimiento" in detail.text
        assert "iguales" in detail.text
        accepted = await page.post(
            f"/console/duplicates/{item['id']}/accept", data={"csrf_token": csrf_of(detail)}
        )
        assert accepted.status_code == 303
        after = await page.get(accepted.headers["location"])
        assert "Aceptado: fusionados" in after.text
        assert 'id="undo"' in after.text
        merged = (
            await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)
        ).json()
        assert merged["status"] == "accepted"
        assert merged["decided_by"].startswith("user:")

        undone = await page.post(
            f"/console/duplicates/{item['id']}/undo", data={"csrf_token": csrf_of(after)}
        )
        assert undone.status_code == 303
    for customer_id in (item["left_customer_id"], item["right_customer_id"]):
        live = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
        assert live.status_code == 200
    await app.state.worker.run_once()
    rejected = (
        await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)
    ).json()
    assert rejected["status"] == "rejected"
    log = await client.get(
        "/v1/audit-log", params={"action": "match_suggestion.accepted"}, headers=tenant.headers
    )
    [entry] = log.json()["items"]
    assert entry["actor"]["type"] == "user"


async def test_rejecting_in_english_and_the_refusals(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item = await _pair(client, tenant, sessionmaker)
    async with browser(app) as page:
        await _signed_in(page, client, tenant, "admin", locale="en")
        detail = await page.get(f"/console/duplicates/{item['id']}")
        assert "Why they look alike" in detail.text
        assert "Different people" in detail.text
        rejected = await page.post(
            f"/console/duplicates/{item['id']}/reject", data={"csrf_token": csrf_of(detail)}
        )
        assert rejected.status_code == 303
        after = await page.get(rejected.headers["location"])
        assert "Rejected: different people" in after.text
        assert 'id="accept"' not in after.text
        # Without the form's token nothing is decided.
        forged = await page.post(f"/console/duplicates/{item['id']}/accept", data={})
        assert forged.status_code == 403
    async with browser(app) as page:
        await _signed_in(page, client, tenant, "agent")
        assert (await page.get("/console/duplicates")).status_code == 403
        inbox = await page.get("/console")
        assert "/console/duplicates" not in inbox.text
    other: TenantHandle = await make_tenant("Otra tienda")
    async with browser(app) as page:
        await _signed_in(page, client, other, "admin")
        assert (await page.get(f"/console/duplicates/{item['id']}")).status_code == 404
        token = csrf_of(await page.get("/console/duplicates"))
        refused = await page.post(
            f"/console/duplicates/{item['id']}/accept", data={"csrf_token": token}
        )
        assert refused.status_code == 404
    still = (await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)).json()
    assert still["status"] == "rejected"

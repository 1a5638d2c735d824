"""The console's privacy pages, as an administrator's browser without JavaScript uses them: the
export and erase buttons of the 360° page, the erasure's confirmation, and the audit log."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantHandle, identify
from tests.web.test_console import Agent, browser, csrf_of, make_agent, sign_in


async def signed_in(
    page: httpx.AsyncClient, client: httpx.AsyncClient, tenant: TenantHandle, role: str
) -> Agent:
    """Sign ``page`` (a browser) in as a new user of ``role`` who reads English."""
    person = await make_agent(client, tenant, role=role, locale="en")
    response = await sign_in(page, person.email)
    assert response.status_code == 303, response.text
    return person


async def rosa(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    found = await identify(
        client, tenant, ("email", "rosa.navarro@example.es"), name="Rosa Navarro"
    )
    customer_id: str = found["customer_id"]
    return customer_id


async def test_an_admin_exports_and_erases_a_customer_from_the_360_page(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer_id = await rosa(client, tenant)
    async with browser(app) as page:
        admin = await signed_in(page, client, tenant, "admin")
        profile = await page.get(f"/console/customers/{customer_id}")
        assert profile.status_code == 200
        assert 'id="export-customer"' in profile.text
        assert 'id="erase-customer"' in profile.text
        token = csrf_of(profile)

        refused = await page.post(f"/console/customers/{customer_id}/export", data={})
        assert refused.status_code == 403
        download = await page.post(
            f"/console/customers/{customer_id}/export", data={"csrf_token": token}
        )
        assert download.status_code == 200, download.text
        assert download.headers["content-disposition"].startswith("attachment;")
        assert download.json()["data"]["customers"][0]["name"] == "Rosa Navarro"

        form = await page.get(f"/console/customers/{customer_id}/erase")
        assert form.status_code == 200
        assert "cannot be undone" in form.text
        unconfirmed = await page.post(
            f"/console/customers/{customer_id}/erase",
            data={"csrf_token": token, "reason": "ticket 881"},
        )
        assert unconfirmed.status_code == 422
        assert "Tick the box" in unconfirmed.text
        assert "ticket 881" in unconfirmed.text
        still = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
        assert still.json()["name"] == "Rosa Navarro"

        erased = await page.post(
            f"/console/customers/{customer_id}/erase",
            data={"csrf_token": token, "reason": "ticket 881", "confirm": "yes"},
        )
        assert erased.status_code == 303
        assert erased.headers["location"] == f"/console/customers/{customer_id}"
        after = await page.get(erased.headers["location"])
        assert 'id="erased-banner"' in after.text
        assert "Rosa Navarro" not in after.text
        assert "rosa.navarro" not in after.text
        assert 'id="erase-customer"' not in after.text

    log = await client.get(
        "/v1/audit-log", params={"subject_id": customer_id}, headers=tenant.headers
    )
    assert [
        (e["action"], e["actor"]["type"], e["actor"]["user_id"]) for e in log.json()["items"]
    ] == [
        ("customer.erased", "user", admin.id),
        ("customer.exported", "user", admin.id),
    ]
    assert log.json()["items"][0]["details"]["reason"] == "ticket 881"


async def test_the_audit_log_page_lists_and_filters_entries_in_spanish(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer_id = await rosa(client, tenant)
    await client.post(f"/v1/customers/{customer_id}/erase", headers=tenant.headers)
    async with browser(app) as page:
        _admin = await signed_in(page, client, tenant, "admin")
        listed = await page.get("/console/audit-log?lang=es")
        assert listed.status_code == 200
        assert "Registro de auditoría" in listed.text
        assert "Datos del cliente borrados" in listed.text
        assert "Usuario creado" in listed.text
        assert f"/console/customers/{customer_id}" in listed.text

        only_users = await page.get("/console/audit-log", params={"action": "user.created"})
        assert "Usuario creado" in only_users.text
        assert "Datos del cliente borrados" not in only_users.text.split('id="audit-entries"')[1]

        none = await page.get(
            "/console/audit-log", params={"since": "2001-01-01", "until": "2001-01-02"}
        )
        assert 'id="audit-empty"' in none.text
        bad = await page.get("/console/audit-log", params={"since": "ayer"})
        assert bad.status_code == 422


async def test_other_roles_see_no_privacy_buttons_and_are_refused(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer_id = await rosa(client, tenant)
    async with browser(app) as page:
        _supervisor = await signed_in(page, client, tenant, "supervisor")
        profile = await page.get(f"/console/customers/{customer_id}")
        assert profile.status_code == 200
        assert 'id="export-customer"' not in profile.text
        assert 'id="erase-customer"' not in profile.text
        assert "/console/audit-log" not in profile.text
        token = csrf_of(profile)
        for method, path, data in (
            ("GET", f"/console/customers/{customer_id}/erase", None),
            ("POST", f"/console/customers/{customer_id}/erase", {"confirm": "yes"}),
            ("POST", f"/console/customers/{customer_id}/export", {}),
            ("GET", "/console/audit-log", None),
        ):
            response = await page.request(
                method, path, data={**data, "csrf_token": token} if data is not None else None
            )
            assert response.status_code == 403, (method, path)
    still = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    assert still.json()["name"] == "Rosa Navarro"


async def test_another_tenants_customer_is_a_404_page(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    other: TenantHandle = await make_tenant("Otra tienda")
    customer_id = await rosa(client, other)
    async with browser(app) as page:
        _admin = await signed_in(page, client, tenant, "admin")
        form = await page.get(f"/console/customers/{customer_id}/erase")
        assert form.status_code == 404
        token = csrf_of(await page.get("/console/customers"))
        erased = await page.post(
            f"/console/customers/{customer_id}/erase", data={"csrf_token": token, "confirm": "yes"}
        )
        assert erased.status_code == 404
    still = await client.get(f"/v1/customers/{customer_id}", headers=other.headers)
    assert still.json()["name"] == "Rosa Navarro"

"""The possible-duplicates page in a real browser: a supervisor reviews what the online check
found, merges the same person written twice, and keeps a father and son apart.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytest.importorskip("playwright", reason="browser tests skipped: no playwright package")

from playwright.async_api import Locator, Page, expect

from tests.conftest import TenantHandle
from tests.e2e.browser.conftest import Screenshots
from tests.e2e.browser.test_agent_console import sign_in
from tests.e2e.browser.test_supervisor import make_supervisor
from tests.matching.helpers import father_and_son, maria_jose, run_check, start_checking_now


def menu(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Principal").get_by_role("link", name="Duplicados")


async def test_a_supervisor_merges_one_person_and_keeps_father_and_son_apart(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    live: str,
    page: Page,
    shots: Screenshots,
) -> None:
    await start_checking_now(sessionmaker)
    store, web = await maria_jose(client, tenant)
    father, son = await father_and_son(client, tenant)
    await run_check(sessionmaker)

    # 1. The queue, from the menu: both pairs wait for a person.
    await sign_in(page, await make_supervisor(client, tenant))
    await menu(page).click()
    await expect(page).to_have_url("/console/duplicates")
    rows = page.locator("#duplicates tbody tr")
    await expect(rows).to_have_count(2)
    await shots.take("queue")

    # 2. María José: the two profiles side by side and why they matched; the same person.
    await rows.filter(has_text="Fernandez Ruiz").get_by_role("link", name="Revisar").click()
    profiles = page.locator("#profiles")
    await expect(profiles).to_contain_text("María José Fernández")
    await expect(profiles).to_contain_text("Mª José Fernandez Ruiz")
    await expect(profiles).to_contain_text("mariajose.fr@example.org")
    await expect(page.locator("#evidence .weight-for").first).to_be_visible()
    await shots.take("maria-jose")
    await page.locator("#accept").click()
    await expect(page.locator("#undo")).to_be_visible()
    merged = await client.get(f"/v1/customers/{web}", headers=tenant.headers)
    followed = merged.json()["merged_into"] if merged.status_code == 307 else web
    other = await client.get(f"/v1/customers/{store}", headers=tenant.headers)
    survivor = other.json()["merged_into"] if other.status_code == 307 else store
    assert followed == survivor, "the two profiles are one customer now"
    await shots.take("merged")

    # 3. Father and son: the birth dates a generation apart count against, and the
    # supervisor says they are different people.
    await menu(page).click()
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link", name="Revisar").click()
    await expect(page.locator("#profiles")).to_contain_text("1952-03-02")
    await expect(page.locator("#profiles")).to_contain_text("1981-11-23")
    await expect(page.locator("#evidence .weight-against").first).to_be_visible()
    await expect(page.locator("#evidence")).to_contain_text(
        "una generación de diferencia: decide una persona"
    )
    await shots.take("father-and-son")
    await page.locator("#reject").click()
    await expect(page.locator("#decision")).to_have_count(0)
    await menu(page).click()
    await expect(page.locator("#duplicates-empty")).to_be_visible()
    for customer_id in (father, son):
        alive = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
        assert alive.status_code == 200, "neither was merged"
    await shots.take("queue-empty")

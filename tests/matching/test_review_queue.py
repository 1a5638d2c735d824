"""The review queue: profiles that look like one person become suggestions with evidence, and
a person accepts (a reversible merge) or rejects (remembered for good)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TenantHandle
from tests.matching.helpers import (
    father_and_son,
    maria_jose,
    profile,
    run_check,
    set_thresholds,
    start_checking_now,
    suggestions,
)


async def test_maria_jose_in_store_and_on_the_web_is_suggested_with_evidence(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    store, web = await maria_jose(client, tenant)
    done = await run_check(sessionmaker)
    assert done["matching_suggested"] == 1
    [item] = await suggestions(client, tenant)
    assert {item["left_customer_id"], item["right_customer_id"]} == {store, web}
    assert item["probability"] >= 0.8
    detail = (
        await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)
    ).json()
    fields = {e["field"]: e for e in detail["evidence"]}
    assert fields["birth_date"]["level"] == "exact"
    assert fields["birth_date"]["weight"] > 0
    assert fields["postcode"]["weight"] > 0
    sides = {detail["left"]["id"]: detail["left"], detail["right"]["id"]: detail["right"]}
    assert sides[store]["name"] == "María José Fernández"
    assert sides[web]["emails"] == ["mariajose.fr@example.org"]
    assert sides[web]["postcode"] == "28001"
    # Checking again changes nothing: one suggestion per pair.
    await client.patch(
        f"/v1/customers/{web}", json={"traits": {"city": "Madrid "}}, headers=tenant.headers
    )
    await run_check(sessionmaker)
    assert len(await suggestions(client, tenant)) == 1


async def test_father_and_son_with_one_name_address_and_phone_are_never_merged(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    # Automatic merges on, below the cap a birth-date conflict leaves a pair at (0.9).
    await set_thresholds(client, tenant, review_threshold=0.8, auto_merge_threshold=0.85)
    father, son = await father_and_son(client, tenant)
    done = await run_check(sessionmaker)

    assert done.get("matching_auto_merged", 0) == 0
    for customer_id in (father, son):
        live = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
        assert live.status_code == 200, "neither was merged into the other"
    # A person sees both birth dates side by side and decides.
    [item] = await suggestions(client, tenant)
    assert {item["left_customer_id"], item["right_customer_id"]} == {father, son}
    assert item["probability"] <= 0.9 + 1e-9
    detail = (
        await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)
    ).json()
    birth = [e for e in detail["evidence"] if e["field"] == "birth_date"]
    assert {e["level"] for e in birth} == {"different", "conflict"}
    assert all(e["weight"] < 0 for e in birth)


async def _ana_belen(
    client: httpx.AsyncClient, tenant: TenantHandle, external: str, name: str
) -> str:
    return await profile(
        client,
        tenant,
        external=external,
        name=name,
        birth_date="1975-02-10",
        street="Calle Feria 3",
        postcode="41001",
        city="Sevilla",
    )


async def _live_id(client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str) -> str:
    response = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    if response.status_code == 307:
        merged_into: str = response.json()["merged_into"]
        return await _live_id(client, tenant, merged_into)
    assert response.status_code == 200, response.text
    return customer_id


async def test_accepting_merges_once_and_unmerging_restores_and_rejects_the_pair(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    store, web = await maria_jose(client, tenant)
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    accepted = await client.post(
        f"/v1/match-suggestions/{item['id']}/accept", headers=tenant.headers
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["status"] == "accepted"
    assert body["changed"] is True
    assert body["merge_id"]
    # The older profile (the store's) survives; the web one now redirects to it.
    assert await _live_id(client, tenant, web) == store
    again = await client.post(f"/v1/match-suggestions/{item['id']}/accept", headers=tenant.headers)
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["merge_id"] == body["merge_id"]
    merges = (await client.get(f"/v1/customers/{store}/merges", headers=tenant.headers)).json()
    assert [m["id"] for m in merges] == [body["merge_id"]]
    assert merges[0]["reason"] == "probabilistic"
    log = await client.get(
        "/v1/audit-log", params={"action": "match_suggestion.accepted"}, headers=tenant.headers
    )
    assert [e["subject_id"] for e in log.json()["items"]] == [item["id"]]
    # Accepting again changed nothing, so the log holds no entry of any kind for it.
    settings = await client.get(
        "/v1/audit-log", params={"action": "settings.*"}, headers=tenant.headers
    )
    assert [e["subject_id"] for e in settings.json()["items"]] == []
    # Rejecting what was merged is refused: undoing the merge is the way.
    refused = await client.post(
        f"/v1/match-suggestions/{item['id']}/reject", headers=tenant.headers
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "suggestion_merged"

    undone = await client.post(
        f"/v1/customers/{store}/unmerge",
        json={"merge_id": body["merge_id"]},
        headers=tenant.headers,
    )
    assert undone.status_code == 200, undone.text
    assert await _live_id(client, tenant, web) == web
    await app.state.worker.run_once()  # the relay hands matching the unmerge
    detail = (
        await client.get(f"/v1/match-suggestions/{item['id']}", headers=tenant.headers)
    ).json()
    assert detail["status"] == "rejected"
    assert detail["decided_by"] == "unmerge"
    # Both profiles changed (the unmerge): checked again, neither suggested nor merged.
    await set_thresholds(client, tenant, auto_merge_threshold=0.9)
    await run_check(sessionmaker)
    assert await suggestions(client, tenant) == []
    assert await _live_id(client, tenant, web) == web


async def test_a_rejected_pair_is_never_suggested_again_nor_merged(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    first = await _ana_belen(client, tenant, "a-1", "Ana Belén Ruiz Soto")
    second = await _ana_belen(client, tenant, "a-2", "Ana B. Ruiz Soto")
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    rejected = await client.post(
        f"/v1/match-suggestions/{item['id']}/reject", headers=tenant.headers
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["changed"] is True
    twice = await client.post(f"/v1/match-suggestions/{item['id']}/reject", headers=tenant.headers)
    assert twice.json()["changed"] is False
    cannot = await client.post(f"/v1/match-suggestions/{item['id']}/accept", headers=tenant.headers)
    assert cannot.status_code == 409
    await set_thresholds(client, tenant, auto_merge_threshold=0.9)
    for customer_id in (first, second):
        changed = await client.patch(
            f"/v1/customers/{customer_id}",
            json={"traits": {"street": "C/ Feria, 3"}},
            headers=tenant.headers,
        )
        assert changed.status_code == 200
    await run_check(sessionmaker)
    assert await suggestions(client, tenant) == []
    assert await _live_id(client, tenant, first) == first
    assert await _live_id(client, tenant, second) == second
    [still] = await suggestions(client, tenant, status="rejected")
    assert still["id"] == item["id"]


async def test_no_automatic_merge_chains_two_rejected_profiles_through_a_third(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    first = await _ana_belen(client, tenant, "a-1", "Ana Belén Ruiz Soto")
    second = await _ana_belen(client, tenant, "a-2", "Ana B. Ruiz Soto")
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    await client.post(f"/v1/match-suggestions/{item['id']}/reject", headers=tenant.headers)
    await set_thresholds(client, tenant, auto_merge_threshold=0.95)
    third = await _ana_belen(client, tenant, "a-3", "Ana Belen Ruiz")
    done = await run_check(sessionmaker)
    assert done["matching_auto_merged"] == 1
    roots = {await _live_id(client, tenant, c) for c in (first, second, third)}
    # The third joined one of the two; the two a person told apart stay apart.
    assert len(roots) == 2
    assert await _live_id(client, tenant, first) != await _live_id(client, tenant, second)
    [merged] = await suggestions(client, tenant, status="auto_merged")
    assert merged["decided_by"] == "system"
    assert merged["merge_id"]
    assert await suggestions(client, tenant) == []
    survivor = await _live_id(client, tenant, third)
    merges = (await client.get(f"/v1/customers/{survivor}/merges", headers=tenant.headers)).json()
    assert [m["reason"] for m in merges] == ["probabilistic"]
    log = await client.get(
        "/v1/audit-log",
        params={"action": "customer.merged", "subject_id": survivor},
        headers=tenant.headers,
    )
    assert [e["details"]["reason"] for e in log.json()["items"]] == ["probabilistic"]


async def test_the_issues_example_with_only_a_name_a_postcode_and_two_emails(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The issue's case: "María José Fernández, 28001" in the store and "Mª José Fernandez
    Ruiz" on the web with another email is a suggestion, whose evidence says the emails differ."""
    await start_checking_now(sessionmaker)
    store = await profile(
        client, tenant, external="tpv-9", name="María José Fernández", postcode="28001"
    )
    web = await profile(
        client,
        tenant,
        external="web-9",
        name="Mª José Fernandez Ruiz",
        email="mariajose.fr@example.org",
        postcode="28001",
    )
    await client.patch(
        f"/v1/customers/{store}",
        json={"traits": {"email": "mjfernandez@example.es"}},
        headers=tenant.headers,
    )
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    assert {item["left_customer_id"], item["right_customer_id"]} == {store, web}
    levels = {e["field"]: (e["level"], e["weight"]) for e in item["evidence"]}
    assert levels["given_name"][0] == "exact"  # Mª is María
    assert levels["surnames"][1] > 0  # a second surname left out is not a difference
    assert levels["email"][0] == "different"
    assert levels["email"][1] < 0

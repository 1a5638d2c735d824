"""The matching API's edges: thresholds, bad input, roles, another tenant's ids."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TenantHandle
from tests.matching.helpers import (
    key_with_role,
    profile,
    run_check,
    start_checking_now,
    suggestions,
)


async def _one_suggestion(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, Any]:
    await start_checking_now(sessionmaker)
    for external, name in (("s-1", "Francisco Javier Gómez Díaz"), ("s-2", "Fco. Javier Gomez")):
        await profile(
            client,
            tenant,
            external=external,
            name=name,
            birth_date="1969-07-30",
            postcode="46001",
            city="Valencia",
        )
    await run_check(sessionmaker)
    [item] = await suggestions(client, tenant)
    return item


async def test_thresholds_are_validated_and_audited(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    initial = await client.get("/v1/matching/settings", headers=tenant.headers)
    assert initial.json() == {
        "review_threshold": 0.8,
        "auto_merge_threshold": None,
        "trained_at": None,
        "trained_profiles": None,
    }
    for body in (
        {"auto_merge_threshold": 0.7},  # below the review threshold
        {"review_threshold": 0.97, "auto_merge_threshold": 0.95},
        {"review_threshold": 0},
        {"review_threshold": 1.5},
        {"review_threshold": None},
        {"review_threshold": "alto"},
        {"unknown": 1},
    ):
        refused = await client.patch("/v1/matching/settings", json=body, headers=tenant.headers)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]["code"]
    unchanged = await client.get("/v1/matching/settings", headers=tenant.headers)
    assert unchanged.json() == initial.json()
    changed = await client.patch(
        "/v1/matching/settings",
        json={"review_threshold": 0.7, "auto_merge_threshold": 0.99},
        headers=tenant.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["auto_merge_threshold"] == 0.99
    # Raising the review threshold above the automatic one is refused; null turns merges off.
    assert (
        await client.patch(
            "/v1/matching/settings", json={"review_threshold": 0.995}, headers=tenant.headers
        )
    ).status_code == 422
    off = await client.patch(
        "/v1/matching/settings", json={"auto_merge_threshold": None}, headers=tenant.headers
    )
    assert off.json()["auto_merge_threshold"] is None
    assert off.json()["review_threshold"] == 0.7
    log = await client.get(
        "/v1/audit-log", params={"action": "matching.settings_updated"}, headers=tenant.headers
    )
    assert [e["details"]["auto_merge_threshold"] for e in log.json()["items"]] == [None, 0.99]


async def test_bad_queries_are_422(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    for params in ({"status": "maybe"}, {"cursor": "nonsense"}, {"limit": 0}, {"limit": 500}):
        response = await client.get("/v1/match-suggestions", params=params, headers=tenant.headers)
        assert response.status_code == 422, params
        assert "error" in response.json()
    missing = await client.get("/v1/match-suggestions/" + "0" * 32, headers=tenant.headers)
    assert missing.status_code == 404


async def test_the_queue_pages_most_probable_first(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await start_checking_now(sessionmaker)
    for index, name in enumerate(("Rosa", "Rosa María", "Rosa M.")):
        await profile(
            client,
            tenant,
            external=f"p-{index}",
            name=f"{name} Navarro Iglesias",
            birth_date="1990-01-15",
            postcode="50001",
        )
    await run_check(sessionmaker)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/v1/match-suggestions", params=params, headers=tenant.headers)
        ).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert len({s["id"] for s in seen}) == 3
    probabilities = [s["probability"] for s in seen]
    assert probabilities == sorted(probabilities, reverse=True)


async def test_roles_and_another_tenants_ids(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    item = await _one_suggestion(client, tenant, sessionmaker)
    agent = await key_with_role(client, tenant, "agent")
    supervisor = await key_with_role(client, tenant, "supervisor")
    # An agent reads the queue but decides nothing; settings and training are for admins.
    assert (await client.get("/v1/match-suggestions", headers=agent)).status_code == 200
    assert (
        await client.post(f"/v1/match-suggestions/{item['id']}/accept", headers=agent)
    ).status_code == 403
    assert (await client.get("/v1/matching/settings", headers=supervisor)).status_code == 403
    assert (await client.post("/v1/matching/train", headers=supervisor)).status_code == 403

    other = await make_tenant("Otra tienda")
    for method, path in (
        ("GET", f"/v1/match-suggestions/{item['id']}"),
        ("POST", f"/v1/match-suggestions/{item['id']}/accept"),
        ("POST", f"/v1/match-suggestions/{item['id']}/reject"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (path, response.text)
    assert (await client.get("/v1/match-suggestions", headers=other.headers)).json()["items"] == []
    # Still pending for its own tenant, which a supervisor decides.
    decided = await client.post(f"/v1/match-suggestions/{item['id']}/reject", headers=supervisor)
    assert decided.status_code == 200
    assert decided.json()["decided_by"].startswith("key:")


async def test_training_learns_from_the_tenants_profiles(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    too_few = await client.post("/v1/matching/train", headers=tenant.headers)
    assert too_few.status_code == 422
    await _one_suggestion(client, tenant, sessionmaker)
    for index in range(30):
        await profile(
            client,
            tenant,
            external=f"t-{index}",
            name=f"Cliente {index} Apellido{index % 7}",
            birth_date=f"19{50 + index}-0{1 + index % 9}-1{index % 9}",
            postcode=f"280{index % 50:02d}",
        )
    trained = await client.post("/v1/matching/train", headers=tenant.headers)
    assert trained.status_code == 200, trained.text
    assert trained.json()["trained_profiles"] == 32
    assert trained.json()["trained_at"] is not None
    settings = (await client.get("/v1/matching/settings", headers=tenant.headers)).json()
    assert settings["trained_at"] == trained.json()["trained_at"]

"""Over-merging guards: a value shared by more profiles than the tenant's per-identifier limit,
or a blocked value, links nobody: no evidence, no blocking key."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.matching.models import MatchKey
from tests.conftest import TenantHandle
from tests.matching.helpers import profile, run_check, start_checking_now, suggestions

FAMILY = "familia.garcia@gmail.com"


async def _household(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, str]:
    return {
        "father": await profile(client, tenant, external="h-1", name="Juan García", email=FAMILY),
        "father_again": await profile(
            client, tenant, external="h-2", name="J. Garcia Lopez", email=FAMILY
        ),
        "daughter": await profile(
            client, tenant, external="h-3", name="Lucía García", email=FAMILY
        ),
    }


async def _keys(sessionmaker: async_sessionmaker[AsyncSession], ids: list[str]) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(MatchKey.key).where(MatchKey.customer_id.in_(ids)))
        return set(rows.scalars())


async def test_a_family_email_above_the_limit_stops_linking(
    client: httpx.AsyncClient,
    make_tenant: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    roomy = await make_tenant("Tienda con límite 5")
    strict = await make_tenant(
        "Tienda con límite 2", identity_limits={"external": 1, "email": 2, "*": 5}
    )
    await start_checking_now(sessionmaker)
    in_roomy = await _household(client, roomy)
    in_strict = await _household(client, strict)
    await run_check(sessionmaker)

    # Three holders are within a limit of five: the shared email is evidence and a key.
    pairs = [
        ({s["left_customer_id"], s["right_customer_id"]}, s)
        for s in await suggestions(client, roomy)
    ]
    father = {in_roomy["father"], in_roomy["father_again"]}
    [(_, suggestion)] = [(p, s) for p, s in pairs if p == father]
    detail = (
        await client.get(f"/v1/match-suggestions/{suggestion['id']}", headers=roomy.headers)
    ).json()
    assert {"field": "email", "level": "exact"}.items() <= next(
        e for e in detail["evidence"] if e["field"] == "email"
    ).items()
    assert f"em:{FAMILY}" in await _keys(sessionmaker, list(in_roomy.values()))

    # Three holders are above a limit of two: nothing links through it.
    assert await suggestions(client, strict) == []
    keys = await _keys(sessionmaker, list(in_strict.values()))
    assert f"em:{FAMILY}" not in keys
    assert f"=email:{FAMILY}" in keys  # still counted, so a fourth holder is refused too


async def test_a_blocked_value_gives_no_evidence(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The shop's own phone, typed into every receipt, links no two customers."""
    blocked = await client.post(
        "/v1/blocked-values",
        json={"kind": "phone", "value": "+34 910 000 000", "reason": "teléfono de la tienda"},
        headers=tenant.headers,
    )
    assert blocked.status_code == 201, blocked.text
    await start_checking_now(sessionmaker)
    for external, name in (("r-1", "Pedro Sánchez"), ("r-2", "P. Sanchez Gil")):
        # Blocked values are refused as identities: the receipt's phone is only a trait.
        customer_id = await profile(client, tenant, external=external, name=name)
        await client.patch(
            f"/v1/customers/{customer_id}",
            json={"traits": {"phone": "+34910000000"}},
            headers=tenant.headers,
        )
    await run_check(sessionmaker)
    assert await suggestions(client, tenant) == []

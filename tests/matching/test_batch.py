"""Batch: importing customers from CSV (checked rows, line numbers, idempotent re-runs) and
de-duplicating a whole tenant (clusters merged or queued, resumable, with a report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.customers.models import Customer, Merge
from hilos.matching import batch
from tests.conftest import TenantHandle
from tests.matching.helpers import set_thresholds, suggestions

HEADER = "external_id,name,given_name,surnames,email,phone,birth_date,street,postcode,city\n"
PEOPLE = [
    # One woman, from the shop's till and from the web shop.
    "tpv-1,María José Fernández,,,mj@example.es,,1980-05-17,Calle Mayor 12,28001,Madrid",
    "web-1,,Mª José,Fernandez Ruiz,mariajose.fr@example.org,,1980-05-17,,28001,Madrid",
    # One woman three times (the third with her second surname left out).
    "crm-1,Ana Belén Ruiz Soto,,,,+34 600 111 222,1975-02-10,Calle Feria 3,41001,Sevilla",
    "crm-2,,Ana B.,Ruiz Soto,,600111222,1975-02-10,C/ Feria 3,41001,Sevilla",
    "web-2,,Ana Belen,Ruiz,,,1975-02-10,,41001,Sevilla",
    # Father and son: same name and address, different birth dates.
    "crm-3,José Luis García Pérez,,,,,1952-03-02,Calle Mayor 20,28013,Madrid",
    "crm-4,José Luis García Pérez,,,,,1981-11-23,Calle Mayor 20,28013,Madrid",
    # Different people.
    "crm-5,Pilar Ortega Núñez,,,pilar@example.es,,1990-09-09,,08001,Barcelona",
    "crm-6,Iñaki Etxeberria,,,,,1985-04-01,,20001,Donostia",
]


def _csv(tmp_path: Path, lines: list[str], name: str = "clientes.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _count(sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle) -> int:
    async with sessionmaker() as session:
        statement = select(func.count()).where(Customer.tenant_id == tenant.id)
        return int((await session.execute(statement)).scalar_one())


async def test_import_checks_every_row_and_imports_nothing_when_one_is_bad(
    tmp_path: Path, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    path = _csv(
        tmp_path,
        [
            PEOPLE[0],
            ",Sin Identificador,,,,,,,,",
            "bad-2,Correo Malo,,,no-es-un-correo,,,,,",
            "bad-3,Fecha Mala,,,,,1980-13-45,,,",
            "bad-4,,,,,,,,,",
            "bad-5,Teléfono Malo,,,,12,,,,",
            PEOPLE[2].replace("crm-1", "tpv-1"),  # the first row's id again
        ],
    )
    report = await batch.import_customers(sessionmaker, tenant.context, path)
    assert report.imported is False
    assert [(e.line, e.errors[0].split(" ")[0]) for e in report.invalid] == [
        (3, "external_id"),
        (4, "email:"),
        (5, "birth_date"),
        (6, "a"),
        (7, "phone:"),
        (8, "external_id"),
    ]
    assert "line 2" in report.invalid[-1].errors[0]
    assert await _count(sessionmaker, tenant) == 0

    skipped = await batch.import_customers(sessionmaker, tenant.context, path, skip_invalid=True)
    assert skipped.imported is True
    assert (skipped.created, len(skipped.invalid)) == (1, 6)
    assert await _count(sessionmaker, tenant) == 1


async def test_a_header_with_an_unknown_column_is_refused(
    tmp_path: Path, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    path = tmp_path / "mal.csv"
    path.write_text("external_id,name,postal_code\nx-1,Ana,28001\n", encoding="utf-8")
    report = await batch.import_customers(sessionmaker, tenant.context, path)
    [error] = report.invalid
    assert error.line == 1
    assert "postal_code" in error.errors[0]
    assert report.imported is False


async def test_importing_again_creates_nothing_twice(
    client: httpx.AsyncClient,
    tmp_path: Path,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    path = _csv(tmp_path, PEOPLE)
    first = await batch.import_customers(sessionmaker, tenant.context, path)
    assert (first.imported, first.created, first.existing) == (True, len(PEOPLE), 0)
    again = await batch.import_customers(sessionmaker, tenant.context, path)
    assert (again.created, again.existing) == (0, len(PEOPLE))
    assert await _count(sessionmaker, tenant) == len(PEOPLE)
    found = await client.get(
        "/v1/customers", params={"identity": "external:web-1"}, headers=tenant.headers
    )
    [customer] = found.json()["items"]
    assert customer["name"] == "Mª José Fernandez Ruiz"
    assert customer["traits"]["given_name"] == "Mª José"
    assert customer["traits"]["birth_date"] == "1980-05-17"
    assert {(i["kind"], i["value"]) for i in customer["identities"]} == {
        ("external", "web-1"),
        ("email", "mariajose.fr@example.org"),
    }


async def _merged_pairs(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle
) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Merge.survivor_id, Merge.merged_id)
            .where(Merge.tenant_id == tenant.id, Merge.undone_at.is_(None))
            .order_by(Merge.id)
        )
        return [(a, b) for a, b in rows.all()]


async def _ids(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, str]:
    ids = {}
    for line in PEOPLE:
        external = line.split(",")[0]
        found = await client.get(
            "/v1/customers", params={"identity": f"external:{external}"}, headers=tenant.headers
        )
        ids[external] = found.json()["items"][0]["id"]
    return ids


async def test_dedupe_merges_clusters_queues_the_rest_and_resumes_where_it_stopped(
    client: httpx.AsyncClient,
    tmp_path: Path,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await batch.import_customers(sessionmaker, tenant.context, _csv(tmp_path, PEOPLE))
    ids = await _ids(client, tenant)
    await set_thresholds(client, tenant, review_threshold=0.8, auto_merge_threshold=0.99)

    # Stopped after one cluster (as an interruption would leave it).
    partial = await batch.dedupe(sessionmaker, tenant.context, train=False, max_clusters=1)
    assert partial["status"] == "merging"
    assert partial["clusters_to_merge"] == 2
    assert partial["clusters_merged"] == 1
    merged_first = await _merged_pairs(sessionmaker, tenant)

    resumed = await batch.dedupe(sessionmaker, tenant.context, train=False)
    assert resumed["resumed"] is True
    assert resumed["run_id"] == partial["run_id"]
    assert resumed["status"] == "done"
    assert (resumed["clusters_merged"], resumed["profiles_merged"]) == (2, 3)
    merged = await _merged_pairs(sessionmaker, tenant)
    assert merged[: len(merged_first)] == merged_first  # nothing redone
    assert {frozenset(pair) for pair in merged} == {
        frozenset((ids["tpv-1"], ids["web-1"])),
        frozenset((ids["crm-1"], ids["crm-2"])),
        frozenset((ids["crm-1"], ids["web-2"])),
    }
    # Father and son (birth dates a generation apart) are a cluster too, but only queued for
    # a person: never merged automatically.
    assert resumed["clusters_found"] == 3
    pending = await suggestions(client, tenant)
    assert any(
        {ids["crm-3"], ids["crm-4"]} == {s["left_customer_id"], s["right_customer_id"]}
        for s in pending
    )
    assert resumed["left_for_review"] == len(pending)

    # A finished run is not resumed: a new one finds nothing more to merge.
    again = await batch.dedupe(sessionmaker, tenant.context, train=False)
    assert again["resumed"] is False
    assert again["run_id"] != resumed["run_id"]
    assert again["clusters_merged"] == 0
    assert await _merged_pairs(sessionmaker, tenant) == merged


async def test_dedupe_never_merges_a_rejected_pair_nor_through_a_third(
    client: httpx.AsyncClient,
    tmp_path: Path,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await batch.import_customers(sessionmaker, tenant.context, _csv(tmp_path, PEOPLE))
    ids = await _ids(client, tenant)
    # First only the review queue: then a person says crm-1 and crm-2 are different people.
    queued = await batch.dedupe(sessionmaker, tenant.context, train=False)
    assert queued["clusters_to_merge"] == 0
    [pair] = [
        s
        for s in await suggestions(client, tenant)
        if {s["left_customer_id"], s["right_customer_id"]} == {ids["crm-1"], ids["crm-2"]}
    ]
    rejected = await client.post(
        f"/v1/match-suggestions/{pair['id']}/reject", headers=tenant.headers
    )
    assert rejected.status_code == 200
    await set_thresholds(client, tenant, auto_merge_threshold=0.99)
    report = await batch.dedupe(sessionmaker, tenant.context, train=False)
    merged = {frozenset(p) for p in await _merged_pairs(sessionmaker, tenant)}
    assert frozenset((ids["crm-1"], ids["crm-2"])) not in merged
    # web-2 may join one of them, never both.
    assert not (
        frozenset((ids["crm-1"], ids["web-2"])) in merged
        and frozenset((ids["crm-2"], ids["web-2"])) in merged
    )
    assert report["status"] == "done"


async def test_dedupe_trains_the_tenants_model(
    client: httpx.AsyncClient,
    tmp_path: Path,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await batch.import_customers(sessionmaker, tenant.context, _csv(tmp_path, PEOPLE))
    report: dict[str, Any] = await batch.dedupe(sessionmaker, tenant.context, train=True)
    assert report["trained"] is True
    assert report["profiles"] == len(PEOPLE)
    settings = (await client.get("/v1/matching/settings", headers=tenant.headers)).json()
    assert settings["trained_profiles"] == len(PEOPLE)

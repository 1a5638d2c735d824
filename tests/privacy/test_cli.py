"""``hilos customer export``: the same document as the API, printed for an operator; it, and
the tenants and users the command creates, are recorded in the audit log as its own acts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hilos.cli import app as cli
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.settings import get_settings
from hilos.core.tenancy import load_tenant
from hilos.customers import service as customers
from hilos.privacy.models import AuditEntry


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HILOS_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


async def _customer(url: str, tenant_id: str) -> str:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            tenant = await load_tenant(session, tenant_id)
            result = await customers.identify(
                session, tenant, identities=[("email", "rosa@example.es")], name="Rosa Navarro"
            )
            return result.customer_id
    finally:
        await engine.dispose()


async def _log(url: str, tenant_id: str) -> list[tuple[str, str, str | None]]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(AuditEntry.action, AuditEntry.actor_type, AuditEntry.subject_id)
                .where(AuditEntry.tenant_id == tenant_id)
                .order_by(AuditEntry.id)
            )
            return [tuple(row) for row in rows.all()]  # type: ignore[misc]
    finally:
        await engine.dispose()


def test_customer_export_prints_the_document_and_is_recorded(cli_database: str) -> None:
    created = CliRunner().invoke(cli, ["tenant", "create", "Tienda Uno", "--json"])
    assert created.exit_code == 0, created.output
    tenant_id = json.loads(created.stdout)["tenant_id"]
    customer_id = asyncio.run(_customer(cli_database, tenant_id))
    user = CliRunner().invoke(
        cli,
        [
            *("user", "create", "--tenant", tenant_id, "--email", "ana@example.es"),
            *("--name", "Ana", "--role", "admin", "--password", "una-clave-larga"),
        ],
    )
    assert user.exit_code == 0, user.output
    user_id = user.output.strip().rsplit(" ", 1)[-1]

    result = CliRunner().invoke(cli, ["customer", "export", customer_id, "--tenant", tenant_id])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["customer_id"] == customer_id
    assert document["data"]["customers"][0]["name"] == "Rosa Navarro"
    assert document["data"]["identities"][0]["value"] == "rosa@example.es"
    # The command line's actions are recorded as its own.
    assert asyncio.run(_log(cli_database, tenant_id)) == [
        ("tenant.created", "cli", tenant_id),
        ("user.created", "cli", user_id),
        ("customer.exported", "cli", customer_id),
    ]

    unknown = CliRunner().invoke(cli, ["customer", "export", "0" * 32, "--tenant", tenant_id])
    assert unknown.exit_code == 2
    assert "not found" in unknown.output

"""``hilos import customers`` and ``hilos dedupe`` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hilos.cli import app as cli
from hilos.core.settings import get_settings
from tests.matching.test_batch import HEADER, PEOPLE


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HILOS_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_import_then_dedupe_from_the_command_line(cli_database: str, tmp_path: Path) -> None:
    created = CliRunner().invoke(cli, ["tenant", "create", "Tienda Uno", "--json"])
    assert created.exit_code == 0, created.output
    tenant_id = json.loads(created.stdout)["tenant_id"]

    bad = tmp_path / "malo.csv"
    bad.write_text(HEADER + PEOPLE[0] + "\nx-2,Ana,,,no-es-correo,,,,,\n", encoding="utf-8")
    refused = CliRunner().invoke(cli, ["import", "customers", str(bad)])
    assert refused.exit_code == 1
    assert "line 3" in refused.output
    assert "nothing imported" in refused.output

    good = tmp_path / "clientes.csv"
    good.write_text(HEADER + "\n".join(PEOPLE) + "\n", encoding="utf-8")
    imported = CliRunner().invoke(cli, ["import", "customers", str(good), "--tenant", tenant_id])
    assert imported.exit_code == 0, imported.output
    assert f"{len(PEOPLE)} new customers" in imported.output
    again = CliRunner().invoke(cli, ["import", "customers", str(good), "--tenant", "Tienda Uno"])
    assert "0 new customers" in again.output

    report_path = tmp_path / "informe.json"
    deduped = CliRunner().invoke(
        cli, ["dedupe", "--tenant", tenant_id, "--no-train", "--report", str(report_path)]
    )
    assert deduped.exit_code == 0, deduped.output
    assert "Clusters found" in deduped.output
    report = json.loads(report_path.read_text())
    assert report["status"] == "done"
    assert report["profiles"] == len(PEOPLE)
    # Two people written twice, and a father and son a person must tell apart.
    assert report["clusters_found"] == 3
    # No automatic threshold is set: everything found waits for review.
    assert report["clusters_merged"] == 0
    assert report["left_for_review"] >= 3

    unknown = CliRunner().invoke(cli, ["dedupe", "--tenant", "Nadie"])
    assert unknown.exit_code == 2
    assert "no tenant Nadie" in unknown.output

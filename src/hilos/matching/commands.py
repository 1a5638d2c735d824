"""What ``hilos import customers`` and ``hilos dedupe`` run: the tenant named on the command
line, Rich progress bars, and the printed report (``hilos.cli`` declares the commands)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.errors import Invalid, NotFound
from hilos.core.models import Tenant
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext
from hilos.matching import batch


class RichProgress:
    """``batch.Progress`` drawn as Rich progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        task = self.progress.add_task(description, total=total)
        return lambda steps: self.progress.advance(task, steps)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


async def find_tenant(session: AsyncSession, tenant: str | None) -> TenantContext:
    """The tenant with this id or exact name; with none named, the only tenant there is."""
    statement = select(Tenant).order_by(Tenant.id).limit(2)
    if tenant:
        statement = statement.where(or_(Tenant.id == tenant, Tenant.name == tenant))
    found = list((await session.execute(statement)).scalars())
    if not found:
        raise NotFound(f"no tenant {tenant}" if tenant else "there is no tenant yet")
    if len(found) > 1:
        raise Invalid(
            "name the tenant with --tenant (its id or name)"
            if not tenant
            else f"several tenants are called {tenant}; use the tenant's id",
            field="tenant",
        )
    return TenantContext.from_row(found[0])


async def run_import(
    settings: Settings, *, path: Path, tenant: str | None, skip_invalid: bool, console: Console
) -> batch.ImportReport:
    engine = make_engine(settings.database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        async with sessionmaker() as session:
            context = await find_tenant(session, tenant)
        with _progress(console) as progress:
            return await batch.import_customers(
                sessionmaker,
                context,
                path,
                skip_invalid=skip_invalid,
                progress=RichProgress(progress),
            )
    finally:
        await engine.dispose()


def print_import(report: batch.ImportReport, console: Console) -> None:
    for error in report.invalid:
        console.print(f"[red]line {error.line}[/red]: " + "; ".join(error.errors))
    if report.imported:
        console.print(
            f"[green]{report.created + report.existing} rows imported[/green]: "
            f"{report.created} new customers, {report.existing} already there"
            + (f", {len(report.invalid)} rows skipped" if report.invalid else "")
        )
    else:
        console.print(
            f"[red]nothing imported[/red]: {len(report.invalid)} of {report.rows} rows have "
            "errors (fix them, or --skip-invalid to import the others)"
        )


async def run_dedupe(
    settings: Settings,
    *,
    tenant: str | None,
    train: bool,
    max_clusters: int | None,
    console: Console,
) -> dict[str, Any]:
    engine = make_engine(settings.database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        async with sessionmaker() as session:
            context = await find_tenant(session, tenant)
        with _progress(console) as progress:
            return await batch.dedupe(
                sessionmaker,
                context,
                train=train,
                max_clusters=max_clusters,
                progress=RichProgress(progress),
            )
    finally:
        await engine.dispose()


REPORT_LINES = (
    ("profiles", "Profiles compared"),
    ("candidate_pairs", "Candidate pairs (blocking)"),
    ("pairs_above_review", "Pairs at or above the review threshold"),
    ("clusters_found", "Clusters found"),
    ("clusters_to_merge", "Clusters at the automatic threshold"),
    ("clusters_merged", "Clusters merged"),
    ("profiles_merged", "Profiles merged"),
    ("clusters_skipped", "Clusters skipped (a rejection forbids them)"),
    ("left_for_review", "Suggestions left for review"),
)


def print_dedupe(report: dict[str, Any], console: Console, *, path: Path | None) -> None:
    table = Table(title=f"De-duplication {report['run_id']} ({report['status']})")
    table.add_column("")
    table.add_column("", justify="right")
    for key, label in REPORT_LINES:
        table.add_row(label, str(report.get(key, "")))
    console.print(table)
    if report["status"] != "done":
        console.print("[yellow]stopped before the end: run it again to continue[/yellow]")
    if path is not None:
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        console.print(f"report written to {path}")

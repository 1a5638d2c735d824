"""The ``hilos`` command: serve, worker, migrate, demo, tenant and user management."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hilos.core.settings import Settings, get_settings

# How long a stopping server lets requests finish. The console's event streams last minutes
# (then their browsers reconnect, elsewhere if this process is gone): no stop waits for them.
GRACEFUL_SHUTDOWN_SECONDS = 10

app = typer.Typer(help="Hilos: one customer, one conversation, one stock.", no_args_is_help=True)
tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
user_app = typer.Typer(help="Manage console users.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
customer_app = typer.Typer(help="A customer's data (GDPR access).", no_args_is_help=True)
app.add_typer(customer_app, name="customer")
import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console()


def _migrate(settings: Settings) -> None:
    from hilos.migrate import upgrade_url

    upgrade_url(settings.database_url)


@app.command()
def migrate() -> None:
    """Bring the database of HILOS_DATABASE_URL to the latest schema."""
    settings = get_settings()
    _migrate(settings)
    console.print(f"[green]database is up to date[/green] ({settings.database_url.split('@')[-1]})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="HTTP processes (PostgreSQL only).")] = 1,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Run the background worker in this process (default: on SQLite only).",
        ),
    ] = None,
    smtp: Annotated[
        bool,
        typer.Option(
            "--smtp/--no-smtp",
            help="Receive email for email channels on HILOS_SMTP_HOST:HILOS_SMTP_PORT.",
        ),
    ] = True,
) -> None:
    """Serve the API and console (on SQLite, migrate first and run the worker in-process),
    and the inbound SMTP server."""
    import uvicorn

    from hilos.core.logging import configure_logging

    settings = get_settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    if settings.is_sqlite:
        _migrate(settings)
        if workers != 1:
            raise typer.BadParameter("SQLite serves from one process; use PostgreSQL for more")
    run_worker = settings.is_sqlite if worker is None else worker
    if workers == 1:
        from hilos.app import create_app

        application = create_app(settings, run_worker=run_worker, run_smtp=smtp)
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level="warning",
            # uvicorn's own lines go through configure_logging's handler (JSON if asked).
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    else:
        import os
        import shutil
        import tempfile

        from hilos.core.metrics import MULTIPROCESS_DIR_VARIABLE, prepare_multiprocess_dir

        os.environ["HILOS_RUN_WORKER"] = "1" if run_worker else "0"
        os.environ["HILOS_RUN_SMTP"] = "1" if smtp else "0"
        # One /metrics for all the processes: each writes its figures to files in this
        # directory and whichever answers a scrape adds them up (hilos.core.metrics).
        own_dir = os.environ.get(MULTIPROCESS_DIR_VARIABLE) is None
        metrics_dir = os.environ.setdefault(
            MULTIPROCESS_DIR_VARIABLE, tempfile.mkdtemp(prefix="hilos-metrics-")
        )
        prepare_multiprocess_dir(metrics_dir)
        try:
            uvicorn.run(
                "hilos.asgi:app",
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        finally:
            if own_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command("worker")
def run_worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (default: HILOS_METRICS_PORT; none, "
            "no listener). Each worker process on a machine needs a port of its own."
        ),
    ] = None,
) -> None:
    """Run the background worker alone (outbox relay, timers)."""
    import structlog

    from hilos.core.bus import make_bus
    from hilos.core.db import make_engine, make_sessionmaker
    from hilos.core.logging import configure_logging
    from hilos.core.metrics import serve_worker_metrics
    from hilos.worker import Worker

    settings = get_settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    port = metrics_port if metrics_port is not None else settings.metrics_port
    listener = None
    if port is not None:
        listener = serve_worker_metrics(host=settings.metrics_host, port=port)
        structlog.get_logger("hilos.worker").info(
            "worker.metrics_listening", host=settings.metrics_host, port=listener.port
        )

    async def main() -> None:
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        bus = make_bus(settings.bus_url)
        await bus.start()
        worker = Worker(
            sessionmaker=make_sessionmaker(engine),
            bus=bus,
            interval=settings.worker_interval_seconds,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run_forever()
        finally:
            await bus.close()
            await engine.dispose()

    import uvloop

    try:
        # uvloop (as uvicorn uses for ``serve``): the relay's socket writes to PostgreSQL and NATS
        # took a third of the worker's CPU on asyncio's own loop.
        uvloop.run(main())
    finally:
        if listener is not None:
            listener.close()


@app.command()
def demo(
    reset: Annotated[bool, typer.Option(help="Delete and recreate the demo tenant.")] = False,
) -> None:
    """Create the tenant "Tienda Demo" with channels, customers and conversations."""
    from hilos.demo import run_demo

    settings = get_settings()
    _migrate(settings)
    info = asyncio.run(run_demo(settings, reset=reset, console=console))
    console.print()
    console.print("[bold]Hilos demo is ready[/bold]")
    console.print(f"  URL:           {settings.base_url}")
    console.print(f"  API docs:      {settings.base_url}/docs")
    console.print(f"  Console login: {info.login_email} / {info.login_password}")
    console.print(f"  API key:       {info.api_key}")
    console.print(f"  Tenant id:     {info.tenant_id}")


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="The business's name.")],
    region: Annotated[str, typer.Option(help="Default phone region (ISO 3166).")] = "ES",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Europe/Madrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
) -> None:
    """Create a tenant and print its id and an admin API key (shown once)."""
    from hilos.core.db import make_engine, make_sessionmaker
    from hilos.core.schemas import TenantUpdate
    from hilos.core.service import create_tenant
    from hilos.privacy import audit

    settings = get_settings()
    try:
        TenantUpdate(default_region=region, timezone=timezone)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error

    async def main() -> tuple[str, str]:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                tenant, key = await create_tenant(
                    session, name=name, default_region=region.upper(), timezone=timezone
                )
                await audit.record(
                    session,
                    audit.Actor.cli(tenant.id),
                    "tenant.created",
                    subject_type="tenant",
                    subject_id=tenant.id,
                    details={"name": name},
                )
                return tenant.id, key
        finally:
            await engine.dispose()

    if settings.is_sqlite:
        _migrate(settings)
    tenant_id, key = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps({"tenant_id": tenant_id, "api_key": key}))
    else:
        console.print(f"tenant [bold]{name}[/bold] created")
        console.print(f"  tenant id: {tenant_id}")
        console.print(f"  admin API key (shown once): {key}")


@user_app.command("create")
def user_create(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    email: Annotated[str, typer.Option(help="Login email.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
    role: Annotated[str, typer.Option(help="admin, supervisor or agent.")] = "agent",
) -> None:
    """Add a console user to a tenant."""
    from pydantic import ValidationError

    from hilos.core.db import make_engine, make_sessionmaker
    from hilos.core.errors import HilosError
    from hilos.core.schemas import UserCreate
    from hilos.core.service import create_user
    from hilos.core.tenancy import load_tenant
    from hilos.privacy import audit

    settings = get_settings()
    try:
        body = UserCreate(email=email, name=name, role=role, password=password)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error

    async def main() -> str:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                context = await load_tenant(session, tenant)
                user = await create_user(
                    session,
                    tenant=context,
                    email=str(body.email),
                    name=body.name,
                    role=body.role,
                    password=body.password,
                )
                await audit.record(
                    session,
                    audit.Actor.cli(context.id),
                    "user.created",
                    subject_type="user",
                    subject_id=user.id,
                    details={"email": user.email, "role": user.role},
                )
                return user.id
        finally:
            await engine.dispose()

    try:
        user_id = asyncio.run(main())
    except HilosError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    console.print(f"user {body.email} ({body.role}) created: {user_id}")


@customer_app.command("export")
def customer_export(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
) -> None:
    """Print everything Hilos holds about a customer as one JSON document (as
    GET /v1/customers/{id}/export does); the audit log records it as done from the command line."""
    from hilos.core.db import make_engine, make_sessionmaker
    from hilos.core.errors import HilosError
    from hilos.core.tenancy import load_tenant
    from hilos.privacy.audit import Actor
    from hilos.privacy.export import export_customer

    settings = get_settings()

    async def main() -> dict[str, object]:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                context = await load_tenant(session, tenant)
                return await export_customer(
                    session, context, Actor.cli(context.id), customer_id=customer_id
                )
        finally:
            await engine.dispose()

    try:
        document = asyncio.run(main())
    except HilosError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2))


@import_app.command("customers")
def import_customers(
    file: Annotated[Path, typer.Argument(help="CSV file.", exists=True, dir_okay=False)],
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the good rows even if others have errors.")
    ] = False,
) -> None:
    """Import customers from a CSV file (external_id, name or given_name + surnames, email,
    phone, birth_date, street, postcode, city); running it again creates nothing twice."""
    from hilos.core.errors import HilosError
    from hilos.matching.commands import print_import, run_import

    settings = get_settings()
    if settings.is_sqlite:
        _migrate(settings)
    try:
        report = asyncio.run(
            run_import(
                settings, path=file, tenant=tenant, skip_invalid=skip_invalid, console=console
            )
        )
    except HilosError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    print_import(report, console)
    if not report.imported:
        raise typer.Exit(1)


@app.command()
def dedupe(
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the report as JSON to this file.")
    ] = None,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Train the tenant's model first.")
    ] = True,
    max_clusters: Annotated[
        int | None,
        typer.Option(min=1, help="Merge at most this many clusters now (the rest next run)."),
    ] = None,
) -> None:
    """Find the duplicates among all of a tenant's customers: merge those above the automatic
    threshold, queue the rest for review. Resumable: run it again after a stop."""
    from hilos.core.errors import HilosError
    from hilos.matching.commands import print_dedupe, run_dedupe

    settings = get_settings()
    if settings.is_sqlite:
        _migrate(settings)
    try:
        result = asyncio.run(
            run_dedupe(
                settings, tenant=tenant, train=train, max_clusters=max_clusters, console=console
            )
        )
    except HilosError as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    print_dedupe(result, console, path=report)


if __name__ == "__main__":
    app()

"""Real Hilos processes on loopback for the fault tests: servers, workers and a NATS of their own.

Each process is the production command (``hilos serve --no-worker``, ``hilos worker``) started
by this interpreter with its environment pointing at a PostgreSQL database created for the test
and at a ``nats-server -js`` started for the test (its store in a temporary directory), so the
test may ``kill -9`` any of them and start it again on the same port and store. The providers'
API is the one fake a test may use: ``FakeGraphServer`` serves ``tests.channels.fake_whatsapp``
over real HTTP, so workers in other processes send to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from tests.channels.fake_whatsapp import FakeWhatsApp
from tests.serving import serving

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
REPO = Path(__file__).resolve().parents[2]
READY_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.2
) -> None:
    """Wait until ``check()`` holds (the processes work on their own time), or fail saying what
    did not happen."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(every)


def database_url_named(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def recreate_database(url: str) -> None:
    """Drop and create the database ``url`` names, through the server's ``postgres`` one."""
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(asyncpg_dsn(database_url_named(url, "postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.command, env=self.env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flushing, as a crashed machine's process."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """PostgreSQL database, NATS, N servers and M workers of one test."""

    database_url: str
    workdir: Path
    nats_port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)
    # Closed when the cluster stops (clients a test opened mid-way).
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def bus_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HILOS_DATABASE_URL=self.database_url,
            HILOS_BUS_URL=self.bus_url,
            HILOS_LOG_LEVEL="warning",
            HILOS_BASE_URL="http://127.0.0.1:8000",
            # A worker killed while sending leaves its replies in doubt this long (not 2 min).
            HILOS_DELIVERY_CLAIM_SECONDS="3",
            HILOS_WORKER_INTERVAL_SECONDS="0.2",
            HILOS_DATABASE_POOL_SIZE="20",
            **extra,
        )
        return env

    def hilos(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hilos.cli", *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"hilos {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    # --- NATS ---------------------------------------------------------------------------------

    def start_nats(self) -> None:
        store = self.workdir / "nats"
        store.mkdir(exist_ok=True)
        process = self.processes.get("nats") or Process(
            "nats",
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.nats_port), "-js", "-sd", str(store)],
            dict(os.environ),
            self.workdir / "nats.log",
            port=self.nats_port,
        )
        self.processes["nats"] = process
        process.start()

    async def nats_ready(self) -> None:
        async def answers() -> bool:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.nats_port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually(answers, timeout=READY_SECONDS, what="NATS answers")

    # --- Hilos processes ----------------------------------------------------------------------

    def start_server(self, name: str) -> Process:
        process = self.processes.get(name)
        if process is None:
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "hilos.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-worker",
                "--no-smtp",
            ]
            process = Process(name, command, self.env(), self.workdir / f"{name}.log", port=port)
            self.processes[name] = process
        process.start()
        return process

    def start_worker(self, name: str) -> Process:
        process = self.processes.get(name)
        if process is None:
            command = [sys.executable, "-m", "hilos.cli", "worker"]
            process = Process(name, command, self.env(), self.workdir / f"{name}.log")
            self.processes[name] = process
        process.start()
        return process

    async def server_ready(self, process: Process) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def ready() -> bool:
                if process.popen is not None and process.popen.poll() is not None:
                    raise AssertionError(f"{process.name} exited:\n{process.tail()}")
                try:
                    response = await client.get(process.url + "/readyz")
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            await eventually(ready, timeout=READY_SECONDS, what=f"{process.name} is ready")

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()

    def logs(self) -> str:
        return "\n\n".join(
            f"--- {process.name} ---\n{process.tail()}" for process in self.processes.values()
        )


@contextlib.asynccontextmanager
async def cluster(base_database_url: str, *, name: str) -> AsyncIterator[Cluster]:
    """A fresh database ``name`` on the test PostgreSQL server, migrated, and a NATS."""
    url = database_url_named(base_database_url, name)
    await recreate_database(url)
    workdir = Path(tempfile.mkdtemp(prefix="hilos-faults-"))
    running = Cluster(database_url=url, workdir=workdir)
    try:
        running.start_nats()
        await running.nats_ready()
        running.hilos("migrate")
        yield running
    finally:
        for close in running.cleanup:
            await close()
        running.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


class FakeGraphApp:
    """``FakeWhatsApp`` (an httpx handler built from Meta's documented formats) as an ASGI app,
    so processes other than the test's reach it over HTTP."""

    def __init__(self, fake: FakeWhatsApp) -> None:
        self.fake = fake

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        request = httpx.Request(
            scope["method"], f"http://fake{scope['path']}", headers=headers, content=body
        )
        response = self.fake(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


@contextlib.asynccontextmanager
async def fake_graph_api(fake: FakeWhatsApp) -> AsyncIterator[str]:
    """The fake Graph API served on loopback; yields the base URL a channel's config takes."""
    async with serving(FakeGraphApp(fake)) as url:
        yield url + "/v21.0"

"""What every benchmark shares: servers in their own processes, the load client, the results.

The rule this module enforces: the load always comes from a process other than the server's.
``Server`` starts ``hilos serve`` (or any uvicorn app) as a subprocess on a free loopback port,
waits for ``/readyz`` and stops it again; the benchmark script itself is the load generator.

The load client is a minimal HTTP/1.1 keep-alive client on asyncio streams (``Connection``),
not httpx: on a 2-core machine the load generator shares the cores with the server and the
database. Measured against the bare FastAPI app with 16 connections, ``httpx.AsyncClient``
spent about 2.6 ms of CPU per request and could not send more than about 400 requests/s, while
the few lines below spend about 0.1 ms and reach the app's own limit. It speaks only what our
endpoints answer (``Content-Length`` bodies on loopback).

Results: ``write_results`` stores ``benchmarks/results/<name>.json`` (figures, date, cores, the
exact command line) and regenerates ``benchmarks/RESULTS.md`` from every JSON file there, one
table per benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
LOOPBACK = "127.0.0.1"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"

# Wide enough for the tables when the output is a file or a pipe rather than a terminal.
console = Console(width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")


# --- machine facts and the command line -----------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """Cores, Python, the date (UTC) and the state of the source of this run."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "source": source_fingerprint(),
    }


def source_fingerprint() -> str:
    """The git commit when there is one, and a digest of ``src/hilos``'s Python files, which
    tells apart runs of an uncommitted or changed tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "src" / "hilos").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return (
        f"{'commit ' + commit + ', ' if commit else ''}src/hilos sha256 {digest.hexdigest()[:12]}"
    )


def command_line() -> str:
    """The exact command that ran this benchmark, relative to the repository when possible."""
    executable = Path(sys.executable)
    with contextlib.suppress(ValueError):
        executable = executable.relative_to(REPO_DIR)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO_DIR)
    return shlex.join([str(executable), str(script), *sys.argv[1:]])


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (as uvicorn does), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def hilos_command(*args: str) -> list[str]:
    """``hilos ARGS`` run by this interpreter, so the benchmark uses the venv it runs in."""
    return [sys.executable, "-m", "hilos.cli", *args]


def hilos_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HILOS_DATABASE_URL=database_url,
        HILOS_LOG_LEVEL="warning",
        HILOS_BASE_URL="http://127.0.0.1",
        **extra,
    )
    return env


def run_hilos(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 300) -> str:
    """Run one ``hilos`` command to completion and return its standard output."""
    done = subprocess.run(
        hilos_command(*args),
        env=dict(env),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hilos {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def create_tenant(env: Mapping[str, str], name: str = "Bench") -> tuple[str, str]:
    """A new tenant through ``hilos tenant create --json``: (tenant id, admin API key)."""
    created = json.loads(run_hilos(["tenant", "create", name, "--json"], env=env).splitlines()[-1])
    return str(created["tenant_id"]), str(created["api_key"])


def _cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(parent pid, user + system clock ticks) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (uvicorn workers)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for pid in _all_pids():
        sample = _cpu_ticks(pid)
        if sample is not None:
            parents[pid], ticks[pid] = sample
    members = {root_pid}
    for _ in range(8):  # a process tree a few levels deep at most
        grown = members | {pid for pid, parent in parents.items() if parent in members}
        if grown == members:
            break
        members = grown
    return sum(ticks.get(pid, 0) for pid in members) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class DatabaseSample:
    """CPU clock ticks of each backend of the benchmark's database, and how many sessions the
    database has seen (PostgreSQL 14+), at one moment."""

    ticks: dict[int, int]
    sessions: int | None


async def sample_database(url: str) -> DatabaseSample:
    """Only the backends of the database of ``url``: other clients of the same PostgreSQL server
    (a test suite on another database) are not counted, nor are its background processes."""
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        sessions = await connection.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
    except asyncpg.UndefinedColumnError:  # PostgreSQL before 14 has no session count
        sessions = None
    finally:
        await connection.close()
    ticks: dict[int, int] = {}
    for row in rows:
        sample = _cpu_ticks(int(row["pid"]))
        if sample is not None:
            ticks[int(row["pid"])] = sample[1]
    return DatabaseSample(ticks=ticks, sessions=None if sessions is None else int(sessions))


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy (not idle, not waiting on I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used during a measurement, split by who used them."""

    server: float
    database: float | None
    load: float
    machine: float
    # Sessions the database saw open during the measurement: a pool that keeps its connections
    # opens none; one that overflows forks a PostgreSQL backend per extra connection.
    database_sessions: int | None = None

    @property
    def other(self) -> float:
        """Everything else on the machine: other agents' work, PostgreSQL's background
        processes, the OS."""
        return max(0.0, self.machine - self.server - (self.database or 0.0) - self.load)


class CpuMeter:
    """Who used the CPU between ``start`` and ``stop``: the server's process tree, the backends
    of the benchmark's database, this (load) process, and the machine as a whole."""

    def __init__(self, server_pid: int, database_url: str | None) -> None:
        self.server_pid = server_pid
        self.database_url = database_url
        self._start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._database_start: DatabaseSample | None = None

    @classmethod
    async def start(cls, server_pid: int, *, database_url: str | None) -> CpuMeter:
        meter = cls(server_pid, database_url)
        if database_url is not None:
            meter._database_start = await sample_database(database_url)
        meter._start = meter._sample()
        return meter

    def _sample(self) -> tuple[float, float, float]:
        return tree_cpu_seconds(self.server_pid), time.process_time(), machine_busy_seconds()

    async def stop(self) -> CpuUse:
        end = self._sample()
        database = sessions = None
        first = self._database_start
        if self.database_url is not None and first is not None:
            last = await sample_database(self.database_url)
            # A backend that connected during the run counts from zero; one that disconnected
            # before the end is lost, so with many sessions this undercounts.
            used = sum(t - first.ticks.get(pid, 0) for pid, t in last.ticks.items())
            database = used / os.sysconf("SC_CLK_TCK")
            if first.sessions is not None and last.sessions is not None:
                # The first sample's own session is among those counted by the last.
                sessions = max(0, last.sessions - first.sessions - 1)
        server, load, machine = (b - a for a, b in zip(self._start, end, strict=True))
        return CpuUse(
            server=server,
            database=database,
            load=load,
            machine=machine,
            database_sessions=sessions,
        )


class Server:
    """A server in its own process on a free loopback port, ready once ``/readyz`` answers 200.

    Use as a context manager; leaving it stops the process (SIGTERM, then SIGKILL of its own
    process group if it has not ended within ``stop_timeout`` seconds).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        label: str,
        ready_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.port = port
        self.label = label
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._resources = contextlib.ExitStack()
        self._log: IO[bytes] | None = None

    @classmethod
    def hilos(cls, *, database_url: str, workers: int = 1, label: str, **env: str) -> Server:
        port = free_port()
        command = hilos_command(
            "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)
        )
        return cls(command, env=hilos_env(database_url, **env), port=port, label=label)

    @classmethod
    def uvicorn(cls, app: str, *, app_dir: Path, workers: int = 1, label: str) -> Server:
        """An ASGI app ``module:attribute`` served by uvicorn as ``hilos serve`` serves Hilos."""
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--app-dir",
            str(app_dir),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        return cls(command, env=os.environ, port=port, label=label)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.label} is not running")
        return self.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def __enter__(self) -> Server:
        self._log = self._resources.enter_context(tempfile.TemporaryFile())
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=REPO_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            self._resources.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._resources.close()

    def log_tail(self, characters: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-characters:]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if _get_status(self.port, "/readyz") == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.label} not ready within {self.ready_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            # The group is the one this server was started in (start_new_session), so this
            # reaches its uvicorn workers and nothing else.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(self.stop_timeout)


def _get_status(port: int, path: str) -> int | None:
    """The status of ``GET path`` on the loopback port, or ``None`` if nothing answers yet."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n".encode()
            )
            first = sock.recv(64)
    except OSError:
        return None
    parts = first.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


# --- the load client ------------------------------------------------------------------------


class Connection:
    """One HTTP/1.1 keep-alive connection to a loopback server (see the module docstring)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.prefix = prefix

    @classmethod
    async def open(cls, port: int, *, headers: Mapping[str, str]) -> Connection:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        lines = [f"Host: {LOOPBACK}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        return cls(reader, writer, ("\r\n".join(lines) + "\r\n").encode())

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: bytes = b""
    ) -> tuple[int, bytes]:
        """``headers``: more header lines for this request only, encoded, each ending in CRLF
        (``header_lines``), such as a signature of this body."""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.prefix + headers
        if body or method != "GET":
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, _, header_block = raw.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this load client")
        if length is None:
            raise RuntimeError(f"response without Content-Length to {method} {path}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def call_json(
    port: int, method: str, path: str, body: Any, *, headers: Mapping[str, str]
) -> tuple[int, Any]:
    """One JSON request on its own connection (for set-up, not for load)."""
    connection = await Connection.open(port, headers=headers)
    try:
        encoded = b"" if body is None else json.dumps(body).encode()
        status, raw = await asyncio.wait_for(connection.request(method, path, encoded), 30)
    finally:
        await connection.close()
    return status, json.loads(raw) if raw else None


def header_lines(headers: Mapping[str, str]) -> bytes:
    """Header lines for ``Connection.request`` (encoded once, when the calls are planned)."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


@dataclass(frozen=True, slots=True)
class Call:
    """One planned request: what to send, and a tag to count answers by (e.g. "redelivery").
    ``headers`` are this request's own header lines (``header_lines``), sent after the
    connection's."""

    path: str
    body: bytes
    tag: str = ""
    headers: bytes = b""


@dataclass
class LoadResult:
    planned: int
    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    latencies_by_tag: dict[str, list[float]] = field(default_factory=dict)
    # (seconds since the start, latency, tag) of every answered call, in answer order.
    timeline: list[tuple[float, float, str]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    tags: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    client_cpu: float = 0.0
    stopped_by_clock: bool = False

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float, *, tags: Sequence[str] | None = None) -> float:
        """Nearest-rank percentile of the latencies (of calls with one of ``tags``), in ms."""
        if tags is None:
            chosen = self.latencies
        else:
            chosen = [v for tag in tags for v in self.latencies_by_tag.get(tag, [])]
        if not chosen:
            return float("nan")
        ordered = sorted(chosen)
        rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000

    def slowest(self, count: int = 5) -> list[dict[str, Any]]:
        """The slowest calls: when they were sent (s after the start), latency (ms), tag."""
        ranked = sorted(self.timeline, key=lambda entry: entry[1], reverse=True)[:count]
        return [
            {"at_s": round(at, 3), "ms": round(latency * 1000, 1), "tag": tag}
            for at, latency, tag in ranked
        ]


Inspector = Callable[[Call, int, bytes], str | None]


async def run_load(
    port: int | Sequence[int],
    calls: Sequence[Call],
    *,
    concurrency: int,
    max_seconds: float,
    headers: Mapping[str, str],
    inspect: Inspector | None = None,
    request_timeout: float = 30.0,
    method: str = "POST",
) -> LoadResult:
    """Send ``calls`` in order over ``concurrency`` keep-alive connections; stop when all are
    answered or after ``max_seconds``, whichever comes first. ``method="GET"`` sends
    ``Call.path`` (with its query) and no body.

    A 2xx answer counts as completed; ``inspect`` may look at its body and return a label that
    is counted in ``LoadResult.tags`` (for example "duplicate"). Anything else is an error.

    Several ports are several servers behind a load balancer: the connections are spread over
    them in turn, as a layer-4 balancer spreads long-lived connections.
    """
    ports = [port] if isinstance(port, int) else list(port)
    result = LoadResult(planned=len(calls))
    next_index = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + max_seconds

    async def worker(port: int) -> None:
        nonlocal next_index
        connection: Connection | None = None
        try:
            while next_index < len(calls):
                if time.perf_counter() >= deadline:
                    result.stopped_by_clock = True
                    return
                call = calls[next_index]
                next_index += 1
                if connection is None:
                    connection = await Connection.open(port, headers=headers)
                sent = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(
                        connection.request(method, call.path, call.body, call.headers),
                        request_timeout,
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError) as error:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(repr(error))
                    await connection.close()
                    connection = None
                    continue
                latency = time.perf_counter() - sent
                result.latencies.append(latency)
                result.latencies_by_tag.setdefault(call.tag, []).append(latency)
                result.timeline.append((sent - started, latency, call.tag))
                result.statuses[status] += 1
                if 200 <= status < 300:
                    result.completed += 1
                    label = inspect(call, status, body) if inspect is not None else None
                    if label:
                        result.tags[label] += 1
                else:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{status} {body[:300]!r}")
        finally:
            if connection is not None:
                await connection.close()

    await asyncio.gather(*(worker(ports[n % len(ports)]) for n in range(max(1, concurrency))))
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu_started
    return result


# --- PostgreSQL -----------------------------------------------------------------------------


def asyncpg_dsn(url: str, *, database: str | None = None) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, for a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def postgres_reachable(url: str) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(asyncpg_dsn(url, database="postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def recreate_postgres_database(url: str) -> None:
    """Drop and create the database of ``url``; only databases named ``bench...`` are touched,
    so a mistyped URL cannot wipe the test or a real database."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: its name must start with bench")
    connection = await asyncpg.connect(asyncpg_dsn(url, database="postgres"), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    digits: int | None = None  # decimals for floats; None prints the value as it is


def format_value(value: Any, column: Column) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and column.digits is not None:
        return f"{value:,.{column.digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column.header, justify="left" if column.digits is None else "right")
    for row in rows:
        table.add_row(*(format_value(row.get(c.key), c) for c in columns))
    console.print(table)


def write_results(
    name: str,
    *,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    figures: Mapping[str, Any],
    notes: Sequence[str],
    facts: Mapping[str, Any],
) -> Path:
    """Store ``results/<name>.json`` and regenerate ``RESULTS.md`` from every results file."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "name": name,
        "title": title,
        **facts,
        "command": command_line(),
        "figures": dict(figures),
        "columns": [{"key": c.key, "header": c.header, "digits": c.digits} for c in columns],
        "rows": [dict(row) for row in rows],
        "notes": list(notes),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    regenerate_results_md()
    return path


def regenerate_results_md() -> None:
    sections = [
        "# Benchmark results",
        "",
        "Generated from `benchmarks/results/*.json` by `benchmarks/_common.py`; rerun a "
        "benchmark to update its section (see `benchmarks/README.md`).",
    ]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        document = json.loads(path.read_text())
        columns = [Column(**c) for c in document.get("columns", [])]
        sections += [
            "",
            f"## {document.get('title') or document['name']}",
            "",
            f"- Date: {document.get('date')} (UTC)",
            f"- Cores: {document.get('cores')}; Python {document.get('python')}; "
            f"{document.get('platform', '')}",
            f"- Command: `{document.get('command')}`",
            f"- Source: {document.get('source', 'not recorded')}",
            "",
            "| " + " | ".join(c.header for c in columns) + " |",
            "|" + "|".join("---" if c.digits is None else "---:" for c in columns) + "|",
        ]
        for row in document.get("rows", []):
            sections.append(
                "| " + " | ".join(format_value(row.get(c.key), c) for c in columns) + " |"
            )
        notes = document.get("notes", [])
        if notes:
            sections += ["", *(f"- {note}" for note in notes)]
    RESULTS_MD.write_text("\n".join(sections) + "\n")

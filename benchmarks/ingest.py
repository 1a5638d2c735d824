"""Inbound messages per second through HTTP, against a bare FastAPI endpoint on the same machine.

Each run starts a server in its own process (``hilos serve`` on a fresh SQLite file, or on a
freshly created PostgreSQL database with 1 and then 2 HTTP processes) and this process sends
``POST /v1/messages/inbound`` over a bounded number of keep-alive connections. The same calls go
to a bare FastAPI app (``bare_app`` below: it parses the same JSON body and answers a constant)
served by uvicorn the same way, so ``hilos / bare`` says how much of the framework's ceiling the
inbound path keeps.

The mix: new messages from a pool of senders (``--senders``, so most messages continue an
existing conversation, as in real life) and a share of redeliveries of an earlier message's
``external_id`` (``--redeliveries``), which must come back ``duplicate: true``. Every run is
bounded by a message count (``--messages``) and a wall clock (``--max-seconds``).

Target (the project's issue): at least 1 000 inbound messages/s on PostgreSQL on 2 cores.

    .venv/bin/python benchmarks/ingest.py                     # SQLite, PostgreSQL 1 and 2 workers
    .venv/bin/python benchmarks/ingest.py --skip-postgres --messages 2000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    DEFAULT_POSTGRES_URL,
    Call,
    Column,
    CpuMeter,
    CpuUse,
    LoadResult,
    Server,
    call_json,
    console,
    create_tenant,
    hilos_env,
    machine_facts,
    postgres_reachable,
    print_table,
    recreate_postgres_database,
    run_async,
    run_hilos,
    run_load,
    write_results,
)
from fastapi import FastAPI
from pydantic import BaseModel

INBOUND_PATH = "/v1/messages/inbound"
TARGET_POSTGRES_RATE = 1000.0

# --- the bare reference app (served by uvicorn in its own process: ``ingest:bare_app``) ----


class BareSender(BaseModel):
    kind: str
    value: str
    name: str | None = None


class BareInbound(BaseModel):
    channel_id: str
    external_id: str
    sender: BareSender
    text: str = ""


_BARE_ANSWER = {
    "message_id": "0" * 32,
    "conversation_id": "0" * 32,
    "customer_id": "0" * 32,
    "duplicate": False,
}

bare_app = FastAPI()


@bare_app.post(INBOUND_PATH)
async def bare_inbound(body: BareInbound) -> dict[str, Any]:
    return _BARE_ANSWER


@bare_app.get("/readyz")
async def bare_ready() -> dict[str, str]:
    return {"status": "ready"}


# --- the plan -------------------------------------------------------------------------------

CHANNEL_PLACEHOLDER = "{channel_id}"


def sender_value(index: int) -> str:
    """A valid Spanish mobile as a WhatsApp id: 34 6 and eight digits."""
    return f"346{index:08d}"


def plan_messages(
    *, count: int, senders: int, redelivery_share: float, seed: int, sender_offset: int = 0
) -> list[dict[str, Any]]:
    """Bodies to send, in order; a redelivery repeats an earlier body exactly.

    A redelivery picks a message at least 64 places earlier, so its first delivery has almost
    always been answered already (a provider retries after seconds, not microseconds).
    """
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for index in range(count):
        if index >= 64 and rng.random() < redelivery_share:
            earlier = dict(bodies[rng.randrange(0, index - 63)])
            earlier["_tag"] = "redelivery"
            bodies.append(earlier)
            continue
        who = sender_offset + rng.randrange(senders)
        bodies.append(
            {
                "channel_id": CHANNEL_PLACEHOLDER,
                "external_id": f"wamid.{seed}.{sender_offset}.{index}",
                "sender": {
                    "kind": "whatsapp",
                    "value": sender_value(who),
                    "name": f"Cliente {who}",
                },
                "text": f"Hola, ¿tenéis la talla {index % 48}?",
                "_tag": "new",
            }
        )
    return bodies


def to_calls(bodies: Sequence[dict[str, Any]], channel_id: str) -> list[Call]:
    calls = []
    for body in bodies:
        sent = {k: v for k, v in body.items() if k != "_tag"}
        sent["channel_id"] = channel_id
        calls.append(Call(INBOUND_PATH, json.dumps(sent).encode(), tag=body["_tag"]))
    return calls


def inspect_answer(call: Call, status: int, body: bytes) -> str | None:
    answer = json.loads(body)
    if answer.get("duplicate"):
        return "duplicate" if call.tag == "redelivery" else "unexpected duplicate"
    return "missed redelivery" if call.tag == "redelivery" else None


# --- runs -----------------------------------------------------------------------------------


def row_for(
    *,
    target: str,
    workers: int,
    result: LoadResult,
    cpu: CpuUse,
    planned_redeliveries: int,
) -> dict[str, Any]:
    completed = max(result.completed, 1)
    elapsed = max(result.elapsed, 1e-9)
    return {
        "target": target,
        "workers": workers,
        "messages": result.completed,
        "seconds": round(result.elapsed, 2),
        "rate": round(result.rate, 1),
        "p50_ms": round(result.percentile_ms(0.50), 2),
        "p99_ms": round(result.percentile_ms(0.99), 2),
        "errors": result.errors,
        "duplicates": (
            f"{result.tags['duplicate']}/{planned_redeliveries}" if planned_redeliveries else None
        ),
        "server_cpu_ms": round(cpu.server * 1000 / completed, 3),
        "db_cpu_ms": None if cpu.database is None else round(cpu.database * 1000 / completed, 3),
        "load_cpu_pct": round(100 * cpu.load / elapsed, 0),
        "other_cpu_pct": round(100 * cpu.other / elapsed, 0),
        "db_sessions": cpu.database_sessions,
        "stopped_by_clock": result.stopped_by_clock,
        "anomalies": {
            k: v
            for k, v in result.tags.items()
            if k in ("unexpected duplicate", "missed redelivery")
        },
        "error_samples": result.error_samples,
        "slowest": result.slowest(),
    }


async def measure(
    server: Server,
    *,
    calls: Sequence[Call],
    warmup: Sequence[Call],
    headers: dict[str, str],
    args: argparse.Namespace,
    check_answers: bool,
    database_url: str | None,
) -> tuple[LoadResult, CpuUse]:
    """Warm up, then send ``calls``; return the result and who used the CPU meanwhile."""
    await run_load(
        server.port,
        warmup,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        headers=headers,
    )
    meter = await CpuMeter.start(server.pid, database_url=database_url)
    result = await run_load(
        server.port,
        calls,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        headers=headers,
        inspect=inspect_answer if check_answers else None,
    )
    return result, await meter.stop()


async def run_hilos_target(
    *,
    target: str,
    database_url: str,
    workers: int,
    plan: Sequence[dict[str, Any]],
    warmup_plan: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> tuple[LoadResult, CpuUse]:
    env = hilos_env(database_url)
    is_postgres = database_url.startswith("postgresql")
    if is_postgres:
        await recreate_postgres_database(database_url)
        run_hilos(["migrate"], env=env)
    _tenant_id, api_key = create_tenant(env)
    headers = {"Authorization": f"Bearer {api_key}"}
    label = f"hilos serve ({target}, {workers} worker{'s' if workers > 1 else ''})"
    with Server.hilos(database_url=database_url, workers=workers, label=label) as server:
        status, channel = await call_json(
            server.port, "POST", "/v1/channels", {"kind": "whatsapp", "name": "WA"}, headers=headers
        )
        if status not in (200, 201):
            raise RuntimeError(f"creating the channel answered {status}: {channel}")
        return await measure(
            server,
            calls=to_calls(plan, channel["id"]),
            warmup=to_calls(warmup_plan, channel["id"]),
            headers=headers,
            args=args,
            check_answers=True,
            database_url=database_url if is_postgres else None,
        )


async def run_bare_target(
    *,
    workers: int,
    plan: Sequence[dict[str, Any]],
    warmup_plan: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> tuple[LoadResult, CpuUse]:
    with Server.uvicorn(
        "ingest:bare_app", app_dir=BENCH_DIR, workers=workers, label="bare FastAPI"
    ) as server:
        return await measure(
            server,
            calls=to_calls(plan, "bare"),
            warmup=to_calls(warmup_plan, "bare"),
            headers={"Authorization": "Bearer not-checked"},
            args=args,
            check_answers=False,
            database_url=None,
        )


COLUMNS = [
    Column("target", "target"),
    Column("workers", "HTTP processes", 0),
    Column("messages", "messages", 0),
    Column("seconds", "s", 2),
    Column("rate", "msg/s", 0),
    Column("p50_ms", "p50 ms", 1),
    Column("p99_ms", "p99 ms", 1),
    Column("errors", "errors", 0),
    Column("duplicates", "duplicates/redeliveries"),
    Column("server_cpu_ms", "server CPU ms/msg", 2),
    Column("db_cpu_ms", "PostgreSQL CPU ms/msg", 2),
    Column("load_cpu_pct", "load process CPU %", 0),
    Column("other_cpu_pct", "other processes CPU %", 0),
    Column("db_sessions", "PostgreSQL sessions opened", 0),
    Column("vs_bare", "× bare"),
]


async def main(args: argparse.Namespace) -> None:
    plan = plan_messages(
        count=args.messages,
        senders=args.senders,
        redelivery_share=args.redeliveries,
        seed=args.seed,
    )
    warmup_plan = plan_messages(
        count=args.warmup,
        senders=200,
        redelivery_share=args.redeliveries,
        seed=args.seed + 1,
        sender_offset=10_000_000,
    )
    planned_redeliveries = sum(1 for body in plan if body["_tag"] == "redelivery")
    first_messages = len({body["sender"]["value"] for body in plan})
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    postgres = not args.skip_postgres and await postgres_reachable(args.postgres_url)
    if not args.skip_postgres and not postgres:
        console.print(f"[yellow]PostgreSQL not reachable at {args.postgres_url}: skipped[/yellow]")

    rows: list[dict[str, Any]] = []
    bare_rates: dict[int, float] = {}
    for workers in sorted({1, *(worker_counts if postgres else [])}):
        console.print(f"bare FastAPI, {workers} worker(s)…")
        result, cpu = await run_bare_target(
            workers=workers, plan=plan, warmup_plan=warmup_plan, args=args
        )
        bare_rates[workers] = result.rate
        rows.append(
            row_for(
                target="bare FastAPI",
                workers=workers,
                result=result,
                cpu=cpu,
                planned_redeliveries=0,
            )
        )
    targets: list[tuple[str, str, int]] = []
    with tempfile.TemporaryDirectory(prefix="hilos-bench-") as directory:
        if not args.skip_sqlite:
            targets.append(("SQLite", f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}", 1))
        if postgres:
            targets += [("PostgreSQL", args.postgres_url, workers) for workers in worker_counts]
        for target, url, workers in targets:
            console.print(f"{target}, {workers} worker(s)…")
            result, cpu = await run_hilos_target(
                target=target,
                database_url=url,
                workers=workers,
                plan=plan,
                warmup_plan=warmup_plan,
                args=args,
            )
            row = row_for(
                target=target,
                workers=workers,
                result=result,
                cpu=cpu,
                planned_redeliveries=planned_redeliveries,
            )
            bare = bare_rates.get(workers)
            row["vs_bare"] = f"{result.rate / bare:.2f}" if bare else None
            rows.append(row)

    print_table("Inbound messages through HTTP", COLUMNS, rows)
    for row in rows:
        if row["errors"] or row["anomalies"]:
            console.print(
                f"[red]{row['target']} ({row['workers']}): {row['errors']} errors, "
                f"{row['anomalies']}, e.g. {row['error_samples']}[/red]"
            )
    figures: dict[str, Any] = {"target_postgres_msgs_per_s": TARGET_POSTGRES_RATE}
    for row in rows:
        key = f"{row['target'].split()[0].lower()}_w{row['workers']}"
        figures[f"{key}_msgs_per_s"] = row["rate"]
        figures[f"{key}_p99_ms"] = row["p99_ms"]
        if row.get("vs_bare"):
            figures[f"{key}_vs_bare"] = float(row["vs_bare"])
    best_postgres = max(
        (row["rate"] for row in rows if row["target"] == "PostgreSQL"), default=None
    )
    figures["postgres_target_met"] = (
        None if best_postgres is None else best_postgres >= TARGET_POSTGRES_RATE
    )
    notes = [
        f"{args.messages:,} messages per run after {args.warmup} warm-up messages, "
        f"{args.concurrency} concurrent keep-alive connections from one load process, "
        f"{args.senders:,} senders, {args.redeliveries:.0%} redeliveries; cap "
        f"{args.max_seconds:.0f} s per run. {first_messages:,} messages "
        f"({first_messages / len(plan):.0%}) are their sender's first: a new customer and "
        "conversation; the rest continue one.",
        "Latency is measured in the load process from sending the request to reading the "
        "whole answer, under that concurrency (so p50 is mostly queueing: about "
        "concurrency / rate).",
        "CPU columns: server = the server process and its uvicorn workers, per message; "
        "PostgreSQL = the backends connected to the benchmark's database, per message; load "
        "process, and other processes (other agents' work, PostgreSQL's WAL writer and "
        "checkpointer, the OS) in % of one core over the run. 2 cores = 200%.",
        "On SQLite `hilos serve` runs the outbox worker in-process (its cost is included); on "
        "PostgreSQL it does not (`hilos worker` would relay the outbox), so that cost is not.",
        "Each PostgreSQL run starts on a freshly created database; SQLite on a fresh file.",
        "PostgreSQL sessions opened: connections the server opened during the measurement. "
        "Above 0, its pool overflowed: SQLAlchemy closes overflow connections when they come "
        "back, so every burst above the pool size forks new PostgreSQL backends, each starting "
        "with an empty prepared-statement cache (and their CPU escapes the PostgreSQL column).",
        "The machine's 2 cores are shared by the load process, the server and PostgreSQL, and "
        "other agents may have been running tests at the same time: figures are noisy; "
        "compare rows of one run rather than runs of different days.",
        f"Target: ≥ {TARGET_POSTGRES_RATE:,.0f} msg/s on PostgreSQL on 2 cores: "
        + (
            "not measured in this run."
            if best_postgres is None
            else f"{'met' if best_postgres >= TARGET_POSTGRES_RATE else 'NOT met'} "
            f"(best {best_postgres:,.0f} msg/s)."
        ),
    ]
    facts = machine_facts()
    path = write_results(
        "ingest",
        title="Inbound messages (benchmarks/ingest.py)",
        columns=COLUMNS,
        rows=rows,
        figures=figures,
        notes=notes,
        facts=facts,
    )
    console.print(f"written {path} and RESULTS.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages per run")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted messages first")
    parser.add_argument("--senders", type=int, default=2000, help="distinct senders")
    parser.add_argument("--redeliveries", type=float, default=0.05, help="share of redeliveries")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-clock cap per run")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--workers", default="1,2", help="HTTP processes on PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not 0 <= args.redeliveries < 1 or args.messages < 1 or args.concurrency < 1:
        parser.error("need 0 <= --redeliveries < 1, --messages >= 1, --concurrency >= 1")
    return args


if __name__ == "__main__":
    run_async(main(parse_args()))

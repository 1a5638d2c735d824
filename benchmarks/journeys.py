"""Journeys on PostgreSQL: steps processed per second with 100 000 customers in flight.

A tenant gets ``--customers`` customers (half with the trait ``plan: premium``) and one active
journey, seeded straight in SQL, with one run per customer due now — every customer in flight at
once. The journey, per customer:

    is-premium?  (a condition on a trait)
      then → tag        (set_trait: segmento = vip)
    wait 1 s     (two steps: the run goes to sleep, then wakes and goes on)
    mark         (set_trait: recordado = true)
    end

so 4.5 steps per customer on average, each written to the step log, each trait change to the
customer's row, in transactions of 500 runs. ``--workers`` separate processes (each its own
event loop and connection pool) call ``hilos.engagement.journeys.run_due`` — the worker stage
itself — until every run is done or ``--max-seconds`` pass; steps/s = steps taken (summed over
the processes, read back from the step log) / wall time.

Sends are not part of the mix: a send's cost is the sending rules and the message outbox, which
the ingest and webhook benchmarks measure; this one measures the journey engine.

Target (the project's issue): ≥ 2 000 steps/s on PostgreSQL on 2 cores.

    .venv/bin/python benchmarks/journeys.py
    .venv/bin/python benchmarks/journeys.py --customers 20000 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from _common import (
    DEFAULT_POSTGRES_URL,
    Column,
    asyncpg_dsn,
    console,
    create_tenant,
    hilos_env,
    machine_facts,
    postgres_reachable,
    print_table,
    recreate_postgres_database,
    run_async,
    run_hilos,
    write_results,
)

TARGET_STEPS_PER_S = 2000.0
DEFINITION = {
    "start": "is-premium",
    "steps": [
        {"id": "is-premium", "type": "condition",
         "if": {"trait": "plan", "op": "eq", "value": "premium"},
         "then": "tag", "else": "wait"},
        {"id": "tag", "type": "set_trait", "key": "segmento", "value": "vip", "next": "wait"},
        {"id": "wait", "type": "wait", "seconds": 1, "next": "mark"},
        {"id": "mark", "type": "set_trait", "key": "recordado", "value": True, "next": None},
    ],
}  # fmt: skip
STEPS_PER_CUSTOMER = 4.5

COLUMNS = [
    Column("workers", "worker processes", 0),
    Column("customers", "customers in flight", 0),
    Column("steps", "steps", 0),
    Column("seconds", "s", 2),
    Column("rate", "steps/s", 0),
    Column("done", "runs done", 0),
    Column("failed", "runs failed", 0),
    Column("check", "check"),
]


async def seed(dsn: str, *, tenant_id: str, customers: int) -> str:
    """Customers, the journey and one due run per customer; returns the journey id."""
    connection = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await connection.execute(
            """
            INSERT INTO customers (id, tenant_id, name, search_name, language, traits,
                                   created_at, updated_at)
            SELECT 'c' || lpad(n::text, 31, '0'), $1, 'Cliente ' || n, 'cliente ' || n, 'es',
                   CASE WHEN n % 2 = 0 THEN '{"plan": "premium"}'::json ELSE '{}'::json END,
                   $2, $2
            FROM generate_series(1, $3) AS n
            """,
            tenant_id,
            now,
            customers,
        )
        journey_id = "j" + "0" * 31
        await connection.execute(
            """
            INSERT INTO journeys (id, tenant_id, name, status, trigger, definition, exit_on,
                                  reentry, created_at, updated_at)
            VALUES ($1, $2, 'benchmark', 'active', '{"event": "bench.started"}', $3::json,
                    '[]'::json, 'always', $4, $4)
            """,
            journey_id,
            tenant_id,
            json.dumps(DEFINITION),
            now,
        )
        await connection.execute(
            """
            INSERT INTO journey_runs (id, tenant_id, journey_id, customer_id, trigger_event_id,
                                      status, step_id, next_at, claimed_until, context,
                                      steps_taken, exit_reason, entered_at, updated_at, ended_at)
            SELECT 'r' || lpad(n::text, 31, '0'), $1, $2, 'c' || lpad(n::text, 31, '0'),
                   'e' || lpad(n::text, 31, '0'), 'active', 'is-premium', $3, NULL,
                   '{}'::json, 0, NULL, $3, $3, NULL
            FROM generate_series(1, $4) AS n
            """,
            tenant_id,
            journey_id,
            now - timedelta(seconds=1),
            customers,
        )
        await connection.execute("VACUUM (ANALYZE) customers, journey_runs")
        return journey_id
    finally:
        await connection.close()


def _work(database_url: str, deadline: float, results: Any) -> None:
    """One worker process: the journeys stage in a loop until nothing is left or time is up."""

    async def main() -> int:
        from hilos.core.db import make_engine, make_sessionmaker
        from hilos.engagement import journeys

        engine = make_engine(database_url)
        sessionmaker = make_sessionmaker(engine)
        steps = 0
        idle_rounds = 0
        try:
            while time.monotonic() < deadline:
                taken = await journeys.run_due(sessionmaker)
                steps += taken
                if taken:
                    idle_rounds = 0
                    continue
                idle_rounds += 1
                # Nothing due: either everything is done or the 1 s waits are still asleep.
                if idle_rounds > 40:
                    break
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()
        return steps

    results.put(asyncio.run(main()))


async def counts(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT status, count(*) FROM journey_runs GROUP BY status")
        logged = await connection.fetchval("SELECT count(*) FROM journey_step_log")
        found = {row["status"]: int(row["count"]) for row in rows}
        found["logged"] = int(logged)
        found["premium_tagged"] = int(
            await connection.fetchval(
                "SELECT count(*) FROM customers WHERE traits->>'segmento' = 'vip'"
            )
        )
        found["marked"] = int(
            await connection.fetchval(
                "SELECT count(*) FROM customers WHERE traits->>'recordado' = 'true'"
            )
        )
        return found
    finally:
        await connection.close()


async def main(args: argparse.Namespace) -> None:
    if not await postgres_reachable(args.postgres_url):
        raise SystemExit(f"PostgreSQL is not reachable at {args.postgres_url}")
    rows: list[dict[str, Any]] = []
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        env = hilos_env(args.postgres_url)
        await recreate_postgres_database(args.postgres_url)
        run_hilos(["migrate"], env=env)
        tenant_id, _key = create_tenant(env)
        dsn = asyncpg_dsn(args.postgres_url)
        console.print(f"{workers} worker(s): seeding {args.customers:,} customers in flight…")
        await seed(dsn, tenant_id=tenant_id, customers=args.customers)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        started = time.monotonic()
        deadline = started + args.max_seconds
        processes = [
            context.Process(target=_work, args=(args.postgres_url, deadline, results))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        reported = [results.get() for _ in processes]
        for process in processes:
            process.join()
        elapsed = time.monotonic() - started
        found = await counts(dsn)
        steps = found["logged"]
        expected_tags = args.customers // 2
        sound = (
            found.get("failed", 0) == 0
            and steps == sum(reported)
            and found["premium_tagged"] == min(expected_tags, found["premium_tagged"])
            and (found.get("done", 0) < args.customers or found["marked"] == args.customers)
        )
        rows.append(
            {
                "workers": workers,
                "customers": args.customers,
                "steps": steps,
                "seconds": elapsed,
                "rate": steps / elapsed if elapsed else None,
                "done": found.get("done", 0),
                "failed": found.get("failed", 0),
                "check": "ok" if sound else "FAILED",
            }
        )
    print_table("Journey steps on PostgreSQL", COLUMNS, rows)
    best = max((row["rate"] for row in rows), default=None)
    met = best is not None and best >= TARGET_STEPS_PER_S and all(r["check"] == "ok" for r in rows)
    figures: dict[str, Any] = {"target_steps_per_s": TARGET_STEPS_PER_S}
    for row in rows:
        figures[f"steps_per_s_w{row['workers']}"] = round(row["rate"] or 0, 1)
    figures["target_met"] = met
    notes = [
        f"{args.customers:,} customers each with a run of one active journey due at once "
        f"(condition on a trait, set_trait for half, a 1 s wait, set_trait; "
        f"{STEPS_PER_CUSTOMER} steps per customer on average), seeded in SQL.",
        "Worker processes call hilos.engagement.journeys.run_due (the worker's stage) in a "
        "loop: runs are claimed 500 at a time with FOR UPDATE SKIP LOCKED and a lease, walked "
        "in one transaction per batch; every step is a row of journey_step_log and every trait "
        "change an UPDATE of the customer.",
        "Steps are counted from the step log after the run; the check compares them with what "
        "the processes reported, and the traits with what the journey sets. The wall time "
        "includes the 1 s waits' sleep at the end of a small run.",
        "The machine's 2 cores are shared by the worker processes and PostgreSQL.",
        f"Target: ≥ {TARGET_STEPS_PER_S:,.0f} steps/s: "
        + (
            "not measured."
            if best is None
            else f"{'met' if met else 'NOT met'} (best {best:,.0f}/s)."
        ),
    ]
    path = write_results(
        "journeys",
        title="Journeys: steps per second (benchmarks/journeys.py)",
        columns=COLUMNS,
        rows=rows,
        figures=figures,
        notes=notes,
        facts=machine_facts(),
    )
    console.print(notes[-1])
    console.print(f"written {path} and RESULTS.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers in flight")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="wall-clock cap")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    if args.customers < 1:
        parser.error("--customers must be positive")
    return args


if __name__ == "__main__":
    run_async(main(parse_args()))

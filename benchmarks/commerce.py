"""Commerce on PostgreSQL: reservations per second on hot SKUs, and availability latency.

One tenant's catalog is seeded straight in SQL (``INSERT ... SELECT generate_series``):
``--skus`` variants (each its own product), ``--locations`` locations (a fifth warehouses, the
rest stores with coordinates across Spain, pickup on), and stock levels so each SKU is stocked
in 5 to 35 locations (20 on average: 1 000 000 rows for 50 000 SKUs), then ``VACUUM (ANALYZE)``
and ``CHECKPOINT``. A fresh ``hilos serve`` process is started per ``--workers`` count and this
process is the load generator.

(a) **Reservations.** ``--hot-skus`` SKUs each hold ``--hot-stock`` units at one warehouse;
``--clients`` concurrent keep-alive connections send ``POST /v1/reservations`` for one unit of a
random hot SKU until ``--reservations`` calls are answered, so the last calls find SKUs sold out
(``409 out_of_stock``). Afterwards SQL checks that nothing was oversold: ``reserved <= on_hand``
on every level, the 201s equal the units reserved and the held reservations, and each hot SKU
reserved exactly ``min(calls for it, stock)`` (no oversell, and no false ``out_of_stock``).

(b) **Availability.** ``GET /v1/availability?sku=…&channel=web`` for random SKUs among all of
them, half with the customer's ``lat``/``lon`` (distances and nearest pickup stores), at each
``--concurrency`` level.

Targets (the project's issue): at least 1 000 reservations/s with 50 clients on 100 hot SKUs on
2 cores with zero oversell; availability p99 ≤ 10 ms with 500 locations and 50 000 SKUs.

    .venv/bin/python benchmarks/commerce.py
    .venv/bin/python benchmarks/commerce.py --skus 5000 --reservations 5000 --workers 1
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
from _common import (
    DEFAULT_POSTGRES_URL,
    Call,
    Column,
    CpuMeter,
    CpuUse,
    LoadResult,
    Server,
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
    run_load,
    write_results,
)

RESERVE_PATH = "/v1/reservations"
AVAILABILITY_PATH = "/v1/availability"
TARGET_RESERVATIONS_PER_S = 1000.0
TARGET_AVAILABILITY_P99_MS = 10.0
HOT_LOCATION = "W0001"
# Spain's mainland, roughly: where the stores are and where the customers ask from.
LAT_RANGE = (36.2, 43.5)
LON_RANGE = (-8.8, 3.2)

# --- seeding --------------------------------------------------------------------------------

# Ids follow ``hilos.core.ids`` (12 hex of milliseconds, then 20 hex); each table's rows get a
# counter of their own in the last 20 hex, with a different first digit per table.
_SEED_PRODUCTS = """
INSERT INTO products (id, tenant_id, name, description, images, created_at, updated_at)
SELECT $1 || '1' || lpad(to_hex(n), 19, '0'), $2, 'Producto ' || n, NULL, '[]'::json, $3, $3
FROM generate_series($4::bigint, $5::bigint) AS n
"""
_SEED_VARIANTS = """
INSERT INTO variants (id, tenant_id, product_id, sku, gtin, name, attributes, created_at)
SELECT $1 || '2' || lpad(to_hex(n), 19, '0'), $2, $1 || '1' || lpad(to_hex(n), 19, '0'),
       'SKU-' || lpad(n::text, 6, '0'), NULL, 'Producto ' || n || ' talla ' || (36 + n % 12),
       json_build_object('size', (36 + n % 12)::text), $3
FROM generate_series($4::bigint, $5::bigint) AS n
"""
# Locations 0..total-1: the first fifth are warehouses (no coordinates for every other one),
# the rest stores with coordinates spread over the mainland, all offering pickup.
_SEED_LOCATIONS = """
INSERT INTO locations (id, tenant_id, code, name, kind, address, lat, lon, opening_hours,
                       pickup, ship_from_store, created_at)
SELECT $1 || '3' || lpad(to_hex(i), 19, '0'), $2,
       CASE WHEN i < $4 THEN 'W' ELSE 'S' END || lpad((i + 1)::text, 4, '0'),
       CASE WHEN i < $4 THEN 'Almacén ' ELSE 'Tienda ' END || (i + 1),
       CASE WHEN i < $4 THEN 'warehouse' ELSE 'store' END,
       NULL,
       CASE WHEN i < $4 AND i % 2 = 1 THEN NULL ELSE $6 + $7 * ((i * 7919) % 1000) / 1000.0 END,
       CASE WHEN i < $4 AND i % 2 = 1 THEN NULL ELSE $8 + $9 * ((i * 104729) % 1000) / 1000.0 END,
       '{}'::json, i >= $4, i >= $4 AND i % 3 = 0, $3
FROM generate_series(0, $5::bigint - 1) AS i
"""
# SKU n is stocked in 5 + (37 n mod 31) locations (5..35, 20 on average), at location indices
# (13 n + 14 k) mod L for k = 0.., distinct as long as 14 * 35 < L; some levels are zero or
# have a safety stock, as real ones do.
_SEED_LEVELS = """
INSERT INTO stock_levels (tenant_id, variant_id, location_id, on_hand, reserved, safety_stock,
                          updated_at)
SELECT $2, $1 || '2' || lpad(to_hex(n), 19, '0'),
       $1 || '3' || lpad(to_hex((13 * n + 14 * k) % $6), 19, '0'),
       (n * 31 + k * 17) % 40, 0, CASE WHEN k % 4 = 0 THEN 2 ELSE 0 END, $3
FROM generate_series($4::bigint, $5::bigint) AS n,
     LATERAL generate_series(0, 4 + (37 * n) % 31) AS k
"""


def sku_code(n: int) -> str:
    return f"SKU-{n:06d}"


async def seed_catalog(
    dsn: str, *, tenant_id: str, skus: int, locations: int, chunk: int, started_at: datetime
) -> tuple[float, int]:
    """Products, variants, locations and stock levels; (seconds it took, level rows)."""
    prefix = f"{int(started_at.timestamp() * 1000):012x}"
    warehouses = max(1, locations // 5)
    began = time.perf_counter()
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        await connection.execute(
            _SEED_LOCATIONS,
            prefix,
            tenant_id,
            started_at,
            warehouses,
            locations,
            LAT_RANGE[0],
            LAT_RANGE[1] - LAT_RANGE[0],
            LON_RANGE[0],
            LON_RANGE[1] - LON_RANGE[0],
        )
        for low in range(1, skus + 1, chunk):
            high = min(low + chunk - 1, skus)
            async with connection.transaction():
                for statement in (_SEED_PRODUCTS, _SEED_VARIANTS):
                    await connection.execute(
                        statement, prefix, tenant_id, started_at, low, high, timeout=600
                    )
                await connection.execute(
                    _SEED_LEVELS, prefix, tenant_id, started_at, low, high, locations, timeout=600
                )
            console.print(f"  seeded SKUs {low:,}–{high:,}")
        for table in ("products", "variants", "locations", "stock_levels"):
            await connection.execute(f"VACUUM (ANALYZE) {table}", timeout=600)
        await connection.execute("CHECKPOINT", timeout=600)
        rows = int(
            await connection.fetchval(
                "SELECT count(*) FROM stock_levels WHERE tenant_id = $1", tenant_id
            )
        )
    finally:
        await connection.close()
    return time.perf_counter() - began, rows


async def reset_hot_stock(dsn: str, *, tenant_id: str, hot_skus: int, stock: int) -> None:
    """Every hot SKU holds exactly ``stock`` units at the hot warehouse, none reserved, and no
    reservation exists (run before each measured run, after the warm-up)."""
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        async with connection.transaction():
            await connection.execute("DELETE FROM reservations WHERE tenant_id = $1", tenant_id)
            await connection.execute(
                """
                INSERT INTO stock_levels (tenant_id, variant_id, location_id, on_hand, reserved,
                                          safety_stock, updated_at)
                SELECT v.tenant_id, v.id, l.id, $4, 0, 0, now()
                FROM variants v, locations l
                WHERE v.tenant_id = $1 AND v.sku = ANY($2::text[])
                  AND l.tenant_id = $1 AND l.code = $3
                ON CONFLICT (tenant_id, variant_id, location_id)
                DO UPDATE SET on_hand = $4, reserved = 0, safety_stock = 0
                """,
                tenant_id,
                [sku_code(n) for n in range(1, hot_skus + 1)],
                HOT_LOCATION,
                stock,
            )
        await connection.execute("VACUUM (ANALYZE) stock_levels", timeout=600)
    finally:
        await connection.close()


async def check_oversell(
    dsn: str,
    *,
    tenant_id: str,
    hot_skus: int,
    stock: int,
    calls_per_sku: Mapping[str, int],
    created: int,
    complete: bool,
) -> dict[str, Any]:
    """What SQL says after a reservation run; ``ok`` is False on any oversell or mismatch."""
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        over = int(
            await connection.fetchval(
                "SELECT count(*) FROM stock_levels WHERE tenant_id = $1 "
                "AND (reserved > on_hand OR reserved < 0 OR on_hand < 0)",
                tenant_id,
            )
        )
        levels = await connection.fetch(
            """
            SELECT v.sku, s.on_hand, s.reserved
            FROM stock_levels s JOIN variants v ON v.id = s.variant_id
            JOIN locations l ON l.id = s.location_id
            WHERE s.tenant_id = $1 AND l.code = $2 AND v.sku = ANY($3::text[])
            """,
            tenant_id,
            HOT_LOCATION,
            [sku_code(n) for n in range(1, hot_skus + 1)],
        )
        held = int(
            await connection.fetchval(
                "SELECT coalesce(sum(quantity), 0) FROM reservations "
                "WHERE tenant_id = $1 AND status = 'held'",
                tenant_id,
            )
        )
    finally:
        await connection.close()
    reserved = sum(int(row["reserved"]) for row in levels)
    # Each hot SKU must have reserved exactly min(calls for it, stock): more is an oversell,
    # fewer a false out_of_stock. Only exact when every planned call was answered.
    mismatched = [
        row["sku"]
        for row in levels
        if int(row["reserved"]) != min(calls_per_sku.get(row["sku"], 0), stock)
    ]
    sold_out = sum(1 for row in levels if int(row["reserved"]) >= int(row["on_hand"]))
    ok = (
        over == 0
        and len(levels) == hot_skus
        and reserved == created == held
        and (not complete or not mismatched)
    )
    return {
        "ok": ok,
        "rows_over": over,
        "reserved_units": reserved,
        "held_units": held,
        "created": created,
        "sold_out_skus": sold_out,
        "per_sku_mismatches": mismatched[:10] if complete else None,
    }


# --- the calls ------------------------------------------------------------------------------


def plan_reservations(count: int, *, hot_skus: int, seed: int) -> tuple[list[Call], Counter[str]]:
    rng = random.Random(seed)
    calls: list[Call] = []
    per_sku: Counter[str] = Counter()
    for _ in range(count):
        sku = sku_code(rng.randint(1, hot_skus))
        per_sku[sku] += 1
        body = {"sku": sku, "location": HOT_LOCATION, "quantity": 1, "ttl_seconds": 3600}
        calls.append(Call(RESERVE_PATH, json.dumps(body).encode(), tag="reserve"))
    return calls, per_sku


def plan_availability(count: int, *, skus: int, seed: int) -> list[Call]:
    """GET paths (in ``Call.path``; no body): half with the customer's position."""
    rng = random.Random(seed)
    calls = []
    for _ in range(count):
        query: dict[str, Any] = {"sku": sku_code(rng.randint(1, skus)), "channel": "web"}
        tag = "plain"
        if rng.random() < 0.5:
            query["lat"] = round(rng.uniform(*LAT_RANGE), 5)
            query["lon"] = round(rng.uniform(*LON_RANGE), 5)
            tag = "located"
        calls.append(Call(f"{AVAILABILITY_PATH}?{urlencode(query)}", b"", tag=tag))
    return calls


def count_empty_answers(call: Call, status: int, body: bytes) -> str | None:
    """An availability answer without any location (a SKU stocked nowhere) is counted."""
    return None if json.loads(body).get("locations") else "no locations"


# --- runs -----------------------------------------------------------------------------------

COLUMNS = [
    Column("part", "part"),
    Column("workers", "HTTP processes", 0),
    Column("concurrency", "concurrency", 0),
    Column("calls", "calls", 0),
    Column("seconds", "s", 2),
    Column("rate", "calls/s", 0),
    Column("created", "201", 0),
    Column("out_of_stock", "409 out_of_stock", 0),
    Column("reserved_rate", "reservations/s", 0),
    Column("p50_ms", "p50 ms", 2),
    Column("p99_ms", "p99 ms", 2),
    Column("max_ms", "max ms", 1),
    Column("errors", "other errors", 0),
    Column("oversell", "oversell check"),
    Column("server_cpu_ms", "server CPU ms/call", 2),
    Column("db_cpu_ms", "PostgreSQL CPU ms/call", 2),
    Column("load_cpu_pct", "load process CPU %", 0),
    Column("other_cpu_pct", "other processes CPU %", 0),
    Column("db_sessions", "PostgreSQL sessions opened", 0),
]


def row_for(
    *, part: str, workers: int, concurrency: int, result: LoadResult, cpu: CpuUse
) -> dict[str, Any]:
    answered = max(len(result.latencies), 1)
    elapsed = max(result.elapsed, 1e-9)
    return {
        "part": part,
        "workers": workers,
        "concurrency": concurrency,
        "calls": len(result.latencies),
        "seconds": round(result.elapsed, 2),
        "rate": round(len(result.latencies) / elapsed, 1),
        "p50_ms": round(result.percentile_ms(0.50), 2),
        "p99_ms": round(result.percentile_ms(0.99), 2),
        "max_ms": round(result.percentile_ms(1.0), 1),
        "server_cpu_ms": round(cpu.server * 1000 / answered, 3),
        "db_cpu_ms": None if cpu.database is None else round(cpu.database * 1000 / answered, 3),
        "load_cpu_pct": round(100 * cpu.load / elapsed, 0),
        "other_cpu_pct": round(100 * cpu.other / elapsed, 0),
        "db_sessions": cpu.database_sessions,
        "stopped_by_clock": result.stopped_by_clock,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "error_samples": result.error_samples,
        "slowest": result.slowest(),
    }


async def measure_reservations(
    server: Server,
    *,
    workers: int,
    tenant_id: str,
    headers: dict[str, str],
    dsn: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    # Warm up on the hot SKUs themselves (every pool connection prepares the statements),
    # then put their stock back.
    warmup, _ = plan_reservations(args.warmup, hot_skus=args.hot_skus, seed=args.seed + 100)
    await run_load(
        server.port,
        warmup,
        concurrency=args.clients,
        max_seconds=args.max_seconds,
        headers=headers,
    )
    await reset_hot_stock(dsn, tenant_id=tenant_id, hot_skus=args.hot_skus, stock=args.hot_stock)
    calls, per_sku = plan_reservations(
        args.reservations, hot_skus=args.hot_skus, seed=args.seed + workers
    )
    meter = await CpuMeter.start(server.pid, database_url=args.postgres_url)
    result = await run_load(
        server.port,
        calls,
        concurrency=args.clients,
        max_seconds=args.max_seconds,
        headers=headers,
    )
    cpu = await meter.stop()
    created = result.statuses[201]
    out_of_stock = result.statuses[409]
    complete = not result.stopped_by_clock and len(result.latencies) == len(calls)
    check = await check_oversell(
        dsn,
        tenant_id=tenant_id,
        hot_skus=args.hot_skus,
        stock=args.hot_stock,
        calls_per_sku=per_sku,
        created=created,
        complete=complete and result.errors == out_of_stock,
    )
    row = row_for(
        part="reservations", workers=workers, concurrency=args.clients, result=result, cpu=cpu
    )
    row.update(
        created=created,
        out_of_stock=out_of_stock,
        reserved_rate=round(created / max(result.elapsed, 1e-9), 1),
        errors=result.errors - out_of_stock,
        oversell="none" if check["ok"] else "FAILED",
        check=check,
    )
    return row


async def measure_availability(
    server: Server, *, workers: int, headers: dict[str, str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    await run_load(
        server.port,
        plan_availability(args.warmup, skus=args.skus, seed=args.seed + 200),
        concurrency=max(levels),
        max_seconds=args.max_seconds,
        headers=headers,
        method="GET",
    )
    rows = []
    for index, concurrency in enumerate(levels):
        calls = plan_availability(args.lookups, skus=args.skus, seed=args.seed + 300 + index)
        meter = await CpuMeter.start(server.pid, database_url=args.postgres_url)
        result = await run_load(
            server.port,
            calls,
            concurrency=concurrency,
            max_seconds=args.max_seconds,
            headers=headers,
            inspect=count_empty_answers,
            method="GET",
        )
        row = row_for(
            part="availability",
            workers=workers,
            concurrency=concurrency,
            result=result,
            cpu=await meter.stop(),
        )
        row.update(
            errors=result.errors,
            located_p99_ms=round(result.percentile_ms(0.99, tags=("located",)), 2),
            plain_p99_ms=round(result.percentile_ms(0.99, tags=("plain",)), 2),
            without_locations=result.tags["no locations"],
        )
        rows.append(row)
    return rows


async def main(args: argparse.Namespace) -> None:
    if not await postgres_reachable(args.postgres_url):
        raise SystemExit(f"PostgreSQL is not reachable at {args.postgres_url}")
    env = hilos_env(args.postgres_url)
    await recreate_postgres_database(args.postgres_url)
    run_hilos(["migrate"], env=env)
    tenant_id, api_key = create_tenant(env)
    headers = {"Authorization": f"Bearer {api_key}"}
    dsn = asyncpg_dsn(args.postgres_url)
    console.print(f"seeding {args.skus:,} SKUs over {args.locations} locations…")
    seed_seconds, level_rows = await seed_catalog(
        dsn,
        tenant_id=tenant_id,
        skus=args.skus,
        locations=args.locations,
        chunk=args.chunk,
        started_at=datetime.now(UTC) - timedelta(days=30),
    )
    console.print(f"  {level_rows:,} stock levels in {seed_seconds:.1f} s")
    await reset_hot_stock(dsn, tenant_id=tenant_id, hot_skus=args.hot_skus, stock=args.hot_stock)

    rows: list[dict[str, Any]] = []
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        label = f"hilos serve (PostgreSQL, {workers} worker{'s' if workers > 1 else ''})"
        # A pool as large as the clients, as a deployment expecting them would set it: a smaller
        # pool overflows, and every overflow connection forks a PostgreSQL backend.
        with Server.hilos(
            database_url=args.postgres_url,
            workers=workers,
            label=label,
            HILOS_DATABASE_POOL_SIZE=str(args.clients + 10),
        ) as server:
            console.print(f"{label}: reservations…")
            rows.append(
                await measure_reservations(
                    server,
                    workers=workers,
                    tenant_id=tenant_id,
                    headers=headers,
                    dsn=dsn,
                    args=args,
                )
            )
            console.print(f"{label}: availability…")
            rows += await measure_availability(server, workers=workers, headers=headers, args=args)

    print_table("Commerce through HTTP (PostgreSQL)", COLUMNS, rows)
    for row in rows:
        if row["errors"] or row.get("without_locations") or row.get("oversell") == "FAILED":
            console.print(
                f"[red]{row['part']} ({row['workers']}, {row['concurrency']}): "
                f"{row['errors']} errors, e.g. {row['error_samples']}; "
                f"{row.get('check') or ''}[/red]"
            )

    reservation_rows = [r for r in rows if r["part"] == "reservations"]
    availability_rows = [r for r in rows if r["part"] == "availability"]
    best_rate = max((r["reserved_rate"] for r in reservation_rows), default=None)
    no_oversell = all(r["oversell"] == "none" for r in reservation_rows)
    # The target is the latency of one availability question at this catalog size: the
    # service time, measured at concurrency 1. Higher concurrency on 2 shared cores adds
    # queueing behind the other calls (and the load generator); those rows are reported too.
    worst_p99 = max((r["p99_ms"] for r in availability_rows if r["concurrency"] == 1), default=None)
    figures: dict[str, Any] = {
        "target_reservations_per_s": TARGET_RESERVATIONS_PER_S,
        "target_availability_p99_ms": TARGET_AVAILABILITY_P99_MS,
        "stock_levels": level_rows,
        "seed_seconds": round(seed_seconds, 1),
    }
    for row in reservation_rows:
        key = f"reservations_w{row['workers']}"
        figures[f"{key}_per_s"] = row["reserved_rate"]
        figures[f"{key}_calls_per_s"] = row["rate"]
        figures[f"{key}_p99_ms"] = row["p99_ms"]
        figures[f"{key}_oversell_free"] = row["oversell"] == "none"
    for row in availability_rows:
        key = f"availability_w{row['workers']}_c{row['concurrency']}"
        figures[f"{key}_p50_ms"] = row["p50_ms"]
        figures[f"{key}_p99_ms"] = row["p99_ms"]
    rate_met = None if best_rate is None else best_rate >= TARGET_RESERVATIONS_PER_S
    p99_met = None if worst_p99 is None else worst_p99 <= TARGET_AVAILABILITY_P99_MS
    figures["reservations_target_met"] = rate_met and no_oversell
    figures["availability_target_met"] = p99_met
    per_sku_calls = args.reservations / args.hot_skus
    notes = [
        f"Catalog seeded in SQL: {args.skus:,} SKUs (one product each), {args.locations} "
        f"locations ({max(1, args.locations // 5)} warehouses, half of them without "
        "coordinates; the rest stores with coordinates across mainland Spain, all with "
        f"pickup), {level_rows:,} stock levels (each SKU in 5–35 locations, 20 on average; "
        "some at zero, a quarter with a safety stock), then VACUUM (ANALYZE) and CHECKPOINT, "
        f"in {seed_seconds:.0f} s. Levels are seeded without ledger rows (neither path reads "
        "the ledger).",
        f"Reservations: {args.hot_skus} hot SKUs with {args.hot_stock} units each at "
        f"{HOT_LOCATION} ({args.hot_skus * args.hot_stock:,} units); {args.reservations:,} "
        f"calls for 1 unit of a random hot SKU (about {per_sku_calls:.0f} per SKU) over "
        f"{args.clients} keep-alive connections after {args.warmup} warm-up calls (then the "
        "stock is reset), so SKUs sell out towards the end and the rest answer 409 "
        "out_of_stock. reservations/s = 201s / wall time of the run; calls/s counts 409s too. "
        f"Each server process keeps {args.clients + 10} PostgreSQL connections "
        "(HILOS_DATABASE_POOL_SIZE), as many as the clients: with the default 20 the pool "
        "overflowed and every overflow connection forked a backend (about 650 reservations/s "
        "then).",
        "Oversell check (SQL, after each run): no level with reserved > on_hand; units "
        "reserved on the hot SKUs = the 201s = units of held reservations; each hot SKU "
        "reserved exactly min(calls for it, its stock) (more would be an oversell, fewer a "
        "false out_of_stock).",
        f"Availability: {args.lookups:,} calls of GET /v1/availability?sku=…&channel=web per "
        "row for random SKUs among all, half with the customer's lat/lon (distances and the "
        f"nearest pickup stores), after {args.warmup} warm-up calls. Concurrency 1 is the "
        "service time; higher levels include queueing. The JSON file has the p99 with and "
        "without a position.",
        "Latency is measured in the load process, from sending the request to reading the "
        "whole answer. Each reservation is a write whose commit waits for the disk flush.",
        "CPU columns: server = the `hilos serve` process tree, per call; PostgreSQL = the "
        "backends connected to the benchmark's database, per call; load process, and other "
        "processes (other agents' work, PostgreSQL's WAL writer and checkpointer, the OS) in "
        "% of one core over the row. 2 cores = 200%.",
        "PostgreSQL sessions opened: connections the server opened during the measurement. "
        "Above 0, its pool (20 + 10 overflow per process) overflowed under the 50 clients: "
        "SQLAlchemy closes overflow connections when they come back, so every burst forks new "
        "PostgreSQL backends (their CPU escapes the PostgreSQL column).",
        "The machine's 2 cores are shared by the load process, the server and PostgreSQL, and "
        "other agents may have been running tests at the same time: figures are noisy.",
        f"Target: ≥ {TARGET_RESERVATIONS_PER_S:,.0f} reservations/s with {args.clients} "
        "clients, zero oversell: "
        + (
            "not measured."
            if best_rate is None
            else f"{'met' if rate_met else 'NOT met'} (best {best_rate:,.0f}/s), "
            f"oversell {'none' if no_oversell else 'FOUND'}."
        ),
        f"Target: availability p99 ≤ {TARGET_AVAILABILITY_P99_MS:.0f} ms with "
        f"{args.locations} locations and {args.skus:,} SKUs: "
        + (
            "not measured."
            if worst_p99 is None
            else f"{'met' if p99_met else 'NOT met'} (worst p99 at concurrency 1: "
            f"{worst_p99:.1f} ms; the rows at higher concurrency add queueing)."
        ),
    ]
    path = write_results(
        "commerce",
        title="Commerce: reservations and availability (benchmarks/commerce.py)",
        columns=COLUMNS,
        rows=rows,
        figures=figures,
        notes=notes,
        facts=machine_facts(),
    )
    console.print(notes[-2])
    console.print(notes[-1])
    console.print(f"written {path} and RESULTS.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--skus", type=int, default=50_000, help="SKUs in the catalog")
    parser.add_argument("--locations", type=int, default=500, help="warehouses and stores")
    parser.add_argument("--hot-skus", type=int, default=100, help="SKUs the reservations hit")
    parser.add_argument("--hot-stock", type=int, default=200, help="units of each hot SKU")
    parser.add_argument("--reservations", type=int, default=22_000, help="reservation calls")
    parser.add_argument("--clients", type=int, default=50, help="concurrent reserving clients")
    parser.add_argument("--lookups", type=int, default=2000, help="availability calls per row")
    parser.add_argument("--concurrency", default="1,8", help="availability connection counts")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted calls first")
    parser.add_argument("--workers", default="1,2", help="HTTP processes to measure")
    parser.add_argument("--chunk", type=int, default=10_000, help="SKUs per seeding step")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-clock cap per row")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if min(args.skus, args.hot_skus, args.hot_stock, args.reservations, args.clients) < 1:
        parser.error("counts must be positive")
    if args.hot_skus > args.skus:
        parser.error("--hot-skus cannot exceed --skus")
    if args.locations <= 14 * 35:
        parser.error("--locations must be more than 490 (each SKU spreads over 14 * 35 slots)")
    return args


if __name__ == "__main__":
    run_async(main(parse_args()))

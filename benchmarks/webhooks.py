"""Signed WhatsApp Cloud API webhooks per second through HTTP, against a bare FastAPI endpoint.

Each run starts a server in its own process (``hilos serve`` on a fresh SQLite file, or on a
freshly created PostgreSQL database with 1 and then 2 HTTP processes), creates a WhatsApp
channel with an app secret, and this process sends Meta's webhook deliveries to
``POST /webhooks/whatsapp/{channel_id}`` over a bounded number of keep-alive connections, each
signed as Meta signs them (``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>``). So
every delivery goes the whole way: channel lookup, signature check, parsing Meta's format,
normalising the sender, storing the message in its own transaction. The same deliveries go to a
bare FastAPI app (``bare_app`` below: it reads the raw body, checks the same HMAC, parses the
JSON and answers a constant of the same shape) served by uvicorn the same way, so
``hilos / bare`` says how much of the framework's ceiling the webhook path keeps.

The mix: text messages from a pool of senders (``--senders``, so most messages continue an
existing conversation) and a share of redeliveries (``--redeliveries``: Meta retrying the same
body, same wamid, same signature), which must come back ``duplicate: true`` in ``messages[0]``.
``--statuses`` adds a share of status receipts (``delivered``) for wamids Hilos never sent,
which are kept but change no message (off by default: the target counts messages). Every run is
bounded by a delivery count (``--messages``) and a wall clock (``--max-seconds``).

Target (the project's issue): at least 800 signed WhatsApp deliveries/s on PostgreSQL on
2 cores.

    .venv/bin/python benchmarks/webhooks.py                   # SQLite, PostgreSQL 1 and 2 workers
    .venv/bin/python benchmarks/webhooks.py --skip-sqlite --messages 2000
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import hmac
import json
import random
import tempfile
import time
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
    header_lines,
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
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

WEBHOOK_PATH = "/webhooks/whatsapp/{channel_id}"
TARGET_POSTGRES_RATE = 800.0

# The channel's settings. Nothing is sent to the Graph API (nobody replies), so the base URL
# points at a closed loopback port rather than at Meta.
APP_SECRET = "bench-whatsapp-app-secret"
PHONE_NUMBER_ID = "106540352242922"
CHANNEL_CONFIG = {
    "phone_number_id": PHONE_NUMBER_ID,
    "access_token": "EAAG-bench-token",
    "app_secret": APP_SECRET,
    "verify_token": "bench-verify",
    "api_base_url": "http://127.0.0.1:9/v21.0",
}

# --- the bare reference app (served by uvicorn in its own process: ``webhooks:bare_app``) ---

_ZERO_ID = "0" * 32
bare_app = FastAPI()


@bare_app.post(WEBHOOK_PATH)
async def bare_webhook(channel_id: str, request: Request) -> Response:
    """What any webhook endpoint must do: read the raw body, check Meta's HMAC, parse it."""
    body = await request.body()
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    given = request.headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        return JSONResponse(status_code=401, content={"error": {"code": "bad_signature"}})
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    messages = [
        {
            "external_id": message["id"],
            "message_id": _ZERO_ID,
            "conversation_id": _ZERO_ID,
            "customer_id": _ZERO_ID,
            "duplicate": False,
        }
        for message in value.get("messages") or []
    ]
    receipts = len(value.get("statuses") or [])
    return JSONResponse({"messages": messages, "receipts": receipts, "calls": 0, "ignored": []})


@bare_app.get("/readyz")
async def bare_ready() -> dict[str, str]:
    return {"status": "ready"}


# --- the plan -------------------------------------------------------------------------------


def wa_id(index: int) -> str:
    """A valid Spanish mobile as a WhatsApp id: 34 6 and eight digits."""
    return f"346{index:08d}"


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    """Meta's webhook body around one ``value`` (as in provider-samples/whatsapp-*.json)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34910111222",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def text_webhook(
    *, sender: str, name: str, wamid: str, text: str, timestamp: int
) -> dict[str, Any]:
    return _envelope(
        {
            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": wamid,
                    "timestamp": str(timestamp),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
    )


def status_webhook(*, wamid: str, recipient: str, timestamp: int) -> dict[str, Any]:
    return _envelope(
        {
            "statuses": [
                {
                    "id": wamid,
                    "status": "delivered",
                    "timestamp": str(timestamp),
                    "recipient_id": recipient,
                    "conversation": {
                        "id": "CONVERSATION_ID",
                        "origin": {"type": "service"},
                    },
                    "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
                }
            ]
        }
    )


def plan_deliveries(
    *,
    count: int,
    senders: int,
    redelivery_share: float,
    status_share: float,
    seed: int,
    timestamp: int,
    sender_offset: int = 0,
) -> list[dict[str, Any]]:
    """Webhook bodies to send, in order, each with a ``_tag``: ``first`` (a sender's first
    message: a new customer and conversation), ``continue``, ``redelivery`` (an earlier
    message's body, exactly) or ``status``.

    ``redelivery_share`` and ``status_share`` are shares of all deliveries. A redelivery
    repeats a message at least 64 places earlier, so its first delivery has almost
    always been answered already (Meta retries after seconds, not microseconds).
    """
    rng = random.Random(seed)
    planned: list[dict[str, Any]] = []
    messages: list[int] = []  # indices of the messages (not statuses) planned so far
    seen: set[int] = set()
    for index in range(count):
        roll = rng.random()
        if roll < status_share:
            recipient = wa_id(sender_offset + rng.randrange(senders))
            wamid = f"wamid.out.{seed}.{sender_offset}.{index}"
            body = status_webhook(wamid=wamid, recipient=recipient, timestamp=timestamp + index)
            planned.append({"_tag": "status", "body": body})
            continue
        eligible = bisect.bisect_left(messages, index - 63)  # messages at least 64 back
        if roll < status_share + redelivery_share and eligible:
            earlier = planned[messages[rng.randrange(eligible)]]
            planned.append({"_tag": "redelivery", "body": earlier["body"]})
            continue
        who = sender_offset + rng.randrange(senders)
        tag = "continue" if who in seen else "first"
        seen.add(who)
        body = text_webhook(
            sender=wa_id(who),
            name=f"Cliente {who}",
            wamid=f"wamid.{seed}.{sender_offset}.{index}",
            text=f"Hola, ¿tenéis la talla {index % 48}?",
            timestamp=timestamp + index,
        )
        messages.append(index)
        planned.append({"_tag": tag, "body": body})
    return planned


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def to_calls(planned: Sequence[dict[str, Any]], channel_id: str) -> list[Call]:
    """Meta's compact JSON, signed; a redelivery is the same bytes with the same signature."""
    path = WEBHOOK_PATH.format(channel_id=channel_id)
    calls = []
    for entry in planned:
        raw = json.dumps(entry["body"], separators=(",", ":")).encode()
        headers = header_lines({"X-Hub-Signature-256": signature(raw)})
        calls.append(Call(path, raw, tag=entry["_tag"], headers=headers))
    return calls


def inspect_answer(call: Call, status: int, body: bytes) -> str | None:
    answer = json.loads(body)
    if call.tag == "status":
        return "receipt" if answer.get("receipts") == 1 else "missing receipt"
    messages = answer.get("messages") or []
    if len(messages) != 1:
        return "missing message"
    if messages[0].get("duplicate"):
        return "duplicate" if call.tag == "redelivery" else "unexpected duplicate"
    return "missed redelivery" if call.tag == "redelivery" else None


ANOMALIES = ("unexpected duplicate", "missed redelivery", "missing message", "missing receipt")

# --- runs -----------------------------------------------------------------------------------


def row_for(
    *,
    target: str,
    workers: int,
    result: LoadResult,
    cpu: CpuUse,
    planned_redeliveries: int,
    planned_statuses: int,
) -> dict[str, Any]:
    completed = max(result.completed, 1)
    elapsed = max(result.elapsed, 1e-9)
    checked = target != "bare FastAPI"
    return {
        "target": target,
        "workers": workers,
        "deliveries": result.completed,
        "seconds": round(result.elapsed, 2),
        "rate": round(result.rate, 1),
        "p50_ms": round(result.percentile_ms(0.50), 2),
        "p99_ms": round(result.percentile_ms(0.99), 2),
        "errors": result.errors,
        "duplicates": (
            f"{result.tags['duplicate']}/{planned_redeliveries}"
            if checked and planned_redeliveries
            else None
        ),
        "receipts": (
            f"{result.tags['receipt']}/{planned_statuses}" if checked and planned_statuses else None
        ),
        "server_cpu_ms": round(cpu.server * 1000 / completed, 3),
        "db_cpu_ms": None if cpu.database is None else round(cpu.database * 1000 / completed, 3),
        "load_cpu_pct": round(100 * cpu.load / elapsed, 0),
        "other_cpu_pct": round(100 * cpu.other / elapsed, 0),
        "db_sessions": cpu.database_sessions,
        "stopped_by_clock": result.stopped_by_clock,
        # Per kind of delivery; under concurrency these include queueing like the totals.
        "by_kind": {
            tag: {
                "count": len(result.latencies_by_tag[tag]),
                "p50_ms": round(result.percentile_ms(0.50, tags=[tag]), 2),
                "p99_ms": round(result.percentile_ms(0.99, tags=[tag]), 2),
            }
            for tag in sorted(result.latencies_by_tag)
        },
        "anomalies": {k: v for k, v in result.tags.items() if k in ANOMALIES},
        "error_samples": result.error_samples,
        "slowest": result.slowest(),
    }


async def measure(
    server: Server,
    *,
    calls: Sequence[Call],
    warmup: Sequence[Call],
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
        headers={},
    )
    meter = await CpuMeter.start(server.pid, database_url=database_url)
    result = await run_load(
        server.port,
        calls,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        headers={},
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
    label = f"hilos serve ({target}, {workers} worker{'s' if workers > 1 else ''})"
    with Server.hilos(database_url=database_url, workers=workers, label=label) as server:
        status, channel = await call_json(
            server.port,
            "POST",
            "/v1/channels",
            {"kind": "whatsapp", "name": "WhatsApp", "config": CHANNEL_CONFIG},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        if status not in (200, 201):
            raise RuntimeError(f"creating the channel answered {status}: {channel}")
        return await measure(
            server,
            calls=to_calls(plan, channel["id"]),
            warmup=to_calls(warmup_plan, channel["id"]),
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
        "webhooks:bare_app", app_dir=BENCH_DIR, workers=workers, label="bare FastAPI"
    ) as server:
        return await measure(
            server,
            calls=to_calls(plan, "bare"),
            warmup=to_calls(warmup_plan, "bare"),
            args=args,
            check_answers=False,
            database_url=None,
        )


COLUMNS = [
    Column("target", "target"),
    Column("workers", "HTTP processes", 0),
    Column("deliveries", "deliveries", 0),
    Column("seconds", "s", 2),
    Column("rate", "deliveries/s", 0),
    Column("p50_ms", "p50 ms", 1),
    Column("p99_ms", "p99 ms", 1),
    Column("errors", "errors", 0),
    Column("duplicates", "duplicates/redeliveries"),
    Column("receipts", "receipts/statuses"),
    Column("server_cpu_ms", "server CPU ms/delivery", 2),
    Column("db_cpu_ms", "PostgreSQL CPU ms/delivery", 2),
    Column("load_cpu_pct", "load process CPU %", 0),
    Column("other_cpu_pct", "other processes CPU %", 0),
    Column("db_sessions", "PostgreSQL sessions opened", 0),
    Column("vs_bare", "× bare"),
]


async def main(args: argparse.Namespace) -> None:
    # Meta's timestamps are the time the customer sent the message: a few seconds ago.
    timestamp = int(time.time()) - args.messages - args.warmup
    plan = plan_deliveries(
        count=args.messages,
        senders=args.senders,
        redelivery_share=args.redeliveries,
        status_share=args.statuses,
        seed=args.seed,
        timestamp=timestamp,
    )
    warmup_plan = plan_deliveries(
        count=args.warmup,
        senders=200,
        redelivery_share=args.redeliveries,
        status_share=args.statuses,
        seed=args.seed + 1,
        timestamp=timestamp,
        sender_offset=10_000_000,
    )
    planned_redeliveries = sum(1 for entry in plan if entry["_tag"] == "redelivery")
    planned_statuses = sum(1 for entry in plan if entry["_tag"] == "status")
    first_messages = sum(1 for entry in plan if entry["_tag"] == "first")
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
                planned_redeliveries=planned_redeliveries,
                planned_statuses=planned_statuses,
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
                planned_statuses=planned_statuses,
            )
            bare = bare_rates.get(workers)
            row["vs_bare"] = f"{result.rate / bare:.2f}" if bare else None
            rows.append(row)

    print_table("Signed WhatsApp webhooks through HTTP", COLUMNS, rows)
    for row in rows:
        if row["errors"] or row["anomalies"]:
            console.print(
                f"[red]{row['target']} ({row['workers']}): {row['errors']} errors, "
                f"{row['anomalies']}, e.g. {row['error_samples']}[/red]"
            )
    figures: dict[str, Any] = {"target_postgres_deliveries_per_s": TARGET_POSTGRES_RATE}
    for row in rows:
        key = f"{row['target'].split()[0].lower()}_w{row['workers']}"
        figures[f"{key}_deliveries_per_s"] = row["rate"]
        figures[f"{key}_p99_ms"] = row["p99_ms"]
        if row.get("vs_bare"):
            figures[f"{key}_vs_bare"] = float(row["vs_bare"])
    best_postgres = max(
        (row["rate"] for row in rows if row["target"] == "PostgreSQL"), default=None
    )
    figures["postgres_target_met"] = (
        None if best_postgres is None else best_postgres >= TARGET_POSTGRES_RATE
    )
    message_count = len(plan) - planned_statuses - planned_redeliveries
    notes = [
        f"{args.messages:,} webhook deliveries per run after {args.warmup} warm-up deliveries, "
        f"{args.concurrency} concurrent keep-alive connections from one load process, "
        f"{args.senders:,} senders, {args.redeliveries:.0%} redeliveries (same body, wamid and "
        f"signature), {args.statuses:.0%} status receipts; cap {args.max_seconds:.0f} s per "
        f"run. {first_messages:,} of the {message_count:,} new messages "
        f"({first_messages / max(message_count, 1):.0%}) are their sender's first: a new "
        "customer (with its whatsapp and phone identities) and conversation; the rest continue "
        "one.",
        "Each delivery is one text message (or one status) in Meta's format, signed with "
        "X-Hub-Signature-256 (HMAC-SHA256 of the raw body with the channel's app secret); Hilos "
        "looks the channel up, checks the signature, parses the body, normalises the sender and "
        "stores the message in its own transaction. The bare app reads the raw body, checks the "
        "same HMAC, parses the JSON and answers a constant of the same shape.",
        "Latency is measured in the load process from sending the request to reading the "
        "whole answer, under that concurrency (so p50 is mostly queueing: about "
        "concurrency / rate). The JSON file has p50/p99 per kind of delivery (first message, "
        "continuing message, redelivery, status).",
        "CPU columns: server = the server process and its uvicorn workers, per delivery; "
        "PostgreSQL = the backends connected to the benchmark's database, per delivery; load "
        "process, and other processes (other agents' work, PostgreSQL's WAL writer and "
        "checkpointer, the OS) in % of one core over the run. 2 cores = 200%.",
        "On SQLite `hilos serve` runs the outbox worker in-process (its cost is included); on "
        "PostgreSQL it does not (`hilos worker` would relay the outbox), so that cost is not.",
        "Each PostgreSQL run starts on a freshly created database; SQLite on a fresh file.",
        "PostgreSQL sessions opened: connections the server opened during the measurement. "
        "Above 0, a pool grew (it opens connections on demand up to its size) or overflowed "
        "(SQLAlchemy closes overflow connections when they come back): each forks a new "
        "PostgreSQL backend with an empty prepared-statement cache, whose CPU escapes the "
        "PostgreSQL column.",
        "The machine's 2 cores are shared by the load process, the server and PostgreSQL, and "
        "other agents may have been running tests at the same time: figures are noisy; "
        "compare rows of one run rather than runs of different days.",
        f"Target: ≥ {TARGET_POSTGRES_RATE:,.0f} deliveries/s on PostgreSQL on 2 cores: "
        + (
            "not measured in this run."
            if best_postgres is None
            else f"{'met' if best_postgres >= TARGET_POSTGRES_RATE else 'NOT met'} "
            f"(best {best_postgres:,.0f} deliveries/s)."
        ),
    ]
    facts = machine_facts()
    path = write_results(
        "webhooks",
        title="Signed WhatsApp webhooks (benchmarks/webhooks.py)",
        columns=COLUMNS,
        rows=rows,
        figures=figures,
        notes=notes,
        facts=facts,
    )
    console.print(f"written {path} and RESULTS.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="deliveries per run")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted deliveries first")
    parser.add_argument("--senders", type=int, default=2000, help="distinct senders")
    parser.add_argument("--redeliveries", type=float, default=0.05, help="share of redeliveries")
    parser.add_argument(
        "--statuses", type=float, default=0.0, help="share of status receipts (unknown wamids)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-clock cap per run")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--workers", default="1,2", help="HTTP processes on PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if (
        not 0 <= args.redeliveries < 1
        or not 0 <= args.statuses < 1
        or args.redeliveries + args.statuses >= 1
        or args.messages < 1
        or args.concurrency < 1
    ):
        parser.error(
            "need 0 <= --redeliveries < 1, 0 <= --statuses < 1, --messages >= 1, --concurrency >= 1"
        )
    return args


if __name__ == "__main__":
    run_async(main(parse_args()))

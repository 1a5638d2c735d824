"""Every Prometheus metric Hilos exports, defined in one place, and how a process exposes them.

Each metric below says its type, its labels and what it counts. Labels stay few and bounded —
kinds, outcomes, stages, topics, queue ids — never tenant, customer, conversation or message
ids, which would make a series per customer. The modules that do the work call these objects
with one line each; on the inbound hot path that line is a counter increment, never a query.

Where a figure is measured decides which process exports it:

* ``hilos serve`` (``/metrics``): HTTP requests, inbound messages and webhooks, and whatever
  a request does (an agent accepting an offer is an assignment).
* ``hilos worker`` (its own listener on ``HILOS_METRICS_PORT``, ``serve_worker_metrics``): the
  outbox relay and its lag, the bus, SLA warnings and breaches (counted when their events are
  published), sends, outbound webhooks, routing rounds and the worker's stages. In the embedded
  default the worker runs inside ``hilos serve``, so ``/metrics`` shows all of it.

Several processes: Prometheus scrapes each one and sums (``sum by``). ``hilos serve --workers
N`` runs N processes behind one port, so it uses prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by the command): every process writes its figures to a file
there and ``/metrics``, whichever process answers, adds them up. Each ``hilos worker`` is one
process and listens on a port of its own.

Counters that describe something written to the database move only once it is committed:
``on_commit`` runs the increment after the session's transaction commits and forgets it if it
rolls back, so a failed request counts nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from hilos import __version__

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: a quick database step up to a slow provider call.
_WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds a customer waits for an agent: a few seconds up to a day.
_WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 43_200, 86_400)

# --- the build ----------------------------------------------------------------------------------

BUILD_INFO = Gauge(
    "hilos_build_info",
    "Always 1; the label says which version runs.",
    ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(__version__).set(1)

# --- HTTP (every request; core.logging's middleware) ---------------------------------------------

HTTP_REQUESTS = Counter(
    "hilos_http_requests_total",
    "HTTP requests answered, by method and status.",
    ["method", "status"],
)
HTTP_LATENCY = Histogram(
    "hilos_http_request_seconds", "Time to answer an HTTP request, by method.", ["method"]
)

# --- ingest -------------------------------------------------------------------------------------

MESSAGES_RECEIVED = Counter(
    "hilos_messages_received_total",
    "Inbound messages stored (committed), by the kind of channel they came on: chat lines, "
    "emails, store visits, calls. Redeliveries are not counted here.",
    ["channel_kind"],
)
INBOUND_DUPLICATES = Counter(
    "hilos_inbound_duplicates_total",
    "Redeliveries of an inbound message already stored (answered with the first ids).",
)
INBOUND_BATCH_SIZES = Histogram(
    "hilos_inbound_batch_size",
    "Messages stored together by one statement (PostgreSQL's group commit of known senders).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
WEBHOOK_REQUESTS = Counter(
    "hilos_webhook_requests_total",
    "Provider webhook requests (/webhooks/{provider}/{channel}), by provider and outcome: ok, "
    "or the error code answered (not_found, bad_signature, bad_payload...). An unknown "
    "provider's path counts as provider 'unknown'.",
    ["provider", "outcome"],
)

# --- the outbox (worker) ------------------------------------------------------------------------

OUTBOX_PENDING = Gauge(
    "hilos_outbox_pending_events",
    "Events written but not yet relayed to the bus, as the worker last found them before a "
    "relay pass (counted up to 100 000).",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_PENDING = Gauge(
    "hilos_outbox_oldest_pending_seconds",
    "Age of the oldest event not yet relayed, as the worker last found it before a relay "
    "pass; 0 when none waits. The outbox lag: alert when it stays above 30 s.",
    multiprocess_mode="mostrecent",
)
OUTBOX_PUBLISHED = Counter(
    "hilos_outbox_published_total",
    "Events relayed from the outbox to the bus, by topic.",
    ["topic"],
)
OUTBOX_RELAY_DELAY = Histogram(
    "hilos_outbox_relay_delay_seconds",
    "Time from an event's commit to its publication on the bus.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
OUTBOX_RELAY_BATCH = Histogram(
    "hilos_outbox_relay_batch_seconds",
    "Time to relay one batch (up to 500 events): claim, outbox consumers, publish, mark.",
    buckets=_WORK_BUCKETS,
)
OUTBOX_CONSUMER_FAILURES = Counter(
    "hilos_outbox_consumer_failures_total",
    "Batches an outbox consumer (sla, routing, journeys, webhooks...) failed on; its writes "
    "were rolled back and the events published all the same.",
    ["consumer"],
)

# --- the bus ------------------------------------------------------------------------------------

BUS_PUBLISHED = Counter("hilos_bus_published_total", "Events published on the bus.")
BUS_HANDLER_FAILURES = Counter(
    "hilos_bus_handler_failures_total",
    "Bus events a subscriber's handler failed on (NATS redelivers them), by durable name up to "
    "its first hyphen (fanout-<id> counts as fanout).",
    ["durable"],
)
BUS_STREAM_MESSAGES = Gauge(
    "hilos_bus_stream_messages",
    "Messages held by the JetStream stream HILOS (refreshed by the worker every 15 s).",
    multiprocess_mode="mostrecent",
)
BUS_STREAM_BYTES = Gauge(
    "hilos_bus_stream_bytes",
    "Bytes held by the JetStream stream HILOS (refreshed by the worker every 15 s).",
    multiprocess_mode="mostrecent",
)
BUS_CONSUMER_PENDING = Gauge(
    "hilos_bus_consumer_pending",
    "Messages of the stream HILOS a durable consumer has not been delivered yet (bus lag).",
    ["durable"],
    multiprocess_mode="mostrecent",
)
BUS_CONSUMER_ACK_PENDING = Gauge(
    "hilos_bus_consumer_ack_pending",
    "Messages delivered to a durable consumer and not acknowledged yet.",
    ["durable"],
    multiprocess_mode="mostrecent",
)
FANOUT_DELIVERED = Counter(
    "hilos_fanout_deliveries_total",
    "Bus events handed to this process's live listeners (console streams, web chat sockets).",
)
FANOUT_FAILURES = Counter(
    "hilos_fanout_listener_failures_total",
    "Events a live listener failed on, by listener.",
    ["listener"],
)

# --- routing and SLAs ---------------------------------------------------------------------------

ROUTING_WAIT = Histogram(
    "hilos_routing_wait_seconds",
    "Time a conversation waited for an agent, from needing one to its assignment, by queue id "
    "(the queue it was assigned from).",
    ["queue"],
    buckets=_WAIT_BUCKETS,
)
ROUTING_ASSIGNMENTS = Counter(
    "hilos_routing_assignments_total",
    "Conversations assigned to an agent: automatically, by an accepted offer or by a transfer.",
)
SLA_BREACHES = Counter(
    "hilos_sla_breaches_total",
    "SLA targets breached (sla.breached events published), by target: first_response, "
    "next_response, resolution.",
    ["target"],
)
SLA_WARNINGS = Counter(
    "hilos_sla_warnings_total",
    "SLA warnings (sla.warning events published: a target's warning share has passed).",
    ["target"],
)

# --- sending ------------------------------------------------------------------------------------

SENDS = Counter(
    "hilos_sends_total",
    "Attempts to send an outbound message through its provider, by channel kind and outcome: "
    "sent, retried (a 5xx, a 429 or a network error; it goes again later), failed (the "
    "provider refused, or retries ran out), unknown (a worker died while sending; channel "
    "kind 'unknown').",
    ["channel_kind", "outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "hilos_webhook_deliveries_total",
    "Attempts to deliver an outbound webhook, by outcome: delivered, retry, failed.",
    ["outcome"],
)

# --- the worker ---------------------------------------------------------------------------------

WORKER_STAGE_SECONDS = Histogram(
    "hilos_worker_stage_seconds",
    "Time one stage of a worker pass took (published, delivery, sla_fired, routing...).",
    ["stage"],
    buckets=_WORK_BUCKETS,
)
WORKER_STAGE_FAILURES = Counter(
    "hilos_worker_stage_failures_total",
    "Worker stages that raised (logged as worker.stage_failed); the pass goes on.",
    ["stage"],
)
WORKER_LAST_PASS = Gauge(
    "hilos_worker_last_pass_timestamp_seconds",
    "Unix time at which this worker last finished a pass: a stuck worker stops moving it.",
    multiprocess_mode="max",
)


# --- helpers the instrumented modules call -----------------------------------------------------

_ON_COMMIT = "metrics_on_commit"


def on_commit(session: AsyncSession, observe: Callable[[], None]) -> None:
    """Call ``observe`` once the session's transaction commits; drop it if it does not."""
    info = session.info
    pending: list[Callable[[], None]] | None = info.get(_ON_COMMIT)
    if pending is None:
        pending = info[_ON_COMMIT] = []
        sync_session = session.sync_session
        event.listen(sync_session, "after_commit", _run_pending)
        event.listen(sync_session, "after_transaction_end", _forget_pending)
    pending.append(observe)


def _run_pending(sync_session: Any) -> None:
    pending = sync_session.info.get(_ON_COMMIT) or []
    sync_session.info[_ON_COMMIT] = []
    for observe in pending:
        observe()


def _forget_pending(sync_session: Any, transaction: Any) -> None:
    # After a commit the list is already empty; after a rollback (or a close without commit)
    # of the outermost transaction its observations never happened.
    if transaction.parent is None:
        sync_session.info[_ON_COMMIT] = []


def durable_label(durable: str) -> str:
    """A bounded label for a durable name: per-process names (``fanout-<id>``) collapse."""
    return durable.split("-", 1)[0]


def count_published(events: Iterable[Any], *, at: Any) -> None:
    """Count events the relay has just published and committed (``OutboxEvent`` rows): by
    topic, their delay, and the SLA warnings and breaches among them."""
    for item in events:
        OUTBOX_PUBLISHED.labels(item.topic).inc()
        delay = (at - item.created_at).total_seconds()
        OUTBOX_RELAY_DELAY.observe(max(delay, 0.0))
        if item.topic == "sla.breached":
            SLA_BREACHES.labels(str(item.payload.get("target"))).inc()
        elif item.topic == "sla.warning":
            SLA_WARNINGS.labels(str(item.payload.get("target"))).inc()


@dataclass(frozen=True, slots=True)
class BusState:
    """What JetStream says of the stream HILOS and its durable consumers."""

    messages: int
    bytes: int
    # Durable name → (not yet delivered, delivered and not acknowledged).
    consumers: dict[str, tuple[int, int]]


def record_bus_state(state: BusState) -> None:
    BUS_STREAM_MESSAGES.set(state.messages)
    BUS_STREAM_BYTES.set(state.bytes)
    # A consumer deleted since the last refresh must not linger with its last figure.
    BUS_CONSUMER_PENDING.clear()
    BUS_CONSUMER_ACK_PENDING.clear()
    for durable, (pending, ack_pending) in state.consumers.items():
        BUS_CONSUMER_PENDING.labels(durable).set(pending)
        BUS_CONSUMER_ACK_PENDING.labels(durable).set(ack_pending)


def record_outbox_backlog(pending: int, oldest_age_seconds: float | None) -> None:
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST_PENDING.set(max(oldest_age_seconds or 0.0, 0.0))


# --- exposition ---------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


def exposition() -> tuple[bytes, str]:
    """The text ``/metrics`` answers, and its content type.

    With ``PROMETHEUS_MULTIPROC_DIR`` set (``hilos serve --workers N``) the figures of every
    process of the server, read from their files; otherwise this process's own.
    """
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(path: str) -> None:
    """Make ``path`` ready for a new server: created, and emptied of an earlier run's files
    (prometheus_client would add the old counters to the new ones)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


@dataclass
class MetricsListener:
    """The worker's ``/metrics`` listener: a small HTTP server on a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_worker_metrics(*, host: str, port: int) -> MetricsListener:
    """Serve this process's metrics at ``http://host:port/metrics`` (port 0: any free port).

    prometheus_client's own server, on a daemon thread: the worker has no web server, and
    reading the registry needs neither the event loop nor the database.
    """
    server, thread = start_http_server(port, addr=host)
    return MetricsListener(server=server, thread=thread)

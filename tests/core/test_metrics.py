"""Prometheus metrics move by exactly what happened: inbound webhooks and redeliveries, a relay
pass and the outbox's backlog, an SLA breach, sends to a fake provider, a conversation's wait
for an agent, the worker's stages; the worker's own listener; several processes summed.

Figures are read back from ``/metrics`` (or the worker's listener) as Prometheus parses them.
The registry lives as long as the test process and other tests move it too, so each test reads
it before and after its action and compares differences.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.delivery import backoff, deliver_due
from hilos.core import clock, metrics
from hilos.core.bus import STREAM, NatsBus
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import relay
from hilos.routing import sla
from hilos.worker import Worker
from tests.channels import fake_telegram
from tests.conftest import NATS_URL, TenantHandle, add_channel, inbound
from tests.routing.helpers import create_agent, create_queue, set_presence

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Long before any other test's data: no other tenant's SLA clock falls due at these moments.
START = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[Clock]:
    moment = Clock()
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def drain(app: Any) -> None:
    """Relay what earlier tests left in the outbox, so a pass relays only this test's events."""
    while await relay(app.state.sessionmaker, app.state.bus):
        pass


async def post_telegram(
    client: httpx.AsyncClient, channel_id: str, update: dict[str, Any], *, secret: str
) -> httpx.Response:
    return await client.post(
        f"/webhooks/telegram/{channel_id}",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
    )


async def telegram_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    response = await client.post(
        "/v1/channels",
        json={"kind": "telegram", "name": "Telegram", "config": fake_telegram.CONFIG},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id


async def test_inbound_webhooks_count_messages_redeliveries_and_each_outcome(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await telegram_channel(client, tenant)
    update = fake_telegram.update(1, message=fake_telegram.message(1, text="¿Tenéis la talla 42?"))
    before = await scrape(client)

    first = await post_telegram(client, channel_id, update, secret=fake_telegram.SECRET_TOKEN)
    again = await post_telegram(client, channel_id, update, secret=fake_telegram.SECRET_TOKEN)
    forged = await post_telegram(client, channel_id, update, secret="guess")
    nowhere = await client.post(f"/webhooks/made-up-{new_id()}/{channel_id}", json=update)
    assert (first.status_code, again.status_code, forged.status_code) == (200, 200, 401)
    assert again.json()["messages"][0]["duplicate"] is True
    assert nowhere.status_code == 404

    after = await scrape(client)
    assert moved(before, after, "hilos_messages_received_total", channel_kind="telegram") == 1
    assert moved(before, after, "hilos_inbound_duplicates_total") == 1
    webhooks = "hilos_webhook_requests_total"
    assert moved(before, after, webhooks, provider="telegram", outcome="ok") == 2
    assert moved(before, after, webhooks, provider="telegram", outcome="bad_signature") == 1
    assert moved(before, after, webhooks, provider="unknown", outcome="not_found") == 1
    # No label names a tenant, a channel or a made-up path: series stay few.
    exposition = (await client.get("/metrics")).text
    assert tenant.id not in exposition
    assert channel_id not in exposition
    assert "made-up" not in exposition


async def test_a_relay_pass_counts_what_it_published_and_the_backlog_it_found(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    await drain(app)
    channel = await add_channel(client, tenant, "api")
    before = await scrape(client)
    response = await inbound(
        client, tenant, channel_id=channel, external_id="m1", kind="external", value="c-1"
    )
    assert response.status_code == 200, response.text
    async with sessionmaker() as session:
        waiting = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    assert waiting  # the message's event at least

    frozen.advance(seconds=45)
    worker = Worker(sessionmaker=sessionmaker, bus=app.state.bus, interval=1.0)
    await worker.observe_outbox()
    found = await scrape(client)
    assert value(found, "hilos_outbox_pending_events") == waiting
    assert value(found, "hilos_outbox_oldest_pending_seconds") == 45

    published = await relay(sessionmaker, app.state.bus)
    assert published == waiting
    after = await scrape(client)
    assert moved(before, after, "hilos_messages_received_total", channel_kind="api") == 1
    assert moved(before, after, "hilos_outbox_published_total", topic="message.received") == 1
    assert (
        sum(
            moved(before, after, name, **dict(labels))
            for name, labels in after
            if name == "hilos_outbox_published_total"
        )
        == published
    )
    assert moved(before, after, "hilos_outbox_relay_batch_seconds_count") == 1
    assert moved(before, after, "hilos_outbox_relay_delay_seconds_count") == published
    delays = moved(before, after, "hilos_outbox_relay_delay_seconds_sum")
    assert delays == pytest.approx(45 * published)
    assert moved(before, after, "hilos_bus_published_total") == published

    # A relay pass that finds nothing publishes nothing and times no batch.
    assert await relay(sessionmaker, app.state.bus) == 0
    assert moved(after, await scrape(client), "hilos_outbox_relay_batch_seconds_count") == 0
    # Measured again (a new worker measures at once), the backlog is gone.
    await Worker(sessionmaker=sessionmaker, bus=app.state.bus, interval=1.0).observe_outbox()
    emptied = await scrape(client)
    assert value(emptied, "hilos_outbox_pending_events") == 0
    assert value(emptied, "hilos_outbox_oldest_pending_seconds") == 0


async def test_an_sla_breach_is_counted_once_by_target_when_its_event_is_published(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    sessionmaker = app.state.sessionmaker

    async def run_worker() -> None:
        await sla.fire_due(sessionmaker)
        await drain(app)

    await drain(app)
    policy = await client.post(
        "/v1/sla-policies",
        json={"name": "Primera respuesta en 10 min", "first_response_seconds": 600},
        headers=tenant.headers,
    )
    assert policy.status_code == 201, policy.text
    channel = await add_channel(client, tenant, "api")
    written = await inbound(
        client, tenant, channel_id=channel, external_id="late-1", kind="external", value="c-1"
    )
    assert written.status_code == 200, written.text
    await run_worker()
    before = await scrape(client)

    frozen.advance(minutes=11)
    await run_worker()
    await run_worker()  # a breach fires once
    after = await scrape(client)
    breaches = "hilos_sla_breaches_total"
    assert moved(before, after, breaches, target="first_response") == 1
    assert moved(before, after, breaches, target="resolution") == 0
    # Found past due before its warning went out: only the breach, no warning.
    assert moved(before, after, "hilos_sla_warnings_total", target="first_response") == 0


async def test_sends_to_a_fake_provider_count_sent_retried_and_failed_by_channel_kind(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    channel_id = await telegram_channel(client, tenant)
    update = fake_telegram.update(1, message=fake_telegram.message(1, text="Hola"))
    stored = await post_telegram(client, channel_id, update, secret=fake_telegram.SECRET_TOKEN)
    conversation_id = stored.json()["messages"][0]["conversation_id"]
    provider = fake_telegram.FakeBotApi()

    async def reply(text: str) -> None:
        response = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": text},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text

    async def deliver() -> dict[str, int]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as http:
            return await deliver_due(app.state.sessionmaker, http, tenant_id=tenant.id)

    before = await scrape(client)
    await reply("Uno")
    provider.fail_next(502, "Bad Gateway")
    assert (await deliver())["retried"] == 1
    frozen.advance(seconds=backoff(1, None) + 1)
    assert (await deliver())["sent"] == 1
    await reply("Dos")
    provider.fail_next(403, "Forbidden: bot was blocked by the user")
    assert (await deliver())["failed"] == 1

    after = await scrape(client)
    sends = "hilos_sends_total"
    assert moved(before, after, sends, channel_kind="telegram", outcome="retried") == 1
    assert moved(before, after, sends, channel_kind="telegram", outcome="sent") == 1
    assert moved(before, after, sends, channel_kind="telegram", outcome="failed") == 1


async def test_a_conversations_wait_for_an_agent_is_observed_for_its_queue(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, frozen: Clock
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES", auto_assign=True)
    ana = await create_agent(client, tenant, "ana@tienda.es", online=False)
    written = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id="wamid.w1",
        kind="whatsapp",
        value="+34600100900",
        text="Hola, necesito ayuda",
    )
    assert written.status_code == 200, written.text
    await app.state.worker.run_once()
    before = await scrape(client)

    frozen.advance(seconds=90)
    await set_presence(client, tenant, ana, "online")  # assigned in this request
    after = await scrape(client)
    wait = "hilos_routing_wait_seconds"
    assert moved(before, after, f"{wait}_count", queue=queue["id"]) == 1
    assert moved(before, after, f"{wait}_sum", queue=queue["id"]) == pytest.approx(90)
    assert moved(before, after, f"{wait}_bucket", queue=queue["id"], le="60.0") == 0
    assert moved(before, after, f"{wait}_bucket", queue=queue["id"], le="120.0") == 1
    assert moved(before, after, "hilos_routing_assignments_total") == 1

    # Going offline and online again assigns nothing new: nothing is observed.
    await set_presence(client, tenant, ana, "offline")
    await set_presence(client, tenant, ana, "online")
    assert moved(after, await scrape(client), f"{wait}_count", queue=queue["id"]) == 0


def refuse_everything(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": "the provider is a test double"})


class BrokenBus:
    """A bus that cannot publish: the relay's stage fails, the others go on."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, **_event: Any) -> None:
        raise ConnectionError("the bus is down")

    async def publish_batch(self, _events: Any) -> None:
        raise ConnectionError("the bus is down")

    async def subscribe(self, **_subscription: Any) -> None:
        return None


async def test_each_worker_stage_is_timed_and_a_failing_stage_is_counted(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "api")
    sessionmaker = app.state.sessionmaker
    worker = Worker(sessionmaker=sessionmaker, bus=BrokenBus(), interval=1.0)  # type: ignore[arg-type]
    worker.http = httpx.AsyncClient(transport=httpx.MockTransport(refuse_everything))
    written = await inbound(
        client, tenant, channel_id=channel, external_id="s1", kind="external", value="c-1"
    )
    assert written.status_code == 200, written.text
    before = await scrape(client)
    try:
        done = await worker.run_once()
    finally:
        await worker.close()
    after = await scrape(client)
    stages = "hilos_worker_stage_seconds_count"
    assert moved(before, after, "hilos_worker_stage_failures_total", stage="published") == 1
    assert "published" not in done
    for stage in ("published", "delivery", "sla_fired", "routing", "webhooks"):
        assert moved(before, after, stages, stage=stage) == 1, stage
    assert moved(before, after, "hilos_worker_stage_failures_total", stage="delivery") == 0
    assert value(after, "hilos_worker_last_pass_timestamp_seconds") > 0
    await drain(app)  # the events the broken bus could not take


async def test_the_worker_serves_its_own_metrics_on_its_port() -> None:
    listener = metrics.serve_worker_metrics(host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{listener.port}/metrics"
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert {"hilos_worker_stage_seconds", "hilos_outbox_pending_events"} <= names
    finally:
        listener.close()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)


def test_a_multi_process_server_answers_the_sum_of_its_processes(tmp_path: Path) -> None:
    """``hilos serve --workers N``: each process counts in its own file; /metrics adds up."""
    env = {**os.environ, metrics.MULTIPROCESS_DIR_VARIABLE: str(tmp_path)}
    count = (
        "from hilos.core import metrics; "
        "metrics.MESSAGES_RECEIVED.labels('sms').inc({n}); "
        "metrics.OUTBOX_PENDING.set({n})"
    )
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", count.format(n=n)], env=env, check=True)
    read = (
        "import sys; from hilos.core import metrics; "
        "sys.stdout.write(metrics.exposition()[0].decode())"
    )
    exposition = subprocess.run(
        [sys.executable, "-c", read], env=env, check=True, capture_output=True, text=True
    ).stdout
    samples = parse(exposition)
    assert value(samples, "hilos_messages_received_total", channel_kind="sms") == 5
    # A gauge is the most recent value any process set, not a sum.
    assert value(samples, "hilos_outbox_pending_events") == 3

    # A new server starts from zero: the directory is emptied of the last run's files.
    metrics.prepare_multiprocess_dir(str(tmp_path))
    assert not list(tmp_path.glob("*.db"))


async def test_counts_wait_for_the_commit_and_a_rollback_counts_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[str] = []
    async with sessionmaker() as session:
        async with session.begin():
            metrics.on_commit(session, lambda: seen.append("rolled back"))
            await session.execute(text("SELECT 1"))
            assert seen == []
            await session.rollback()
        async with session.begin():
            metrics.on_commit(session, lambda: seen.append("committed"))
            await session.execute(text("SELECT 1"))
            assert seen == []
        async with session.begin():
            await session.execute(text("SELECT 1"))
    assert seen == ["committed"]


@pytest.mark.skipif(not NATS_URL, reason="NATS backend skipped: HILOS_TEST_NATS_URL is not set")
async def test_the_worker_reports_a_durable_consumers_backlog_on_jetstream() -> None:
    assert NATS_URL is not None
    bus = NatsBus(NATS_URL)
    await bus.start()
    durable = f"metrics-{new_id()}"
    topic = f"metrics-test.{durable}"
    manager: Any = bus._js  # the test plays an operator's consumer that has fallen behind
    await manager.add_consumer(
        STREAM, durable_name=durable, filter_subject=f"hilos.{topic}", ack_policy="explicit"
    )
    try:
        for _ in range(3):
            await bus.publish(topic=topic, tenant_id=new_id(), event_id=new_id(), payload={})
        worker = Worker(sessionmaker=None, bus=bus, interval=1.0)  # type: ignore[arg-type]
        await worker.observe_bus()
        samples = parse(metrics.exposition()[0].decode())
        assert value(samples, "hilos_bus_consumer_pending", durable=durable) == 3
        assert value(samples, "hilos_bus_consumer_ack_pending", durable=durable) == 0
        assert value(samples, "hilos_bus_stream_messages") >= 3
        # Asked again within 15 s, the worker does not go back to the server.
        await manager.delete_consumer(STREAM, durable)
        await worker.observe_bus()
        samples = parse(metrics.exposition()[0].decode())
        assert value(samples, "hilos_bus_consumer_pending", durable=durable) == 3
    finally:
        with contextlib.suppress(Exception):  # deleted above already, unless a check failed
            await manager.delete_consumer(STREAM, durable)
        await bus.close()

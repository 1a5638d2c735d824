"""Nothing accepted is lost, and nothing is done twice, when processes die.

Real processes on loopback: a PostgreSQL database and a NATS JetStream of the test's own, two
``hilos serve`` and two ``hilos worker``. 20 000 signed WhatsApp deliveries from 2 000 senders
go to both servers (a load balancer's round robin; a delivery that gets no 200 is sent again,
to the other server, as Meta retries). Mid-run a server and a worker are killed with SIGKILL
and started again; later NATS is restarted. Then agents reply to 600 conversations and a worker
is killed while it sends them. Then a retry storm: 1 000 more deliveries, each three times,
shuffled, at once.

What must hold at the end: every delivery stored once; every reply reached the provider at
most once, and each one that did not is marked ``delivery_unknown`` (only those the killed
worker held: at most ``SEND_CONCURRENCY``); the outbox fully relayed and every event in the
JetStream stream once; every conversation's SLA clock started, breaches fired once each; every
customer's journey run finished.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hilos.channels.delivery import SEND_CONCURRENCY
from tests.channels.fake_whatsapp import (
    ACCESS_TOKEN,
    APP_SECRET,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    FakeWhatsApp,
    sign,
    text_webhook,
)
from tests.conftest import NATS_URL
from tests.conftest import POSTGRES_URL as DATABASE_URL
from tests.faults.cluster import (
    NATS_SERVER,
    Cluster,
    Process,
    asyncpg_dsn,
    cluster,
    eventually,
    fake_graph_api,
)

pytestmark = pytest.mark.skipif(
    not (DATABASE_URL and NATS_URL and DATABASE_URL.startswith("postgresql")),
    reason="fault tests skipped: they need PostgreSQL and NATS (HILOS_TEST_DATABASE_URL and "
    "HILOS_TEST_NATS_URL); they start their own nats-server",
)

MESSAGES = 20_000
SENDERS = 2_000
REPLIES = 600
STORM = 1_000
CONCURRENCY = 32
FIRST_RESPONSE_SECONDS = 20
SETTLE_SECONDS = 180.0
# The deliveries' times: within WhatsApp's 24-hour window, so agents may reply.
STARTED = int(time.time()) - 600


class Load:
    """Deliveries to the live servers, round robin, each sent until a server answers 200."""

    def __init__(self, client: httpx.AsyncClient, servers: Sequence[Process], path: str) -> None:
        self.client = client
        self.servers = servers
        self.path = path
        self.accepted = 0
        self.retries = 0

    async def deliver(self, body: bytes, turn: int) -> None:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
        for attempt in range(600):
            server = self.servers[(turn + attempt) % len(self.servers)]
            try:
                response = await self.client.post(
                    server.url + self.path, content=body, headers=headers
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                self.accepted += 1
                return
            if response is not None and response.status_code < 500:
                raise AssertionError(f"delivery refused: {response.status_code} {response.text}")
            self.retries += 1
            # A provider's retry backs off; this one briefly, to find the other server.
            await asyncio.sleep(0.05)
        raise AssertionError("a delivery found no server for 30 s")

    async def run(self, bodies: Sequence[bytes]) -> None:
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        for turn, body in enumerate(bodies):
            queue.put_nowait((turn, body))

        async def sender() -> None:
            while not queue.empty():
                turn, body = queue.get_nowait()
                await self.deliver(body, turn)

        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))


def delivery(n: int, *, sender: int) -> bytes:
    wa_id = f"3460{sender:07d}"
    payload = text_webhook(
        wa_id=wa_id,
        wamid=f"wamid.FAULT{n:08d}",
        text=f"Mensaje {n}",
        timestamp=STARTED + n // 100,
        name=f"Cliente {sender}",
    )
    return json.dumps(payload, separators=(",", ":")).encode()


async def api(
    client: httpx.AsyncClient, server: Process, key: str, method: str, path: str, body: Any
) -> dict[str, Any]:
    response = await client.request(
        method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


async def when(load: Load, accepted: int) -> None:
    await eventually(
        lambda: _reached(load, accepted), timeout=SETTLE_SECONDS, what=f"{accepted} accepted"
    )


async def _reached(load: Load, accepted: int) -> bool:
    return load.accepted >= accepted


async def chaos_during_load(running: Cluster, load: Load) -> None:
    await when(load, MESSAGES // 5)
    running.processes["server-a"].kill()
    running.processes["worker-1"].kill()
    log("killed server-a and worker-1")
    await when(load, MESSAGES * 7 // 20)
    running.start_server("server-a")
    running.start_worker("worker-1")
    await running.server_ready(running.processes["server-a"])
    log("server-a and worker-1 back")
    await when(load, MESSAGES // 2)
    running.processes["nats"].stop()  # a restart, as an operator's or an upgrade's
    await when(load, MESSAGES * 13 // 20)
    running.start_nats()
    await running.nats_ready()
    log("NATS restarted")


async def scalar(connection: asyncpg.Connection, query: str, *args: Any) -> Any:
    return await connection.fetchval(query, *args)


async def test_killed_processes_and_a_restarted_nats_lose_nothing_and_repeat_nothing() -> None:
    assert DATABASE_URL is not None
    assert Path(NATS_SERVER).exists(), f"the fault tests start {NATS_SERVER}: install nats-server"
    fake = FakeWhatsApp()
    async with cluster(DATABASE_URL, name="hilos_faults") as running, fake_graph_api(fake) as graph:
        created = json.loads(running.hilos("tenant", "create", "Faults", "--json").splitlines()[-1])
        tenant_id, key = str(created["tenant_id"]), str(created["api_key"])
        servers = [running.start_server("server-a"), running.start_server("server-b")]
        running.start_worker("worker-1")
        running.start_worker("worker-2")
        for server in servers:
            await running.server_ready(server)
        db = await asyncpg.connect(asyncpg_dsn(running.database_url))
        try:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0),
                limits=httpx.Limits(max_connections=CONCURRENCY * 2),
            ) as client:
                await _run(running, client, db, servers, fake, graph, tenant_id, key)
        except BaseException:
            print(running.logs())  # noqa: T201 - the processes' last words, for the CI log
            raise
        finally:
            await db.close()


async def _run(
    running: Cluster,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    servers: list[Process],
    fake: FakeWhatsApp,
    graph: str,
    tenant_id: str,
    key: str,
) -> None:
    channel = await api(
        client,
        servers[0],
        key,
        "POST",
        "/v1/channels",
        {
            "kind": "whatsapp",
            "name": "WhatsApp",
            "config": {
                "phone_number_id": PHONE_NUMBER_ID,
                "access_token": ACCESS_TOKEN,
                "app_secret": APP_SECRET,
                "verify_token": VERIFY_TOKEN,
                "api_base_url": graph,
            },
        },
    )
    await api(
        client,
        servers[1],
        key,
        "POST",
        "/v1/sla-policies",
        {"name": "WhatsApp", "first_response_seconds": FIRST_RESPONSE_SECONDS},
    )
    journey = await api(
        client,
        servers[0],
        key,
        "POST",
        "/v1/journeys",
        {
            "name": "Bienvenida",
            "trigger": {"event": "message.received"},
            "reentry": "never",
            "definition": {
                "start": "wait",
                "steps": [
                    {"id": "wait", "type": "wait", "seconds": 2, "next": "mark"},
                    {
                        "id": "mark",
                        "type": "set_trait",
                        "key": "welcomed",
                        "value": True,
                        "next": None,
                    },
                ],
            },
        },
    )
    await api(
        client, servers[1], key, "PATCH", f"/v1/journeys/{journey['id']}", {"status": "active"}
    )
    path = f"/webhooks/whatsapp/{channel['id']}"
    rng = random.Random(8)
    bodies = [delivery(n, sender=rng.randrange(SENDERS)) for n in range(MESSAGES)]

    # 1. The load, with a server and a worker killed and started again, and NATS restarted.
    load = Load(client, servers, path)
    await asyncio.gather(load.run(bodies), chaos_during_load(running, load))
    assert load.accepted == MESSAGES
    log(f"load delivered ({load.retries} retries)")
    assert load.retries > 0  # the kills were felt

    stored = await db.fetch(
        "SELECT external_id, count(*) AS copies FROM messages"
        " WHERE tenant_id = $1 AND direction = 'inbound' GROUP BY external_id",
        tenant_id,
    )
    assert len(stored) == MESSAGES
    assert {row["copies"] for row in stored} == {1}

    # 2. Agents reply; a worker dies while it sends them.
    conversations = [
        row["id"]
        for row in await db.fetch(
            "SELECT id FROM conversations WHERE tenant_id = $1 ORDER BY id LIMIT $2",
            tenant_id,
            REPLIES,
        )
    ]

    # A new pool: the load's kept-alive connections to the killed server are dead, and a
    # reply is not retried (the API takes no idempotency key; an agent would look first).
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
    running.cleanup.append(client.aclose)

    async def reply(index: int, conversation_id: str) -> None:
        await api(
            client,
            servers[index % 2],
            key,
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            {"text": f"Respuesta {conversation_id}"},
        )

    async def kill_a_sending_worker() -> None:
        await eventually(
            lambda: _sent_at_least(fake, REPLIES // 4), timeout=SETTLE_SECONDS, what="sending"
        )
        running.processes["worker-2"].kill()
        running.start_worker("worker-2")

    await asyncio.gather(
        *(reply(i, c) for i, c in enumerate(conversations)), kill_a_sending_worker()
    )
    log("replies posted")

    async def replies_settled() -> bool:
        waiting = await scalar(
            db,
            "SELECT count(*) FROM messages WHERE tenant_id = $1 AND direction = 'outbound'"
            " AND status IN ('queued', 'sending')",
            tenant_id,
        )
        return bool(waiting == 0)

    await eventually(replies_settled, timeout=SETTLE_SECONDS, what="every reply sent or failed")
    received = collections.Counter(body["text"]["body"] for body in fake.sent)
    assert max(received.values()) == 1, "a reply reached the customer twice"
    outcomes = await db.fetch(
        "SELECT text, status, error->>'code' AS code FROM messages"
        " WHERE tenant_id = $1 AND direction = 'outbound'",
        tenant_id,
    )
    assert len(outcomes) == REPLIES
    in_doubt = [row for row in outcomes if row["status"] != "sent"]
    assert {(row["status"], row["code"]) for row in in_doubt} <= {("failed", "delivery_unknown")}
    assert len(in_doubt) <= SEND_CONCURRENCY
    assert {row["text"] for row in outcomes if row["status"] == "sent"} <= set(received)

    # 3. A provider's retry storm: each delivery three times, shuffled, at once.
    storm = [delivery(MESSAGES + n, sender=rng.randrange(SENDERS)) for n in range(STORM)]
    copies = storm * 3
    rng.shuffle(copies)
    await Load(client, servers, path).run(copies)
    log("storm delivered")
    total = await scalar(
        db,
        "SELECT count(*) FROM messages WHERE tenant_id = $1 AND direction = 'inbound'",
        tenant_id,
    )
    assert total == MESSAGES + STORM

    # 4. Everything downstream caught up, once.
    async def relayed() -> bool:
        pending = await scalar(db, "SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
        return bool(pending == 0)

    await eventually(relayed, timeout=SETTLE_SECONDS, what="the outbox relayed")
    await _every_event_once_in_the_stream(running, db)
    log("outbox relayed")

    customers = await scalar(db, "SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id)
    assert customers == len({body for body in _senders(bodies + storm)})

    async def journeys_done() -> bool:
        done = await scalar(
            db,
            "SELECT count(*) FROM customers WHERE tenant_id = $1"
            " AND (traits->>'welcomed')::boolean",
            tenant_id,
        )
        return bool(done == customers)

    await eventually(journeys_done, timeout=SETTLE_SECONDS, what="every customer's journey ran")
    runs = await db.fetch(
        "SELECT customer_id, count(*) AS runs, min(status) AS status FROM journey_runs"
        " WHERE tenant_id = $1 GROUP BY customer_id",
        tenant_id,
    )
    assert len(runs) == customers
    assert {(row["runs"], row["status"]) for row in runs} == {(1, "done")}

    conversation_count = await scalar(
        db, "SELECT count(*) FROM conversations WHERE tenant_id = $1", tenant_id
    )
    clocks = await scalar(
        db, "SELECT count(*) FROM conversation_slas WHERE tenant_id = $1", tenant_id
    )
    assert clocks == conversation_count

    async def breaches_fired() -> bool:
        owed = await scalar(
            db,
            "SELECT count(*) FROM conversation_slas WHERE tenant_id = $1"
            " AND first_responded_at IS NULL AND NOT first_response_breached",
            tenant_id,
        )
        return bool(owed == 0)

    await eventually(
        breaches_fired,
        timeout=FIRST_RESPONSE_SECONDS + SETTLE_SECONDS,
        what="every unanswered conversation's first-response breach fired",
    )
    await eventually(relayed, timeout=SETTLE_SECONDS, what="the breaches relayed")
    repeated = await db.fetch(
        "SELECT payload->>'conversation_id' AS conversation, payload->>'target' AS target,"
        " count(*) AS times FROM outbox_events WHERE tenant_id = $1 AND topic = 'sla.breached'"
        " GROUP BY 1, 2 HAVING count(*) > 1",
        tenant_id,
    )
    assert repeated == []
    breached = await scalar(
        db,
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND topic = 'sla.breached'",
        tenant_id,
    )
    assert breached >= conversation_count - REPLIES


_BEGAN = time.monotonic()


def log(what: str) -> None:
    """Where the time goes, in the CI log of a failure (pytest shows captured output)."""
    print(f"{time.monotonic() - _BEGAN:7.1f} s  {what}")  # noqa: T201


def _senders(bodies: Sequence[bytes]) -> set[str]:
    return {
        json.loads(body)["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"]
        for body in bodies
    }


async def _sent_at_least(fake: FakeWhatsApp, count: int) -> bool:
    return len(fake.sent) >= count


async def _every_event_once_in_the_stream(running: Cluster, db: asyncpg.Connection) -> None:
    """The JetStream stream holds each outbox event once: none lost while NATS was down, none
    published twice by a relay that died before marking (``Nats-Msg-Id`` de-duplication)."""
    import nats

    events = await scalar(db, "SELECT count(*) FROM outbox_events")
    connection = await nats.connect(running.bus_url)
    try:
        info = await connection.jetstream().stream_info("HILOS")
    finally:
        await connection.close()
    assert info.state.messages == events, (
        f"{info.state.messages} messages in the stream for {events} outbox events"
    )

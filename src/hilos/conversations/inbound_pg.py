"""PostgreSQL's one-statement inbound paths for the two commonest messages: a known customer
writing into their active conversation, and a new sender's first message.

``service.receive`` is the reference: five to eight statements, each owned by its domain.
Measured on two cores, SQLAlchemy's cost per statement, not PostgreSQL, bounded the rate
(DESIGN.md's performance notes), so on PostgreSQL this module does the same work in one
statement of data-modifying CTEs, sent to asyncpg directly. A single statement is atomic on its
own, so run first on the request's connection it needs no BEGIN/COMMIT round trips; after
other statements it joins their transaction.

Known sender: find the active conversation through the identity, insert the message (``ON
CONFLICT DO NOTHING``: the idempotency check), bring the conversation up to date, write the
``message.received`` event; other identities the message proves (a WhatsApp sender's phone)
must already be the same customer's. New sender: link the identity and the others the message
proves, if none of them is anyone's or blocked (``ON CONFLICT DO NOTHING``: a concurrent first
message wins), create the customer and the conversation, insert the message and the event;
foreign keys are checked at the end of the statement, so the order of the CTEs does not
matter to them. Both read and write other domains' tables (``identities``,
``customers``, ``outbox_events``): the one place that does, kept in step with the reference by
running the same test suite on PostgreSQL.

Anything else (a known customer without an active conversation, a blocked value, a race)
changes nothing here and returns ``None``, and ``receive`` takes the reference path.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.metrics import INBOUND_BATCH_SIZES as BATCH_SIZES
from hilos.core.rawsql import numbered
from hilos.customers.identities import search_key

log = structlog.get_logger(__name__)

# Both statements end the same way: store the message in the conversation ``conv`` (ON
# CONFLICT: the idempotency check) and write its ``message.received`` event; then report.
# Parameters that also sit in an INSERT's SELECT list are cast to varchar everywhere, the type
# PostgreSQL deduces there, so that every use of a parameter agrees on its type.
_STORE_MESSAGE_WRITE_EVENT = """
msg AS (
    INSERT INTO messages (
        id, tenant_id, conversation_id, channel_id, direction, external_id, address,
        author_user_id, text, attachments, status, sent_at, created_at
    )
    SELECT :message_id, :tenant_id, conv.id, :channel_id, 'inbound', :external_id, :address,
        NULL, :text, CAST(:attachments AS json), 'received', :sent_at, :now
    FROM conv
    ON CONFLICT (tenant_id, channel_id, external_id) DO NOTHING
    RETURNING id, conversation_id
),
event AS (
    INSERT INTO outbox_events (id, tenant_id, topic, payload, created_at)
    SELECT :event_id, :tenant_id, 'message.received',
        json_build_object(
            'message_id', msg.id,
            'conversation_id', msg.conversation_id,
            'customer_id', conv.customer_id,
            'channel_id', CAST(:channel_id AS varchar),
            'channel_kind', CAST(:channel_kind AS varchar),
            'conversation', CAST(:transition AS varchar)
        ),
        :now
    FROM msg JOIN conv ON conv.id = msg.conversation_id
    RETURNING id
)"""
_REPORT = """
SELECT conv.id AS conversation_id, conv.customer_id, (SELECT id FROM msg) AS message_id
FROM conv
"""

_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL = (
    """
WITH conv AS (
    SELECT c.id, c.customer_id
    FROM identities AS i
    JOIN conversations AS c ON c.customer_id = i.customer_id
    WHERE i.tenant_id = :tenant_id AND i.kind = :kind AND i.value = :value
      AND c.status IN ('open', 'pending', 'snoozed')
      -- Every other identity the message proves must already be this customer's; if one is
      -- new or someone else's, resolution (and maybe a merge) is the reference path's job.
      -- (LATERAL ... LIMIT 1: one index probe per value, whatever plan PostgreSQL caches.)
      AND NOT EXISTS (
          SELECT 1
          FROM unnest(CAST(:extra_kinds AS varchar[]), CAST(:extra_values AS varchar[]))
              AS extra(kind, value)
          LEFT JOIN LATERAL (
              SELECT j.customer_id FROM identities AS j
              WHERE j.tenant_id = CAST(:tenant_id AS varchar) AND j.kind = extra.kind
                AND j.value = extra.value
              LIMIT 1
          ) AS owner ON true
          WHERE owner.customer_id IS DISTINCT FROM c.customer_id
      )
),
"""
    + _STORE_MESSAGE_WRITE_EVENT
    + """,
touched AS (
    UPDATE conversations AS c
    SET status = 'open', snoozed_until = NULL, resolved_at = NULL,
        channel_ids = CASE
            WHEN c.channel_ids::jsonb @> jsonb_build_array(CAST(:channel_id AS varchar))
            THEN c.channel_ids
            ELSE (c.channel_ids::jsonb || jsonb_build_array(CAST(:channel_id AS varchar)))::json
        END,
        last_channel_id = :channel_id, last_message_at = :now, last_inbound_at = :now,
        updated_at = :now
    FROM msg
    WHERE c.id = msg.conversation_id
    RETURNING c.id
)"""
    + _REPORT
)

_NEW_SENDER_SQL = (
    """
WITH link AS (
    INSERT INTO identities (id, tenant_id, customer_id, kind, value, created_at)
    SELECT :identity_id, :tenant_id, :customer_id, :kind, :value, :now
    WHERE NOT EXISTS (
        SELECT 1 FROM blocked_values
        WHERE tenant_id = CAST(:tenant_id AS varchar) AND kind = CAST(:kind AS varchar)
          AND value = CAST(:value AS varchar)
    ) AND NOT EXISTS (
        SELECT 1 FROM messages
        WHERE tenant_id = CAST(:tenant_id AS varchar)
          AND channel_id = CAST(:channel_id AS varchar)
          AND external_id = CAST(:external_id AS varchar)
    ) AND NOT EXISTS (
        -- The other identities the message proves must be nobody's yet, and not blocked.
        -- LATERAL ... LIMIT 1 keeps these one index probe per value: as a join, PostgreSQL's
        -- generic plan may hash every identity of the tenant on each call instead.
        SELECT 1
        FROM unnest(CAST(:extra_kinds AS varchar[]), CAST(:extra_values AS varchar[]))
            AS extra(kind, value)
        CROSS JOIN LATERAL (
            SELECT 1 FROM identities AS j
            WHERE j.tenant_id = CAST(:tenant_id AS varchar) AND j.kind = extra.kind
              AND j.value = extra.value
            UNION ALL
            SELECT 1 FROM blocked_values AS b
            WHERE b.tenant_id = CAST(:tenant_id AS varchar) AND b.kind = extra.kind
              AND b.value = extra.value
            LIMIT 1
        ) AS taken
    )
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING customer_id
),
extra_link AS (
    -- A concurrent first message that links one of these values first wins it; the next
    -- message from this sender then finds it elsewhere and resolution merges the two.
    INSERT INTO identities (id, tenant_id, customer_id, kind, value, created_at)
    SELECT extra.id, :tenant_id, link.customer_id, extra.kind, extra.value, :now
    FROM link, unnest(
        CAST(:extra_ids AS varchar[]),
        CAST(:extra_kinds AS varchar[]),
        CAST(:extra_values AS varchar[])
    ) AS extra(id, kind, value)
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING id
),
customer AS (
    INSERT INTO customers (
        id, tenant_id, name, search_name, language, traits, created_at, updated_at, merged_into_id
    )
    SELECT link.customer_id, :tenant_id, :name, :search_name, NULL, CAST('{}' AS json),
        :now, :now, NULL
    FROM link
    RETURNING id
),
conv AS (
    INSERT INTO conversations (
        id, tenant_id, customer_id, status, snoozed_until, assignee_id, channel_ids,
        last_channel_id, created_at, updated_at, last_message_at, last_inbound_at, resolved_at,
        merged_into_id
    )
    SELECT :conversation_id, :tenant_id, link.customer_id, 'open', NULL, NULL,
        json_build_array(CAST(:channel_id AS varchar)), :channel_id, :now, :now, :now, :now,
        NULL, NULL
    FROM link
    RETURNING id, customer_id
),"""
    + _STORE_MESSAGE_WRITE_EVENT
    + _REPORT
)


_KNOWN_SENDER = numbered(_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL)
_NEW_SENDER = numbered(_NEW_SENDER_SQL)


@dataclass(frozen=True, slots=True)
class FastReceipt:
    conversation_id: str
    customer_id: str
    # None when the message was stored by an earlier delivery.
    message_id: str | None


async def receive_in_one_statement(
    connection: AsyncConnection,
    *,
    tenant_id: str,
    channel_id: str,
    channel_kind: str,
    sender_kind: str,
    sender_value: str,
    sender_name: str | None,
    external_id: str,
    text_: str,
    attachments: list[dict[str, Any]],
    sent_at: datetime,
    moment: datetime,
    allow_new_sender: bool = True,
    extra_identities: Sequence[tuple[str, str]] = (),
    try_known: bool = True,
) -> FastReceipt | None:
    """Store the message if its sender is known with an active conversation (unless
    ``try_known`` is false: a batch just found it is not), or is new (unless
    ``allow_new_sender`` is false); ``None`` (nothing written) for every other case."""
    values = {
        "tenant_id": tenant_id,
        "kind": sender_kind,
        "value": sender_value,
        "message_id": new_id(),
        "channel_id": channel_id,
        "channel_kind": channel_kind,
        "external_id": external_id,
        "address": f"{sender_kind}:{sender_value}",
        "text": text_,
        "attachments": json.dumps(attachments),
        "sent_at": sent_at,
        "now": moment,
        "event_id": new_id(),
        "transition": "continued",
        "extra_kinds": [kind for kind, _ in extra_identities],
        "extra_values": [value for _, value in extra_identities],
    }
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    row = None
    if try_known:
        statement, parameters = _KNOWN_SENDER
        row = await driver.fetchrow(statement, *(values[name] for name in parameters))
    if row is None and allow_new_sender:
        values.update(
            extra_ids=[new_id() for _ in extra_identities],
            identity_id=new_id(),
            customer_id=new_id(),
            conversation_id=new_id(),
            name=sender_name,
            search_name=search_key(sender_name) if sender_name else None,
            transition="new",
        )
        statement, parameters = _NEW_SENDER
        row = await driver.fetchrow(statement, *(values[name] for name in parameters))
    if row is None:
        return None
    return FastReceipt(row["conversation_id"], row["customer_id"], row["message_id"])


# Many known senders' messages in one statement: the rows of ``inbound`` (one per message,
# numbered ``n``) each find their customer's active conversation, as ``_KNOWN_SENDER`` does
# for one. A conversation written by several rows is locked once, in id order (two batches
# that share conversations then wait for each other instead of deadlocking), and takes the
# latest row's channel and time. Two rows with one provider id store one message: the other
# row gets no message id back, as a redelivery does.
_KNOWN_SENDERS_BATCH_SQL = """
WITH inbound AS (
    SELECT *
    FROM unnest(
        CAST(:message_ids AS varchar[]), CAST(:event_ids AS varchar[]),
        CAST(:tenant_ids AS varchar[]), CAST(:channel_ids AS varchar[]),
        CAST(:channel_kinds AS varchar[]), CAST(:kinds AS varchar[]),
        CAST(:sender_values AS varchar[]), CAST(:external_ids AS varchar[]),
        CAST(:texts AS varchar[]), CAST(:attachments AS varchar[]),
        CAST(:sent_ats AS timestamptz[]), CAST(:nows AS timestamptz[])
    ) WITH ORDINALITY AS row(
        message_id, event_id, tenant_id, channel_id, channel_kind, kind, value, external_id,
        text, attachments, sent_at, now, n
    )
),
extra AS (
    SELECT *
    FROM unnest(
        CAST(:extra_rows AS bigint[]), CAST(:extra_kinds AS varchar[]),
        CAST(:extra_values AS varchar[])
    ) AS extra(n, kind, value)
),
conv AS (
    SELECT inbound.n, c.id, c.customer_id
    FROM inbound
    JOIN LATERAL (
        SELECT i.customer_id FROM identities AS i
        WHERE i.tenant_id = inbound.tenant_id AND i.kind = inbound.kind
          AND i.value = inbound.value
        LIMIT 1
    ) AS sender ON true
    JOIN conversations AS c ON c.customer_id = sender.customer_id
    WHERE c.status IN ('open', 'pending', 'snoozed')
      AND NOT EXISTS (
          SELECT 1
          FROM extra
          LEFT JOIN LATERAL (
              SELECT j.customer_id FROM identities AS j
              WHERE j.tenant_id = inbound.tenant_id AND j.kind = extra.kind
                AND j.value = extra.value
              LIMIT 1
          ) AS owner ON true
          WHERE extra.n = inbound.n AND owner.customer_id IS DISTINCT FROM c.customer_id
      )
),
locked AS (
    SELECT c.id FROM conversations AS c
    WHERE c.id IN (SELECT id FROM conv)
    ORDER BY c.id
    FOR NO KEY UPDATE
),
msg AS (
    INSERT INTO messages (
        id, tenant_id, conversation_id, channel_id, direction, external_id, address,
        author_user_id, text, attachments, status, sent_at, created_at
    )
    SELECT inbound.message_id, inbound.tenant_id, conv.id, inbound.channel_id, 'inbound',
        inbound.external_id, inbound.kind || ':' || inbound.value, NULL, inbound.text,
        CAST(inbound.attachments AS json), 'received', inbound.sent_at, inbound.now
    FROM inbound JOIN conv ON conv.n = inbound.n
    WHERE (SELECT count(*) FROM locked) >= 0
    ORDER BY inbound.n
    ON CONFLICT (tenant_id, channel_id, external_id) DO NOTHING
    RETURNING id, conversation_id
),
event AS (
    INSERT INTO outbox_events (id, tenant_id, topic, payload, created_at)
    SELECT inbound.event_id, inbound.tenant_id, 'message.received',
        json_build_object(
            'message_id', msg.id,
            'conversation_id', msg.conversation_id,
            'customer_id', conv.customer_id,
            'channel_id', inbound.channel_id,
            'channel_kind', inbound.channel_kind,
            'conversation', 'continued'
        ),
        inbound.now
    FROM msg
    JOIN inbound ON inbound.message_id = msg.id
    JOIN conv ON conv.n = inbound.n
    ORDER BY inbound.n
    RETURNING id
),
latest AS (
    SELECT DISTINCT ON (msg.conversation_id)
        msg.conversation_id, inbound.channel_id, inbound.now,
        array_agg(inbound.channel_id) OVER (PARTITION BY msg.conversation_id) AS channels
    FROM msg JOIN inbound ON inbound.message_id = msg.id
    ORDER BY msg.conversation_id, inbound.n DESC
),
touched AS (
    UPDATE conversations AS c
    SET status = 'open', snoozed_until = NULL, resolved_at = NULL,
        channel_ids = (
            c.channel_ids::jsonb || COALESCE(
                (
                    SELECT jsonb_agg(DISTINCT added)
                    FROM unnest(latest.channels) AS added
                    WHERE NOT c.channel_ids::jsonb @> jsonb_build_array(added)
                ),
                CAST('[]' AS jsonb)
            )
        )::json,
        last_channel_id = latest.channel_id, last_message_at = latest.now,
        last_inbound_at = latest.now, updated_at = latest.now
    FROM latest
    WHERE c.id = latest.conversation_id
    RETURNING c.id
)
SELECT inbound.n, conv.id AS conversation_id, conv.customer_id, msg.id AS message_id,
    (SELECT count(*) FROM event) + (SELECT count(*) FROM touched) AS written
FROM inbound
JOIN conv ON conv.n = inbound.n
LEFT JOIN msg ON msg.id = inbound.message_id
"""
_KNOWN_SENDERS_BATCH = numbered(_KNOWN_SENDERS_BATCH_SQL)


class BatchFailed(Exception):
    """The batch holding this message wrote nothing (an error, or no connection)."""


@dataclass(frozen=True, slots=True)
class KnownSenderMessage:
    """One message for the batch: a known sender writing into their active conversation."""

    tenant_id: str
    channel_id: str
    channel_kind: str
    sender_kind: str
    sender_value: str
    external_id: str
    text: str
    attachments: list[dict[str, Any]]
    sent_at: datetime
    extra_identities: Sequence[tuple[str, str]]


# The batch statement's plan is made once per connection, not for every batch. Left to choose,
# PostgreSQL plans it again for each batch (its arrays' lengths make every custom plan look
# cheaper than the generic one), which cost it a millisecond a batch: as much CPU as running
# it, and with two server processes sending smaller batches, a fifth of the machine. The
# generic plan runs as fast. The setting lasts while the batcher holds the connection only.
_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"
_CHOSEN_PLANS = "RESET plan_cache_mode"


class InboundBatcher:
    """Known senders' messages of concurrent requests stored by one statement (group commit).

    Each statement costs PostgreSQL a plan, an executor start and a commit, and the server a
    round trip, whatever it holds: measured on two cores, 16 messages in one statement took a
    quarter of PostgreSQL's CPU per message that 16 statements took. So a request does not
    send its own statement: it adds its message to the pending list and waits; while fewer
    than ``in_flight`` batches are being stored, a new one takes everything pending (at most
    ``max_batch``). A busy server gathers the messages that arrive during a batch into the
    next; when fewer than ``linger_below`` wait, the flush first lingers ``linger_seconds``
    (1 ms) for those already on their way, PostgreSQL's ``commit_delay`` idea: with two server
    processes sharing the traffic it cut PostgreSQL's CPU per message by a fifth. An idle
    server so stores a message within a millisecond, alone.

    ``store`` answers what ``receive_in_one_statement`` answers for a known sender: the
    receipt (its message id ``None`` for a redelivery), or ``None`` when the sender is not
    known with an active conversation. It raises ``BatchFailed`` when the batch could not be
    stored: the statement is atomic, so nothing was written, and the caller stores its message
    alone (where a bad value fails only its own request).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 64,
        in_flight: int = 1,
        linger_below: int = 8,
        linger_seconds: float = 0.001,
    ) -> None:
        self.engine = engine
        self.linger_below = linger_below
        self.linger_seconds = linger_seconds
        self.max_batch = max_batch
        self.in_flight = in_flight
        self.loop = asyncio.get_running_loop()
        self._pending: list[tuple[KnownSenderMessage, asyncio.Future[FastReceipt | None]]] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Statements that stored a batch (for tests and the size histogram's sanity).
        self.batches_stored = 0

    async def store(self, message: KnownSenderMessage) -> FastReceipt | None:
        future: asyncio.Future[FastReceipt | None] = self.loop.create_future()
        self._pending.append((message, future))
        if self._flushing < self.in_flight:
            self._start_flush()
        return await future

    def _start_flush(self) -> None:
        self._flushing += 1
        task = self.loop.create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        # Stays true unless the loop ends normally: an error, or a cancelled task (the server
        # stopping), hands what is still pending back to its requests instead of a new flush.
        failed = True
        try:
            async with self.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                await driver.execute(_GENERIC_PLANS)
                try:
                    while self._pending:
                        if len(self._pending) < self.linger_below:
                            # A short wait for the requests already on their way, so that a
                            # few server processes sharing the traffic send fuller statements.
                            await asyncio.sleep(self.linger_seconds)
                        batch = self._pending[: self.max_batch]
                        del self._pending[: self.max_batch]
                        await self._store_batch(driver, batch)
                except BaseException:
                    # Given back to the pool as it was taken, or not at all.
                    try:
                        await driver.execute(_CHOSEN_PLANS)
                    except BaseException:
                        await connection.invalidate()
                    raise
                await driver.execute(_CHOSEN_PLANS)
            failed = False
        except Exception as error:
            log.warning("inbound.batch_failed", error=repr(error))
        finally:
            self._flushing -= 1
            if self._pending and not failed:
                # Messages that came while this flush gave its connection back.
                self._start_flush()
            elif self._pending and self._flushing == 0:
                # No connection: each request stores its message alone (or reports why not).
                pending, self._pending = self._pending, []
                for _message, future in pending:
                    if not future.done():
                        future.set_exception(BatchFailed())

    async def _store_batch(
        self, driver: Any, batch: list[tuple[KnownSenderMessage, asyncio.Future[Any]]]
    ) -> None:
        messages = [message for message, _future in batch]
        values = _batch_values(messages)
        statement, parameters = _KNOWN_SENDERS_BATCH
        try:
            rows = await driver.fetch(statement, *(values[name] for name in parameters))
        except BaseException:
            # Nothing was written (one statement): each request stores its message alone,
            # where a bad value fails only its own. The connection is given up with the error.
            for _message, future in batch:
                if not future.done():
                    future.set_exception(BatchFailed())
            raise
        found = {
            int(row["n"]): FastReceipt(
                row["conversation_id"], row["customer_id"], row["message_id"]
            )
            for row in rows
        }
        self.batches_stored += 1
        BATCH_SIZES.observe(len(batch))
        for index, (_message, future) in enumerate(batch, start=1):
            if not future.done():
                future.set_result(found.get(index))


def _batch_values(messages: Sequence[KnownSenderMessage]) -> dict[str, Any]:
    moment = now()
    extra_rows: list[int] = []
    extra_kinds: list[str] = []
    extra_values: list[str] = []
    for index, message in enumerate(messages, start=1):
        for kind, value in message.extra_identities:
            extra_rows.append(index)
            extra_kinds.append(kind)
            extra_values.append(value)
    return {
        "message_ids": [new_id() for _ in messages],
        "event_ids": [new_id() for _ in messages],
        "tenant_ids": [m.tenant_id for m in messages],
        "channel_ids": [m.channel_id for m in messages],
        "channel_kinds": [m.channel_kind for m in messages],
        "kinds": [m.sender_kind for m in messages],
        "sender_values": [m.sender_value for m in messages],
        "external_ids": [m.external_id for m in messages],
        "texts": [m.text for m in messages],
        "attachments": [json.dumps(m.attachments) for m in messages],
        "sent_ats": [m.sent_at for m in messages],
        "nows": [moment for _ in messages],
        "extra_rows": extra_rows,
        "extra_kinds": extra_kinds,
        "extra_values": extra_values,
    }


_BATCHERS: weakref.WeakKeyDictionary[AsyncEngine, InboundBatcher] = weakref.WeakKeyDictionary()


def batcher_for(engine: AsyncEngine) -> InboundBatcher:
    """The engine's batcher in this event loop (tests run an engine in several loops)."""
    batcher = _BATCHERS.get(engine)
    if batcher is None or batcher.loop is not asyncio.get_running_loop():
        batcher = _BATCHERS[engine] = InboundBatcher(engine)
    return batcher

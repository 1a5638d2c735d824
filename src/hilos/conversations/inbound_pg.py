"""PostgreSQL's one-statement inbound path for the commonest message of all: a known customer
writing into their active conversation.

``service.receive`` is the reference: five statements, each owned by its domain. Measured on two
cores, SQLAlchemy's cost per statement, not PostgreSQL, bounded the rate (DESIGN.md's
performance notes), so on PostgreSQL this module does the same work in one statement with
data-modifying CTEs: find the active conversation through the sender's identity, insert the
message (``ON CONFLICT DO NOTHING``: the idempotency check), bring the conversation up to date
and write the ``message.received`` event to the outbox. It reads the customers domain's
``identities`` and writes core's ``outbox_events`` directly: the one place that crosses domain
tables, kept in sync with the reference by running the same test suite on PostgreSQL.

When the sender is unknown, has no active conversation, or is blocked, the statement changes
nothing and returns no row, and ``receive`` takes the reference path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL = """
WITH conv AS (
    SELECT c.id, c.customer_id
    FROM identities AS i
    JOIN conversations AS c ON c.customer_id = i.customer_id
    WHERE i.tenant_id = :tenant_id AND i.kind = :kind AND i.value = :value
      AND c.status IN ('open', 'pending', 'snoozed')
),
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
touched AS (
    UPDATE conversations AS c
    SET status = 'open', snoozed_until = NULL, resolved_at = NULL,
        channel_ids = CASE
            WHEN c.channel_ids::jsonb @> jsonb_build_array(CAST(:channel_id AS text))
            THEN c.channel_ids
            ELSE (c.channel_ids::jsonb || jsonb_build_array(CAST(:channel_id AS text)))::json
        END,
        last_channel_id = :channel_id, last_message_at = :now, last_inbound_at = :now,
        updated_at = :now
    FROM msg
    WHERE c.id = msg.conversation_id
    RETURNING c.id
),
event AS (
    INSERT INTO outbox_events (id, tenant_id, topic, payload, created_at)
    SELECT :event_id, :tenant_id, 'message.received',
        json_build_object(
            'message_id', msg.id,
            'conversation_id', msg.conversation_id,
            'customer_id', conv.customer_id,
            'channel_id', CAST(:channel_id AS text),
            'channel_kind', CAST(:channel_kind AS text),
            'conversation', 'continued'
        ),
        :now
    FROM msg JOIN conv ON conv.id = msg.conversation_id
    RETURNING id
)
SELECT conv.id AS conversation_id, conv.customer_id, (SELECT id FROM msg) AS message_id
FROM conv
"""


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """asyncpg's ``$n`` placeholders for the ``:name`` ones (a name used twice keeps its n)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return re.sub(r"(?<![:\w]):(\w+)", number, sql), tuple(names)


_STATEMENT, _PARAMETERS = _numbered(_KNOWN_SENDER_ACTIVE_CONVERSATION_SQL)


@dataclass(frozen=True, slots=True)
class FastReceipt:
    conversation_id: str
    customer_id: str
    # None when the message was stored by an earlier delivery.
    message_id: str | None


async def receive_known_sender(
    connection: AsyncConnection,
    *,
    tenant_id: str,
    channel_id: str,
    channel_kind: str,
    sender_kind: str,
    sender_value: str,
    external_id: str,
    text_: str,
    attachments: list[dict[str, Any]],
    sent_at: datetime,
    moment: datetime,
    message_id: str,
    event_id: str,
) -> FastReceipt | None:
    """Store the message if its sender has an active conversation; ``None`` when not."""
    values = {
        "tenant_id": tenant_id,
        "kind": sender_kind,
        "value": sender_value,
        "message_id": message_id,
        "channel_id": channel_id,
        "channel_kind": channel_kind,
        "external_id": external_id,
        "address": f"{sender_kind}:{sender_value}",
        "text": text_,
        "attachments": json.dumps(attachments),
        "sent_at": sent_at,
        "now": moment,
        "event_id": event_id,
    }
    # Straight to asyncpg: SQLAlchemy's per-statement cost was most of the message's CPU. Run
    # first on the request's connection, the statement is atomic on its own (no BEGIN/COMMIT
    # round trips); after other statements it joins their transaction.
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    row = await driver.fetchrow(_STATEMENT, *(values[name] for name in _PARAMETERS))
    if row is None:
        return None
    return FastReceipt(row["conversation_id"], row["customer_id"], row["message_id"])

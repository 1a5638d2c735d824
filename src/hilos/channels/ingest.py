"""Storing what a webhook brought, the same way for every provider.

Each inbound message is stored in a transaction of its own through
``conversations.service.receive_committed`` (so a redelivery, in any order or at the same
moment, changes nothing), each receipt through ``conversations.receipts``, each call event
through ``channels.calls``. Sender values are checked before anything is written: one bad
item makes the whole delivery a 400 with nothing stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels import calls
from hilos.channels.base import (
    BadPayload,
    CallEvent,
    ChannelInfo,
    Ignored,
    Inbound,
    Item,
    Receipt,
    WatermarkReceipt,
)
from hilos.conversations import receipts
from hilos.conversations.service import receive_committed
from hilos.core.errors import Invalid
from hilos.customers.identities import normalize

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Stored:
    messages: list[dict[str, Any]] = field(default_factory=list)
    receipts: int = 0
    calls: int = 0
    ignored: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "receipts": self.receipts,
            "calls": self.calls,
            "ignored": self.ignored,
        }


# The longest provider id a message, a receipt or a call keeps (``messages.external_id``,
# ``message_receipts.external_id``); providers' own ids are far shorter.
MAX_EXTERNAL_ID = 200
# A sender's display name is kept as the customer's name (``customers.name``).
MAX_NAME = 200


def check_senders(channel: ChannelInfo, items: list[Item]) -> None:
    """Normalize every sender value up front; an invalid one is the provider's bad payload, and
    so is an id too long to keep (PostgreSQL would refuse it halfway through the delivery). A
    name too long to keep is cut to fit."""
    region = channel.tenant.default_region
    for item in items:
        if isinstance(item, Inbound | Receipt | CallEvent):
            external_id = item.call_id if isinstance(item, CallEvent) else item.external_id
            if len(external_id) > MAX_EXTERNAL_ID:
                raise BadPayload(f"a message id is longer than {MAX_EXTERNAL_ID} characters")
        # A name only labels the customer: an overlong one is shortened, not refused.
        if isinstance(item, Inbound) and item.sender_name:
            item.sender_name = item.sender_name[:MAX_NAME]
        elif isinstance(item, CallEvent) and item.caller_name:
            item.caller_name = item.caller_name[:MAX_NAME]
    try:
        for item in items:
            if isinstance(item, Inbound):
                item.sender_value = normalize(
                    item.sender_kind, item.sender_value, region=region, field="sender"
                )
                item.identities = [
                    (kind, normalize(kind, value, region=region, field="sender"))
                    for kind, value in item.identities
                ]
            elif isinstance(item, CallEvent):
                item.caller_value = normalize(
                    item.caller_kind, item.caller_value, region=region, field="caller"
                )
    except Invalid as error:
        raise BadPayload(f"the payload names an invalid sender: {error.message}") from error


async def store(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    channel: ChannelInfo,
    items: list[Item],
    *,
    wakeup: Any,
) -> Stored:
    check_senders(channel, items)
    stored = Stored()
    tenant = channel.tenant
    for item in items:
        if isinstance(item, Inbound):
            received = await receive_committed(
                engine,
                sessionmaker,
                tenant,
                wakeup=wakeup,
                channel_id=channel.id,
                external_id=item.external_id,
                sender_kind=item.sender_kind,
                sender_value=item.sender_value,
                sender_name=item.sender_name,
                text=item.text,
                attachments=item.attachments,
                sent_at=item.sent_at,
                kind=item.kind,
                data=item.data,
                identities=item.identities,
                thread_refs=item.thread_refs,
            )
            stored.messages.append(
                {
                    "external_id": item.external_id,
                    "message_id": received.message_id,
                    "conversation_id": received.conversation_id,
                    "customer_id": received.customer_id,
                    "duplicate": received.duplicate,
                }
            )
        elif isinstance(item, Receipt):
            async with sessionmaker() as session, session.begin():
                await receipts.record_receipt(
                    session,
                    tenant,
                    channel_id=channel.id,
                    external_id=item.external_id,
                    status=item.status,
                    occurred_at=item.occurred_at,
                    error=item.error,
                )
            stored.receipts += 1
            wakeup()
        elif isinstance(item, WatermarkReceipt):
            async with sessionmaker() as session, session.begin():
                stored.receipts += await receipts.record_watermark(
                    session,
                    tenant,
                    channel_id=channel.id,
                    recipient_kind=item.recipient_kind,
                    recipient_value=item.recipient_value,
                    status=item.status,
                    watermark=item.watermark,
                )
            wakeup()
        elif isinstance(item, CallEvent):
            async with sessionmaker() as session, session.begin():
                await calls.record_call_event(session, channel, item)
            stored.calls += 1
            wakeup()
        elif isinstance(item, Ignored):
            log.info("webhook.ignored", channel_id=channel.id, reason=item.reason)
            stored.ignored.append(item.reason)
    return stored

"""Phone calls: one entry per call in the customer's conversation, call-backs, the screen pop.

A call is ONE message of kind ``call`` in the caller's one conversation (so it shows in the
conversation and, like every message, in the customer's 360° timeline), keyed by the
provider's call id. Its ``data`` is::

    {"status": "ringing|answered|ended|missed|voicemail",
     "events": [{"event": "ringing", "at": "<ISO 8601 UTC>"}, ...],
     "duration_seconds": 187, "recording_url": ..., "transcript": ...,
     "direction": "inbound|outbound"}

The first event of a call creates the entry through ``conversations.service.receive`` (which
finds or creates the customer by phone and joins their open conversation); later events are
merged into it. Providers retry and reorder callbacks, so merging is idempotent and monotonic:

- each kind of event is recorded once (the same event again changes nothing), and the events
  are kept in time order whatever order they arrived in;
- the status is the furthest one reached, in the order ringing < answered < ended < missed <
  voicemail, so a late ``ringing`` never undoes ``ended``, and a call that rang out to voicemail
  stays ``voicemail`` after the provider reports its end;
- duration, recording and transcript are filled in when an event brings them, never erased;
- the entry's ``sent_at`` is the earliest event's time (when the call started); its text is
  the transcript, if any.

Effects, each in the same transaction and through the outbox:

- ``call.<event>`` for each newly recorded event. ``call.ringing`` is the screen pop: it
  carries the customer, the conversation, the caller's number and the channel, so the console
  can open the caller's profile while the phone rings. It is only sent for an incoming call
  that is still ringing: a ``ringing`` that arrives after ``answered`` pops nothing, and an
  agent's own outgoing call pops nothing either.
- An incoming call that ends ``missed`` or ``voicemail`` opens one ``call_back`` task (unique
  on the call's entry, so a retried callback opens no second one) and emits ``task.created``.
  Outgoing calls (an agent calling back) open none: the task that caused them stays open until
  someone closes it.

An outgoing call's entry is stored by the same ``receive`` (the customer is the one called)
and then marked ``direction = outbound`` with no delivery status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.channels.base import CallEvent, ChannelInfo
from hilos.conversations.models import Conversation, Message
from hilos.conversations.service import DuplicateDelivery, receive
from hilos.core.clock import as_utc
from hilos.core.errors import Invalid
from hilos.core.metrics import MESSAGES_RECEIVED, on_commit
from hilos.core.outbox import emit
from hilos.tasks import service as tasks

# How far a call has got; its status never moves back.
STATUS_RANK: dict[str, int] = {"ringing": 0, "answered": 1, "ended": 2, "missed": 3, "voicemail": 4}
CALL_EVENTS: tuple[str, ...] = tuple(STATUS_RANK)
NEEDS_CALL_BACK = ("missed", "voicemail")


@dataclass(slots=True)
class _Entry:
    message_id: str
    conversation_id: str
    customer_id: str
    sent_at: datetime
    data: dict[str, Any] | None


def _empty_call(direction: str) -> dict[str, Any]:
    return {
        "status": None,
        "events": [],
        "duration_seconds": None,
        "recording_url": None,
        "transcript": None,
        "direction": direction,
    }


def merge_call(data: dict[str, Any], event: CallEvent) -> tuple[dict[str, Any], bool]:
    """``data`` with ``event`` applied, and whether the event was new to the call."""
    at = as_utc(event.occurred_at)
    events = [dict(e) for e in data.get("events") or []]
    added = all(e.get("event") != event.event for e in events)
    if added:
        events.append({"event": event.event, "at": at.isoformat()})
        events.sort(key=lambda e: (datetime.fromisoformat(e["at"]), STATUS_RANK[e["event"]]))
    status = data.get("status")
    if status not in STATUS_RANK or STATUS_RANK[event.event] > STATUS_RANK[status]:
        status = event.event
    merged = {**data, "events": events, "status": status}
    for key, value in (
        ("duration_seconds", event.duration_seconds),
        ("recording_url", event.recording_url),
        ("transcript", event.transcript),
    ):
        if value is not None:
            merged[key] = value
    return merged, added


async def _entry(session: AsyncSession, channel: ChannelInfo, call_id: str) -> _Entry | None:
    statement = (
        select(
            Message.id,
            Message.conversation_id,
            Message.sent_at,
            Message.data,
            Conversation.customer_id,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.tenant_id == channel.tenant.id,
            Message.channel_id == channel.id,
            Message.external_id == call_id,
        )
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two callbacks of one call at the same moment: the second waits for the first.
        statement = statement.with_for_update(of=Message)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    return _Entry(row.id, row.conversation_id, row.customer_id, as_utc(row.sent_at), row.data)


async def record_call_event(session: AsyncSession, channel: ChannelInfo, event: CallEvent) -> None:
    """Apply one call event (idempotent); the caller owns the transaction."""
    if event.event not in STATUS_RANK:
        raise Invalid(f"unknown call event {event.event!r}", field="event")
    tenant = channel.tenant
    entry = await _entry(session, channel, event.call_id)
    if entry is None:
        data, _ = merge_call(_empty_call(event.direction), event)
        try:
            # A savepoint: if the same call's first event is being stored at this very moment,
            # this attempt's customer and conversation are undone and the event is merged.
            async with session.begin_nested():
                received = await receive(
                    session,
                    tenant,
                    channel_id=channel.id,
                    external_id=event.call_id,
                    sender_kind=event.caller_kind,
                    sender_value=event.caller_value,
                    sender_name=event.caller_name,
                    text=event.transcript or "",
                    attachments=[],
                    sent_at=as_utc(event.occurred_at),
                    try_fast=False,
                    kind="call",
                    data=data,
                )
        except DuplicateDelivery:
            entry = await _entry(session, channel, event.call_id)
            if entry is None:  # pragma: no cover - the duplicate's row is committed by now
                raise
        else:
            if event.direction == "outbound":
                await session.execute(
                    update(Message)
                    .where(Message.id == received.message_id)
                    .values(direction="outbound", status=None),
                    execution_options={"synchronize_session": False},
                )
            else:  # a call from a customer is an inbound entry like a message
                on_commit(session, MESSAGES_RECEIVED.labels(channel.kind).inc)
            created = _Entry(
                received.message_id,
                received.conversation_id,
                received.customer_id,
                as_utc(event.occurred_at),
                data,
            )
            await _announce(session, channel, created, event, previous_status=None, added=True)
            return
    before = entry.data or _empty_call(event.direction)
    data, added = merge_call(before, event)
    if data == before:
        return
    sent_at = min(entry.sent_at, as_utc(event.occurred_at))
    await session.execute(
        update(Message)
        .where(Message.id == entry.message_id)
        .values(data=data, text=data.get("transcript") or "", sent_at=sent_at),
        execution_options={"synchronize_session": False},
    )
    entry.data = data
    await _announce(
        session, channel, entry, event, previous_status=before.get("status"), added=added
    )


async def _announce(
    session: AsyncSession,
    channel: ChannelInfo,
    entry: _Entry,
    event: CallEvent,
    *,
    previous_status: str | None,
    added: bool,
) -> None:
    """The outbox events and the call-back task that a change to a call causes."""
    data = entry.data or {}
    status = data.get("status")
    direction = data.get("direction", event.direction)
    payload = {
        "message_id": entry.message_id,
        "call_id": event.call_id,
        "customer_id": entry.customer_id,
        "conversation_id": entry.conversation_id,
        "channel_id": channel.id,
        "caller": event.caller_value,
        "caller_kind": event.caller_kind,
        "caller_name": event.caller_name,
        "direction": direction,
        "status": status,
        "event": event.event,
    }
    screen_pop = direction == "inbound" and status == "ringing"
    if added and (event.event != "ringing" or screen_pop):
        await emit(
            session, tenant_id=channel.tenant.id, topic=f"call.{event.event}", payload=payload
        )
    if (
        direction == "inbound"
        and status in NEEDS_CALL_BACK
        and previous_status not in NEEDS_CALL_BACK
    ):
        name = event.caller_name
        await tasks.open_task(
            session,
            channel.tenant,
            kind=tasks.CALL_BACK,
            source_id=entry.message_id,
            title=f"{name} ({event.caller_value})" if name else event.caller_value,
            customer_id=entry.customer_id,
            conversation_id=entry.conversation_id,
            data={
                "call_id": event.call_id,
                "call_message_id": entry.message_id,
                "channel_id": channel.id,
                "caller": event.caller_value,
                "caller_name": name,
                "reason": status,
                "recording_url": data.get("recording_url"),
                "transcript": data.get("transcript"),
            },
            due_at=as_utc(event.occurred_at),
        )

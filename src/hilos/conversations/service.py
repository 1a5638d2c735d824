"""Receiving messages into the right conversation, agent replies, status, and listing.

``receive`` is the hot path of Hilos (every channel's inbound message goes through it), so it is
written in SQL Core with as few round trips as correctness allows: the sender's customer (one
lookup when known), the conversation to join (one lookup), the message (one ``INSERT ... ON
CONFLICT DO NOTHING``, which is also the idempotency check), the conversation's new state, and
the ``message.received`` event in the outbox. A redelivery loses the race on the unique
``(tenant, channel, external_id)`` key and raises ``DuplicateDelivery``; the caller, which owns
the transaction, rolls back everything the attempt wrote and answers the first delivery's ids.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels.kinds import REPLY_IDENTITY_KINDS
from hilos.channels.models import Channel
from hilos.channels.service import cached_channel_kind, channel_kind, kinds_of
from hilos.conversations.inbound_pg import (
    BatchFailed,
    KnownSenderMessage,
    batcher_for,
    receive_in_one_statement,
)
from hilos.conversations.models import ACTIVE_PREDICATE, ACTIVE_STATUSES, Conversation, Message
from hilos.core.clock import as_utc, now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.metrics import INBOUND_DUPLICATES, MESSAGES_RECEIVED
from hilos.core.models import User
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.customers.identities import normalize


class DuplicateDelivery(Exception):
    """The message was stored by an earlier delivery.

    ``receive`` may have written a customer or a conversation before it found out, so the caller
    rolls back (its transaction, or a savepoint it opened) and then asks ``first_delivery``.
    """

    def __init__(self, *, channel_id: str, external_id: str) -> None:
        super().__init__(f"message {external_id} on channel {channel_id} was already received")
        self.channel_id = channel_id
        self.external_id = external_id


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool
    # The kind of channel it came on (for metrics); a redelivery's answer leaves it empty.
    channel_kind: str = ""


# The inbound path's statements, built once: per request it then pays only for binding values.
_CONVERSATIONS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, Message.__table__)
_IS_ACTIVE = or_(*(_CONVERSATIONS.c.status == status for status in ACTIVE_STATUSES))
_CONVERSATION_TO_JOIN = (
    select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.status, _CONVERSATIONS.c.channel_ids)
    .where(
        _CONVERSATIONS.c.customer_id == bindparam("customer_id"),
        or_(
            _IS_ACTIVE,
            and_(
                _CONVERSATIONS.c.status == "resolved",
                _CONVERSATIONS.c.resolved_at >= bindparam("reopen_after"),
            ),
        ),
    )
    .order_by(
        case((_CONVERSATIONS.c.status == "resolved", 1), else_=0),
        _CONVERSATIONS.c.resolved_at.desc(),
    )
    .limit(1)
)
_ACTIVE_CONVERSATION = select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.channel_ids).where(
    _CONVERSATIONS.c.customer_id == bindparam("customer_id"), _IS_ACTIVE
)
_CONTINUE_CONVERSATION = update(_CONVERSATIONS).where(
    _CONVERSATIONS.c.id == bindparam("conversation_id")
)


@functools.cache
def _start_conversation_once(dialect: str) -> Any:
    return (
        customers.insert_for(dialect, _CONVERSATIONS)
        .on_conflict_do_nothing(index_elements=["customer_id"], index_where=text(ACTIVE_PREDICATE))
        .returning(_CONVERSATIONS.c.id)
    )


@functools.cache
def _store_message_once(dialect: str) -> Any:
    return (
        customers.insert_for(dialect, _MESSAGES)
        .on_conflict_do_nothing(index_elements=["tenant_id", "channel_id", "external_id"])
        .returning(_MESSAGES.c.id)
    )


async def receive_fast(
    connection: AsyncConnection,
    tenant: TenantContext,
    *,
    channel_id: str,
    external_id: str,
    sender_kind: str,
    sender_value: str,
    sender_name: str | None,
    text: str,
    attachments: list[dict[str, Any]],
    sent_at: datetime,
    allow_new_sender: bool = True,
    identities: Sequence[tuple[str, str]] = (),
    try_known: bool = True,
) -> Received | None:
    """PostgreSQL's one-statement path (``inbound_pg``): the stored message, or ``None`` when
    the reference path must run. Needs no session: the endpoint runs it on a bare connection
    and commits. ``allow_new_sender=False`` leaves a first message to the reference path.
    ``identities`` (normalized) must all be the known sender's already, else it returns
    ``None``: linking them, and any merge, is the reference path's work."""
    kind = await channel_kind(connection, tenant, channel_id)
    value = normalize(sender_kind, sender_value, region=tenant.default_region, field="sender.value")
    fast = await receive_in_one_statement(
        connection,
        tenant_id=tenant.id,
        channel_id=channel_id,
        channel_kind=kind,
        sender_kind=sender_kind,
        sender_value=value,
        sender_name=sender_name,
        external_id=external_id,
        text_=text,
        attachments=attachments,
        sent_at=sent_at,
        moment=now(),
        allow_new_sender=allow_new_sender,
        extra_identities=identities,
        try_known=try_known,
    )
    if fast is None:
        return None
    if fast.message_id is None:
        raise DuplicateDelivery(channel_id=channel_id, external_id=external_id)
    return Received(
        fast.message_id, fast.conversation_id, fast.customer_id, duplicate=False, channel_kind=kind
    )


async def receive(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    channel_id: str,
    external_id: str,
    sender_kind: str,
    sender_value: str,
    sender_name: str | None,
    text: str,
    attachments: list[dict[str, Any]],
    sent_at: datetime,
    try_fast: bool = True,
    kind: str = "message",
    data: dict[str, Any] | None = None,
    identities: Sequence[tuple[str, str]] = (),
    thread_refs: Sequence[str] = (),
) -> Received:
    """Store an inbound message on the customer's one conversation (idempotent).

    On PostgreSQL the one-statement path is tried first (unless the caller already did, with
    ``try_fast=False``); everything else takes the reference path below.

    ``kind`` and ``data`` describe entries that are not plain messages (a call, a visit, an
    email's headers). ``identities`` are more values the message proves belong to the sender
    (a WhatsApp sender's phone number): they are resolved together, merging profiles that
    held them apart. ``thread_refs`` are provider message ids this one answers (email
    threading): the conversation holding one of them is joined, even if it was resolved.
    """
    connection = await session.connection()
    plain = kind == "message" and data is None and not identities and not thread_refs
    if try_fast and plain and connection.dialect.name == "postgresql":
        fast = await receive_fast(
            connection,
            tenant,
            channel_id=channel_id,
            external_id=external_id,
            sender_kind=sender_kind,
            sender_value=sender_value,
            sender_name=sender_name,
            text=text,
            attachments=attachments,
            sent_at=sent_at,
        )
        if fast is not None:
            session.info["outbox_written"] = True
            return fast
    channel_kind_ = await channel_kind(connection, tenant, channel_id)
    value = normalize(sender_kind, sender_value, region=tenant.default_region, field="sender.value")
    if identities:
        resolved = await customers.identify(
            session,
            tenant,
            identities=[(sender_kind, value), *identities],
            name=sender_name,
            reason="inbound",
            field_prefix="sender.identities",
        )
        customer_id, new_customer = resolved.customer_id, resolved.created
    else:
        customer_id, new_customer = await customers.resolve_sender(
            session, tenant, kind=sender_kind, value=value, name=sender_name, connection=connection
        )
    moment = now()
    threaded: tuple[str, dict[str, Any] | None] | None = None
    if thread_refs:
        threaded = await _thread_conversation(
            connection, tenant, customer_id=customer_id, thread_refs=thread_refs
        )
    if threaded is not None:
        conversation_id, state = threaded
    else:
        conversation_id, state = await _conversation_for_inbound(
            connection,
            tenant,
            customer_id=customer_id,
            channel_id=channel_id,
            moment=moment,
            new_customer=new_customer,
        )
    message_id = new_id()
    inserted = await connection.execute(
        _store_message_once(connection.dialect.name),
        {
            "id": message_id,
            "tenant_id": tenant.id,
            "conversation_id": conversation_id,
            "channel_id": channel_id,
            "direction": "inbound",
            "external_id": external_id,
            "address": f"{sender_kind}:{value}",
            "author_user_id": None,
            "text": text,
            "attachments": attachments,
            "kind": kind,
            "data": data,
            "status": "received",
            "sent_at": sent_at,
            "created_at": moment,
        },
    )
    if inserted.first() is None:
        raise DuplicateDelivery(channel_id=channel_id, external_id=external_id)
    if state is not None:
        channel_ids = state["channel_ids"]
        if channel_id not in channel_ids:
            channel_ids = [*channel_ids, channel_id]
        await connection.execute(
            _CONTINUE_CONVERSATION,
            {
                "conversation_id": conversation_id,
                "status": "open",
                "snoozed_until": None,
                "resolved_at": None,
                "channel_ids": channel_ids,
                "last_channel_id": channel_id,
                "last_message_at": moment,
                "last_inbound_at": moment,
                "updated_at": moment,
            },
        )
    await emit(
        session,
        connection=connection,
        tenant_id=tenant.id,
        topic="message.received",
        payload={
            "message_id": message_id,
            "conversation_id": conversation_id,
            "customer_id": customer_id,
            "channel_id": channel_id,
            "channel_kind": channel_kind_,
            "kind": kind,
            "conversation": "new" if state is None else state["transition"],
        },
    )
    return Received(
        message_id, conversation_id, customer_id, duplicate=False, channel_kind=channel_kind_
    )


async def receive_committed(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantContext,
    *,
    wakeup: Callable[[], None],
    **message: Any,
) -> Received:
    """``receive`` in a transaction of its own, committed; a redelivery answers the first
    delivery's ids. On PostgreSQL the commonest messages are stored by one statement on a
    bare connection, and only the rest open a session for the reference path."""
    fast = (
        engine.dialect.name == "postgresql"
        and message.get("kind", "message") == "message"
        and message.get("data") is None
        and not message.get("thread_refs")
    )
    duplicate = False
    known_checked = False
    # The channel's kind goes in the event; a channel this process has not read yet takes the
    # path below, which reads it.
    kind = cached_channel_kind(tenant, message["channel_id"]) if fast else None
    if kind is not None:
        try:
            batched = await _receive_batched(engine, tenant, kind, message)
        except BatchFailed:
            batched = None
        else:
            known_checked = True
        if batched is not None and batched.duplicate:
            duplicate = True
        elif batched is not None:
            MESSAGES_RECEIVED.labels(batched.channel_kind).inc()
            wakeup()
            return batched
    if fast and not duplicate:
        async with engine.connect() as connection:
            received: Received | None = None
            try:
                received = await receive_fast(
                    connection,
                    tenant,
                    identities=message.get("identities") or (),
                    try_known=not known_checked,
                    **{key: message[key] for key in _FAST_FIELDS},
                )
            except DuplicateDelivery:
                duplicate = True
            await connection.commit()
        if received is not None:
            MESSAGES_RECEIVED.labels(received.channel_kind).inc()
            wakeup()
            return received
    async with sessionmaker() as session:
        try:
            if duplicate:
                raise DuplicateDelivery(
                    channel_id=message["channel_id"], external_id=message["external_id"]
                )
            received = await receive(session, tenant, try_fast=False, **message)
            await session.commit()
        except DuplicateDelivery as redelivery:
            await session.rollback()
            INBOUND_DUPLICATES.inc()
            return await first_delivery(
                session,
                tenant,
                channel_id=redelivery.channel_id,
                external_id=redelivery.external_id,
            )
        except BaseException:
            await session.rollback()
            raise
    MESSAGES_RECEIVED.labels(received.channel_kind).inc()
    if session.info.pop("outbox_written", False):
        wakeup()
    return received


async def _receive_batched(
    engine: AsyncEngine, tenant: TenantContext, kind: str, message: dict[str, Any]
) -> Received | None:
    """A known sender's message stored with others arriving at the same moment
    (``inbound_pg.InboundBatcher``); ``None`` when it must be stored alone. A redelivery comes
    back as ``duplicate``, for the caller to answer with the first delivery's ids."""
    sender_kind = message["sender_kind"]
    value = normalize(
        sender_kind, message["sender_value"], region=tenant.default_region, field="sender.value"
    )
    receipt = await batcher_for(engine).store(
        KnownSenderMessage(
            tenant_id=tenant.id,
            channel_id=message["channel_id"],
            channel_kind=kind,
            sender_kind=sender_kind,
            sender_value=value,
            external_id=message["external_id"],
            text=message["text"],
            attachments=message["attachments"],
            sent_at=message["sent_at"],
            extra_identities=message.get("identities") or (),
        )
    )
    if receipt is None:
        return None
    return Received(
        receipt.message_id or "",
        receipt.conversation_id,
        receipt.customer_id,
        duplicate=receipt.message_id is None,
        channel_kind=kind,
    )


_FAST_FIELDS = (
    "channel_id",
    "external_id",
    "sender_kind",
    "sender_value",
    "sender_name",
    "text",
    "attachments",
    "sent_at",
)


async def _thread_conversation(
    connection: AsyncConnection,
    tenant: TenantContext,
    *,
    customer_id: str,
    thread_refs: Sequence[str],
) -> tuple[str, dict[str, Any]] | None:
    """The customer's conversation holding a message this one answers, with its prior state.

    A resolved one is reopened, however long ago it was resolved, unless the customer has
    since started another active conversation: one active conversation per customer wins, and
    the message joins that one instead (returns ``None``).
    """
    row = (
        await connection.execute(
            select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.status, _CONVERSATIONS.c.channel_ids)
            .join(_MESSAGES, _MESSAGES.c.conversation_id == _CONVERSATIONS.c.id)
            .where(
                _MESSAGES.c.tenant_id == tenant.id,
                or_(
                    _MESSAGES.c.external_id.in_(list(thread_refs)),
                    _MESSAGES.c.id.in_(list(thread_refs)),
                ),
                _CONVERSATIONS.c.customer_id == customer_id,
                _CONVERSATIONS.c.status != "merged",
            )
            .order_by(_MESSAGES.c.sent_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    if row.status == "resolved":
        active = (
            await connection.execute(_ACTIVE_CONVERSATION, {"customer_id": customer_id})
        ).first()
        if active is not None:
            return None
        transition = "reopened"
    else:
        transition = "continued"
    return row.id, {"channel_ids": list(row.channel_ids), "transition": transition}


async def _conversation_for_inbound(
    connection: AsyncConnection,
    tenant: TenantContext,
    *,
    customer_id: str,
    channel_id: str,
    moment: datetime,
    new_customer: bool,
) -> tuple[str, dict[str, Any] | None]:
    """The conversation an inbound message joins, and its prior state (``None`` if new).

    A customer created by this very message has no conversation to look for.
    """
    reopen_after = moment - timedelta(seconds=tenant.reopen_window_seconds)
    candidate = None
    if not new_customer:
        candidate = (
            await connection.execute(
                _CONVERSATION_TO_JOIN, {"customer_id": customer_id, "reopen_after": reopen_after}
            )
        ).first()
    if candidate is not None:
        transition = "reopened" if candidate.status == "resolved" else "continued"
        return candidate.id, {"channel_ids": list(candidate.channel_ids), "transition": transition}
    conversation_id = new_id()
    created = await connection.execute(
        _start_conversation_once(connection.dialect.name),
        {
            "id": conversation_id,
            "tenant_id": tenant.id,
            "customer_id": customer_id,
            "status": "open",
            "snoozed_until": None,
            "assignee_id": None,
            "channel_ids": [channel_id],
            "last_channel_id": channel_id,
            "created_at": moment,
            "updated_at": moment,
            "last_message_at": moment,
            "last_inbound_at": moment,
            "resolved_at": None,
            "merged_into_id": None,
        },
    )
    if created.first() is not None:
        return conversation_id, None
    # Another request started the customer's conversation at the same moment: join it.
    active = (await connection.execute(_ACTIVE_CONVERSATION, {"customer_id": customer_id})).one()
    return active.id, {"channel_ids": list(active.channel_ids), "transition": "continued"}


async def first_delivery(
    session: AsyncSession, tenant: TenantContext, *, channel_id: str, external_id: str
) -> Received:
    """The ids given to the first delivery of ``(channel_id, external_id)``."""
    row = (
        await session.execute(
            select(Message.id, Message.conversation_id, Conversation.customer_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Message.tenant_id == tenant.id,
                Message.channel_id == channel_id,
                Message.external_id == external_id,
            )
        )
    ).one()
    return Received(row.id, row.conversation_id, row.customer_id, duplicate=True)


# --- replies --------------------------------------------------------------------------------


async def reply(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation_id: str,
    text: str,
    attachments: list[dict[str, Any]],
    private: bool,
    channel_id: str | None,
    author_user_id: str | None,
    sent_at: datetime | None = None,
    template: dict[str, Any] | None = None,
    automated: dict[str, Any] | None = None,
) -> Message:
    """An agent's reply, queued in the outbox on the right channel, or a private note.

    ``sent_at`` is for importing history; a live reply is stamped now. On WhatsApp a
    free-form reply is refused once the customer's 24-hour service window has closed; an
    approved ``template`` (name, language, parameters) can be sent at any time.
    ``automated`` marks a message the system sends by itself (an order's status), with what
    sent it: it is kept in the message's data, and it answers nobody, so it stops no SLA clock.
    """
    conversation = await get_conversation(session, tenant, conversation_id)
    if conversation.status == "merged":
        raise Conflict(
            f"conversation {conversation.id} was merged into {conversation.merged_into_id}; "
            "reply there",
            code="conversation_merged",
        )
    if author_user_id is not None:
        await get_owned(session, User, author_user_id, tenant, what="user")
    moment = sent_at or now()
    message = Message(
        id=new_id(),
        tenant_id=tenant.id,
        conversation_id=conversation.id,
        author_user_id=author_user_id,
        text=text,
        attachments=attachments,
        sent_at=moment,
        created_at=moment,
    )
    if private:
        message.direction, message.status = "note", None
    else:
        chosen_channel, address = await _reply_route(
            session, tenant, conversation=conversation, channel_id=channel_id
        )
        if template is not None:
            message.data = {"template": template}
        elif sent_at is None and await channel_kind(session, tenant, chosen_channel) == "whatsapp":
            await _check_whatsapp_window(
                session, conversation=conversation, channel_id=chosen_channel, moment=moment
            )
        if automated is not None:
            message.data = {**(message.data or {}), "automated": automated}
        message.direction, message.status = "outbound", "queued"
        message.channel_id, message.address = chosen_channel, address
        conversation.last_message_at = moment
        if chosen_channel not in conversation.channel_ids:
            conversation.channel_ids = [*conversation.channel_ids, chosen_channel]
    conversation.updated_at = moment
    session.add(message)
    await session.flush()
    await emit(
        session,
        tenant_id=tenant.id,
        topic="message.noted" if private else "message.queued",
        payload={
            "message_id": message.id,
            "conversation_id": conversation.id,
            "customer_id": conversation.customer_id,
            "channel_id": message.channel_id,
            **({"automated": True} if automated is not None else {}),
        },
    )
    return message


WHATSAPP_WINDOW = timedelta(hours=24)


async def _last_inbound_at(
    session: AsyncSession, *, customer_id: str, channel_id: str
) -> datetime | None:
    """When the customer last wrote on ``channel_id``, in any of their conversations."""
    last = (
        await session.execute(
            select(func.max(Message.sent_at))
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Conversation.customer_id == customer_id,
                Message.channel_id == channel_id,
                Message.direction == "inbound",
            )
        )
    ).scalar_one_or_none()
    return None if last is None else as_utc(last)


def _window_open(last_inbound_at: datetime | None, moment: datetime) -> bool:
    return last_inbound_at is not None and last_inbound_at > moment - WHATSAPP_WINDOW


async def _check_whatsapp_window(
    session: AsyncSession, *, conversation: Conversation, channel_id: str, moment: datetime
) -> None:
    """WhatsApp lets a business write freely only within 24 hours of the customer's last
    message to that number; after that only approved templates go through."""
    last = await _last_inbound_at(
        session, customer_id=conversation.customer_id, channel_id=channel_id
    )
    if _window_open(last, moment):
        return
    when = (
        f"last wrote on WhatsApp at {as_utc(last):%Y-%m-%d %H:%M} UTC"
        if last
        else "has never written on WhatsApp"
    )
    raise Invalid(
        f"WhatsApp's 24-hour customer service window is closed (the customer {when}): send an "
        "approved template (template.name, template.language) or reply on another channel",
        field="template",
        code="whatsapp_window_closed",
    )


async def _latest_reply_inbound(
    session: AsyncSession, tenant: TenantContext, conversation: Conversation
) -> Row[str | None, str | None] | None:
    """The channel and address of the customer's latest message in ``conversation`` on a
    channel a written reply can go to (among the latest 20)."""
    recent_inbound = (
        await session.execute(
            select(Message.channel_id, Message.address)
            .where(Message.conversation_id == conversation.id, Message.direction == "inbound")
            .order_by(Message.sent_at.desc(), Message.id.desc())
            .limit(20)
        )
    ).all()
    # A store visit or a phone call is not somewhere a written reply can go: by default the
    # reply follows the customer's latest message on a channel that can carry one.
    for candidate in recent_inbound:
        if candidate.channel_id is None:
            continue
        if REPLY_IDENTITY_KINDS[await channel_kind(session, tenant, candidate.channel_id)]:
            return candidate
    return None


async def _reply_route(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation: Conversation,
    channel_id: str | None,
) -> tuple[str, str]:
    """The channel and the customer's address a reply goes to.

    By default the channel of the latest inbound message, to the address the customer wrote
    from; a chosen channel needs an identity of a kind that channel can deliver to.
    """
    latest_inbound = await _latest_reply_inbound(session, tenant, conversation)
    if channel_id is None:
        if latest_inbound is None:
            raise Invalid(
                "the conversation has no inbound message on a channel a reply can go to; "
                "choose a channel_id",
                field="channel_id",
            )
        channel_id = latest_inbound.channel_id
    kind = await channel_kind(session, tenant, channel_id)
    wanted = REPLY_IDENTITY_KINDS[kind]
    if not wanted:
        raise Invalid(f"a reply cannot be sent on a {kind} channel", field="channel_id")
    if (
        latest_inbound is not None
        and latest_inbound.channel_id == channel_id
        and latest_inbound.address
        and latest_inbound.address.split(":", 1)[0] in wanted
    ):
        return channel_id, latest_inbound.address
    identities = await customers.identities_of(session, tenant, conversation.customer_id)
    for wanted_kind in wanted:
        for identity in identities:
            if identity.kind == wanted_kind:
                return channel_id, f"{identity.kind}:{identity.value}"
    raise Invalid(
        f"the customer has no {' or '.join(wanted)} identity, so a reply cannot go on {kind}",
        field="channel_id",
        code="no_address",
    )


# Why a channel cannot carry a reply now (``ReplyOption.reason``).
CHANNEL_DISABLED = "channel_disabled"
NO_ADDRESS = "no_address"
NO_SERVICE_CONSENT = "no_service_consent"
WHATSAPP_WINDOW_CLOSED = "whatsapp_window_closed"


@dataclass(frozen=True, slots=True)
class ReplyOption:
    """A channel of the tenant that can carry a written reply, and whether it can now.

    ``reason`` says why not when ``available`` is false: ``channel_disabled``, ``no_address``
    (the customer has no identity that channel delivers to), ``no_service_consent`` or
    ``whatsapp_window_closed`` (then only an approved template goes through;
    ``last_inbound_at`` says when the customer last wrote there, ``None`` if never).
    ``default`` marks the channel a reply goes to unless the agent picks another.
    """

    channel_id: str
    kind: str
    name: str
    available: bool
    reason: str | None = None
    default: bool = False
    last_inbound_at: datetime | None = None


async def reply_options(
    session: AsyncSession, tenant: TenantContext, conversation: Conversation
) -> list[ReplyOption]:
    """Every channel a reply in ``conversation`` could go on, the conversation's own first.

    The default is the channel of the customer's latest message that a reply can go to (what
    ``reply`` picks without a ``channel_id``); when that one cannot carry a reply now, the first
    channel that can. The checks are ``reply``'s own (address, WhatsApp's window) plus two the
    composer needs: a disabled channel, and consent.

    Consent: a reply answers the customer, so it is a service message. Only a refusal of
    ``service`` messages recorded for the channel's kind makes a channel unavailable; marketing
    consent plays no part, and no record at all is no refusal (the customer wrote to us).
    """
    moment = now()
    channels = (
        (await session.execute(tenant_scope(select(Channel).order_by(Channel.id), Channel, tenant)))
        .scalars()
        .all()
    )
    latest = await _latest_reply_inbound(session, tenant, conversation)
    identities = await customers.identities_of(session, tenant, conversation.customer_id)
    held = {identity.kind for identity in identities}
    refused = {
        consent.channel_kind
        for consent in customers.current_consents(
            await customers.consent_history(session, tenant, conversation.customer_id)
        )
        if consent.purpose == "service" and not consent.granted
    }
    own = {channel_id: n for n, channel_id in enumerate(conversation.channel_ids)}
    options: list[ReplyOption] = []
    for channel in sorted(channels, key=lambda c: (own.get(c.id, len(own)), c.id)):
        wanted = REPLY_IDENTITY_KINDS.get(channel.kind, ())
        if not wanted:
            continue
        reason, last_at = None, None
        wrote_from_here = (
            latest is not None
            and latest.channel_id == channel.id
            and bool(latest.address)
            and str(latest.address).split(":", 1)[0] in wanted
        )
        if channel.disabled_at is not None:
            reason = CHANNEL_DISABLED
        elif not wrote_from_here and not held.intersection(wanted):
            reason = NO_ADDRESS
        elif channel.kind in refused:
            reason = NO_SERVICE_CONSENT
        elif channel.kind == "whatsapp":
            last_at = await _last_inbound_at(
                session, customer_id=conversation.customer_id, channel_id=channel.id
            )
            if not _window_open(last_at, moment):
                reason = WHATSAPP_WINDOW_CLOSED
        options.append(
            ReplyOption(
                channel_id=channel.id,
                kind=channel.kind,
                name=channel.name,
                available=reason is None,
                reason=reason,
                last_inbound_at=last_at,
            )
        )
    usable = [option for option in options if option.available]
    preferred = latest.channel_id if latest is not None else None
    default = next((o for o in usable if o.channel_id == preferred), usable[0] if usable else None)
    return [replace(option, default=True) if option is default else option for option in options]


# --- reading and changing conversations -----------------------------------------------------


async def get_conversation(
    session: AsyncSession, tenant: TenantContext, conversation_id: str
) -> Conversation:
    return await get_owned(session, Conversation, conversation_id, tenant, what="conversation")


async def update_conversation(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation_id: str,
    changes: dict[str, Any],
) -> Conversation:
    conversation = await get_conversation(session, tenant, conversation_id)
    if conversation.status == "merged":
        raise Conflict(
            f"conversation {conversation.id} was merged into {conversation.merged_into_id}",
            code="conversation_merged",
        )
    moment = now()
    if "assignee_id" in changes:
        assignee_id = changes["assignee_id"]
        if assignee_id is not None:
            await get_owned(session, User, assignee_id, tenant, what="user")
        conversation.assignee_id = assignee_id
    status = changes.get("status")
    previous = conversation.status
    if status is not None and status != previous:
        if status in ACTIVE_STATUSES and previous == "resolved":
            other = await session.execute(
                select(Conversation.id).where(
                    Conversation.customer_id == conversation.customer_id,
                    Conversation.status.in_(ACTIVE_STATUSES),
                )
            )
            if (other_id := other.scalar_one_or_none()) is not None:
                raise Conflict(
                    f"the customer already has an active conversation {other_id}",
                    code="active_conversation_exists",
                )
        conversation.status = status
        conversation.resolved_at = moment if status == "resolved" else None
    if conversation.status == "snoozed":
        until = changes.get("snoozed_until") or conversation.snoozed_until
        if until is None or until <= moment:
            raise Invalid("snoozing needs snoozed_until in the future", field="snoozed_until")
        conversation.snoozed_until = until
    else:
        conversation.snoozed_until = None
    conversation.updated_at = moment
    await session.flush()
    if conversation.status != previous:
        await emit(
            session,
            tenant_id=tenant.id,
            topic=f"conversation.{conversation.status}",
            payload={
                "conversation_id": conversation.id,
                "customer_id": conversation.customer_id,
                "previous_status": previous,
            },
        )
    return conversation


def encode_cursor(moment: datetime, row_id: str) -> str:
    raw = json.dumps([moment.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, row_id = json.loads(base64.urlsafe_b64decode(padded))
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None or not isinstance(row_id, str):
            raise ValueError
        return parsed, row_id
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise Invalid("cursor is not one this API gave out", field="cursor") from error


async def list_conversations(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    status: str | None = None,
    assignee_id: str | None = None,
    unassigned: bool = False,
    channel_kind: str | None = None,
    customer_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    where: Iterable[ColumnElement[bool]] = (),
) -> tuple[Sequence[Conversation], str | None]:
    """Conversations, most recent activity first, one page at a time.

    ``where``: further conditions on ``Conversation`` from other domains (routing's "what
    this agent may see", "in these queues"), so that they page like the rest.
    """
    statement = tenant_scope(select(Conversation), Conversation, tenant).where(*where)
    if status is not None:
        statement = statement.where(Conversation.status == status)
    else:
        statement = statement.where(Conversation.status != "merged")
    if assignee_id is not None:
        statement = statement.where(Conversation.assignee_id == assignee_id)
    if unassigned:
        statement = statement.where(Conversation.assignee_id.is_(None))
    if customer_id is not None:
        statement = statement.where(Conversation.customer_id == customer_id)
    if channel_kind is not None:
        statement = statement.where(
            exists(
                select(Message.id)
                .join(Channel, Channel.id == Message.channel_id)
                .where(Message.conversation_id == Conversation.id, Channel.kind == channel_kind)
            )
        )
    if cursor is not None:
        moment, row_id = decode_cursor(cursor)
        statement = statement.where(
            or_(
                Conversation.last_message_at < moment,
                and_(Conversation.last_message_at == moment, Conversation.id < row_id),
            )
        )
    statement = statement.order_by(
        Conversation.last_message_at.desc(), Conversation.id.desc()
    ).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].last_message_at, rows[-1].id)
    return rows, next_cursor


async def messages_of(
    session: AsyncSession,
    tenant: TenantContext,
    conversation_id: str,
    *,
    after: str | None = None,
    limit: int = 100,
) -> tuple[Sequence[Message], str | None]:
    """Messages in time order (the order the customer and agents wrote them)."""
    statement = tenant_scope(
        select(Message).where(Message.conversation_id == conversation_id), Message, tenant
    )
    if after is not None:
        moment, row_id = decode_cursor(after)
        statement = statement.where(
            or_(Message.sent_at > moment, and_(Message.sent_at == moment, Message.id > row_id))
        )
    statement = statement.order_by(Message.sent_at, Message.id).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].sent_at, rows[-1].id)
    return rows, next_cursor


async def active_conversations_of(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Sequence[Conversation]:
    statement = tenant_scope(
        select(Conversation)
        .where(
            Conversation.customer_id == customer_id,
            Conversation.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Conversation.last_message_at.desc()),
        Conversation,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


async def recent_messages_of_customer(
    session: AsyncSession, tenant: TenantContext, customer_id: str, *, limit: int = 50
) -> Sequence[tuple[Message, str | None]]:
    """The customer's latest messages with their channel kinds, newest first."""
    statement = (
        select(Message, Channel.kind)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .outerjoin(Channel, Channel.id == Message.channel_id)
        .where(Conversation.tenant_id == tenant.id, Conversation.customer_id == customer_id)
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def channel_kinds_for(
    session: AsyncSession, tenant: TenantContext, conversations: Sequence[Conversation]
) -> dict[str, str]:
    ids = {channel_id for c in conversations for channel_id in c.channel_ids}
    return await kinds_of(session, tenant, sorted(ids))


async def wake_snoozed(session: AsyncSession) -> int:
    """Reopen every conversation whose snooze has run out (all tenants); return how many."""
    moment = now()
    due = (
        await session.execute(
            select(Conversation.id, Conversation.tenant_id, Conversation.customer_id)
            .where(Conversation.status == "snoozed", Conversation.snoozed_until <= moment)
            .limit(500)
        )
    ).all()
    for row in due:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == row.id, Conversation.status == "snoozed")
            .values(status="open", snoozed_until=None, updated_at=moment)
        )
        await emit(
            session,
            tenant_id=row.tenant_id,
            topic="conversation.open",
            payload={
                "conversation_id": row.id,
                "customer_id": row.customer_id,
                "previous_status": "snoozed",
            },
        )
    return len(due)


# --- merges ---------------------------------------------------------------------------------


class ConversationsMergeParticipant:
    """Moves conversations on customer merges; two active conversations become one."""

    name = "conversations"

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"moved": [], "absorbed": None}
        active = {
            c.customer_id: c
            for c in (
                await session.execute(
                    select(Conversation).where(
                        Conversation.customer_id.in_((survivor_id, merged_id)),
                        Conversation.status.in_(ACTIVE_STATUSES),
                    )
                )
            ).scalars()
        }
        kept, folded = active.get(survivor_id), active.get(merged_id)
        if kept is not None and folded is not None:
            message_ids = list(
                (
                    await session.execute(
                        select(Message.id).where(Message.conversation_id == folded.id)
                    )
                ).scalars()
            )
            record["absorbed"] = {
                "from": folded.id,
                "into": kept.id,
                "status": folded.status,
                "snoozed_until": folded.snoozed_until.isoformat() if folded.snoozed_until else None,
                "message_ids": message_ids,
                "kept_channel_ids": list(kept.channel_ids),
                "kept_last_message_at": kept.last_message_at.isoformat(),
            }
            folded.status, folded.merged_into_id, folded.snoozed_until = "merged", kept.id, None
            await session.flush()
            await session.execute(
                update(Message).where(Message.id.in_(message_ids)).values(conversation_id=kept.id),
                execution_options={"synchronize_session": False},
            )
            kept.channel_ids = [
                *kept.channel_ids,
                *(c for c in folded.channel_ids if c not in kept.channel_ids),
            ]
            kept.last_message_at = max(kept.last_message_at, folded.last_message_at)
            if folded.last_inbound_at and (
                kept.last_inbound_at is None or folded.last_inbound_at > kept.last_inbound_at
            ):
                kept.last_inbound_at = folded.last_inbound_at
            if kept.status != "open" and folded.status == "open":
                kept.status, kept.snoozed_until = "open", None
            await session.flush()
        record["moved"] = await customers.move_customer_rows(
            session, Conversation, from_id=merged_id, to_id=survivor_id
        )
        for conversation in active.values():
            # Reloaded only if someone reads it again: most merges never do.
            session.expire(conversation)
        return record

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        if record["moved"]:
            await session.execute(
                update(Conversation)
                .where(
                    Conversation.id.in_(record["moved"]),
                    Conversation.customer_id == survivor_id,
                )
                .values(customer_id=merged_id),
                execution_options={"synchronize_session": False},
            )
        absorbed = record.get("absorbed")
        if absorbed is not None:
            await session.execute(
                update(Message)
                .where(
                    Message.id.in_(absorbed["message_ids"]),
                    Message.conversation_id == absorbed["into"],
                )
                .values(conversation_id=absorbed["from"]),
                execution_options={"synchronize_session": False},
            )
            kept = await session.get(Conversation, absorbed["into"])
            if kept is not None:
                await session.refresh(kept)
                kept.channel_ids = absorbed["kept_channel_ids"]
            folded = await session.get(Conversation, absorbed["from"])
            if folded is not None:
                await session.refresh(folded)
                folded.status = absorbed["status"]
                folded.merged_into_id = None
                folded.snoozed_until = (
                    datetime.fromisoformat(absorbed["snoozed_until"])
                    if absorbed["snoozed_until"]
                    else None
                )
        await session.flush()


customers.register_merge_participant(ConversationsMergeParticipant())

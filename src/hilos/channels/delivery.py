"""The delivery worker's half of replies: send what waits in the outbox, once.

A queued reply is claimed (status ``sending``, with a claim that lapses after
``HILOS_DELIVERY_CLAIM_SECONDS``) and the claim is committed *before* the provider is called.
A worker claims no more replies than it sends at once (``SEND_CONCURRENCY``), so a worker that
dies leaves at most that many replies in doubt. The provider's
answer then moves it to ``sent`` (recording the provider's message id and applying receipts
that arrived first), back to ``queued`` with a later ``next_attempt_at`` after a 5xx, a 429
or a network error (backoff, honouring ``Retry-After``), or to ``failed`` with the provider's
reason. If a worker dies between the call and recording its answer, the claim lapses and the
message is marked failed with ``delivery_unknown`` rather than sent again: none of these
providers accepts an idempotency key, so a second attempt could reach the customer twice. An
agent sees the failure and can resend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels import registry
from hilos.channels.base import (
    ChannelInfo,
    Outgoing,
    PermanentFailure,
    SendError,
    Sent,
    TemporaryFailure,
)
from hilos.channels.models import Channel
from hilos.conversations.models import Message
from hilos.conversations.receipts import apply_waiting
from hilos.core.clock import now
from hilos.core.errors import HilosError
from hilos.core.metrics import SENDS
from hilos.core.outbox import emit
from hilos.core.settings import get_settings
from hilos.core.tenancy import TenantContext, load_tenant

log = structlog.get_logger(__name__)

# Kinds of channel whose replies Hilos sends itself; the rest wait for an integrator.
SENDING_KINDS = ("whatsapp", "messenger", "instagram", "telegram", "sms", "email", "web_chat")
MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 3600.0
SEND_CONCURRENCY = 8


def backoff(attempts: int, retry_after: float | None) -> float:
    """5 s, 10 s, 20 s, ... up to an hour; never sooner than the provider asked."""
    delay: float = min(RETRY_BASE_SECONDS * 2.0 ** max(attempts - 1, 0), RETRY_MAX_SECONDS)
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class Claimed:
    message_id: str
    tenant_id: str
    channel_id: str
    attempts: int
    channel_kind: str = ""


async def _expire_lapsed_claims(session: AsyncSession, *, tenant_id: str | None) -> int:
    moment = now()
    statement = (
        select(Message.id, Message.tenant_id, Message.conversation_id, Message.channel_id)
        .where(Message.status == "sending", Message.next_attempt_at <= moment)
        .limit(200)
    )
    if tenant_id is not None:
        statement = statement.where(Message.tenant_id == tenant_id)
    lapsed = (await session.execute(statement)).all()
    error = {
        "code": "delivery_unknown",
        "message": "the worker stopped while sending; not retried so the customer does not "
        "get it twice. Check with the customer and resend if needed.",
    }
    for row in lapsed:
        await session.execute(
            update(Message)
            .where(Message.id == row.id, Message.status == "sending")
            .values(status="failed", status_at=moment, error=error, next_attempt_at=None)
        )
        await emit(
            session,
            tenant_id=row.tenant_id,
            topic="message.failed",
            payload={
                "message_id": row.id,
                "conversation_id": row.conversation_id,
                "channel_id": row.channel_id,
                "error": error,
            },
        )
    return len(lapsed)


async def _claim(
    session: AsyncSession, *, batch: int, tenant_id: str | None = None
) -> list[Claimed]:
    moment = now()
    statement = (
        select(
            Message.id,
            Message.tenant_id,
            Message.channel_id,
            Message.delivery_attempts,
            Channel.kind.label("channel_kind"),
        )
        .join(Channel, Channel.id == Message.channel_id)
        .where(
            Message.status == "queued",
            Message.direction == "outbound",
            (Message.next_attempt_at.is_(None)) | (Message.next_attempt_at <= moment),
            Channel.kind.in_(SENDING_KINDS),
            Channel.disabled_at.is_(None),
        )
        .order_by(Message.id)
        .limit(batch)
    )
    if tenant_id is not None:
        statement = statement.where(Message.tenant_id == tenant_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True, of=Message)
    rows = (await session.execute(statement)).all()
    claimed = []
    for row in rows:
        await session.execute(
            update(Message)
            .where(Message.id == row.id)
            .values(
                status="sending",
                next_attempt_at=moment + timedelta(seconds=get_settings().delivery_claim_seconds),
                delivery_attempts=row.delivery_attempts + 1,
            )
        )
        claimed.append(
            Claimed(
                row.id, row.tenant_id, row.channel_id, row.delivery_attempts + 1, row.channel_kind
            )
        )
    return claimed


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    *,
    batch: int = 50,
    tenant_id: str | None = None,
) -> dict[str, int]:
    """Send every reply that is due (of one tenant, if given); return counts."""
    counts = {"sent": 0, "retried": 0, "failed": 0, "expired": 0}
    async with sessionmaker() as session, session.begin():
        counts["expired"] = await _expire_lapsed_claims(session, tenant_id=tenant_id)
    if counts["expired"]:
        SENDS.labels("unknown", "unknown").inc(counts["expired"])
    limit = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(item: Claimed) -> str:
        async with limit:
            return await _deliver(sessionmaker, client, item)

    # Claimed only as many as are sent at once: a claimed reply is in doubt if the worker dies.
    wanted = min(SEND_CONCURRENCY, batch)
    while True:
        async with sessionmaker() as session, session.begin():
            claimed = await _claim(session, batch=wanted, tenant_id=tenant_id)
        if not claimed:
            return counts
        outcomes = await asyncio.gather(*(one(item) for item in claimed))
        for item, outcome in zip(claimed, outcomes, strict=True):
            counts[outcome] += 1
            SENDS.labels(item.channel_kind, outcome).inc()
        if len(claimed) < wanted:
            return counts


async def _prepare(
    session: AsyncSession, item: Claimed
) -> tuple[ChannelInfo, Outgoing, Message, TenantContext]:
    tenant = await load_tenant(session, item.tenant_id)
    message = await session.get(Message, item.message_id)
    channel = await session.get(Channel, item.channel_id)
    if message is None or channel is None:
        raise PermanentFailure("the message or its channel no longer exists", code="gone")
    info = ChannelInfo(id=channel.id, tenant=tenant, kind=channel.kind, config=dict(channel.config))
    to_kind, _, to_value = (message.address or ":").partition(":")
    data = message.data or {}
    outgoing = Outgoing(
        message_id=message.id,
        conversation_id=message.conversation_id,
        to_kind=to_kind,
        to_value=to_value,
        text=message.text,
        attachments=list(message.attachments),
        template=data.get("template"),
        # A message composed from a template brings its own subject, HTML and unsubscribe
        # link (engagement's sending); a reply written by an agent has none.
        context={
            key: data[key] for key in ("subject", "html", "list_unsubscribe") if data.get(key)
        },
    )
    return info, outgoing, message, tenant


async def _deliver(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, item: Claimed
) -> str:
    async with sessionmaker() as session:
        try:
            channel, outgoing, message, tenant = await _prepare(session, item)
            adapter = registry.sender_for(channel)
            if adapter is None:
                raise PermanentFailure(
                    f"no adapter sends on a {channel.kind} channel", code="no_adapter"
                )
            prepare = getattr(adapter, "prepare", None)
            if prepare is not None:
                outgoing = await prepare(session, channel, outgoing)
        except SendError as error:
            await session.rollback()
            return await _record_failure(sessionmaker, item, error)
        except HilosError as error:
            await session.rollback()
            return await _record_failure(
                sessionmaker, item, PermanentFailure(error.message, code="channel_not_configured")
            )
    try:
        sent = await adapter.send(channel, client, outgoing)
    except SendError as error:
        return await _record_failure(sessionmaker, item, error)
    except HilosError as error:  # a setting the adapter needs is missing
        return await _record_failure(
            sessionmaker, item, PermanentFailure(error.message, code="channel_not_configured")
        )
    except httpx.HTTPError as error:
        return await _record_failure(
            sessionmaker, item, TemporaryFailure(f"{type(error).__name__}: {error}")
        )
    except Exception as error:  # an adapter's bug: retried, then failed, never lost
        log.exception("delivery.adapter_error", message_id=item.message_id)
        return await _record_failure(
            sessionmaker,
            item,
            TemporaryFailure(f"unexpected {type(error).__name__}", code="adapter_error"),
        )
    await _record_sent(sessionmaker, item, tenant, message, sent)
    return "sent"


async def _record_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
    item: Claimed,
    tenant: TenantContext,
    message: Message,
    sent: Sent,
) -> None:
    moment = now()
    values: dict[str, Any] = {
        "status": "sent",
        "status_at": moment,
        "external_id": sent.external_id,
        "next_attempt_at": None,
        "error": None,
    }
    if sent.data:
        values["data"] = {**(message.data or {}), **sent.data}
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.id == item.message_id, Message.status == "sending")
            .values(**values)
        )
        await emit(
            session,
            tenant_id=item.tenant_id,
            topic="message.sent",
            payload={
                "message_id": item.message_id,
                "conversation_id": message.conversation_id,
                "channel_id": item.channel_id,
            },
        )
        await apply_waiting(
            session, tenant, channel_id=item.channel_id, external_id=sent.external_id
        )
    log.info("delivery.sent", message_id=item.message_id, external_id=sent.external_id)


async def _record_failure(
    sessionmaker: async_sessionmaker[AsyncSession], item: Claimed, error: SendError
) -> str:
    moment = now()
    reason = {"code": error.code, "message": error.message}
    retry = isinstance(error, TemporaryFailure) and item.attempts < MAX_ATTEMPTS
    async with sessionmaker() as session, session.begin():
        if retry:
            assert isinstance(error, TemporaryFailure)
            delay = backoff(item.attempts, error.retry_after)
            await session.execute(
                update(Message)
                .where(Message.id == item.message_id, Message.status == "sending")
                .values(
                    status="queued",
                    next_attempt_at=moment + timedelta(seconds=delay),
                    error=reason,
                )
            )
            log.info(
                "delivery.retry", message_id=item.message_id, delay=delay, reason=error.message
            )
            return "retried"
        conversation_id = (
            await session.execute(
                update(Message)
                .where(Message.id == item.message_id, Message.status == "sending")
                .values(status="failed", status_at=moment, error=reason, next_attempt_at=None)
                .returning(Message.conversation_id)
            )
        ).scalar_one_or_none()
        if conversation_id is not None:
            await emit(
                session,
                tenant_id=item.tenant_id,
                topic="message.failed",
                payload={
                    "message_id": item.message_id,
                    "conversation_id": conversation_id,
                    "channel_id": item.channel_id,
                    "error": reason,
                },
            )
    log.warning("delivery.failed", message_id=item.message_id, reason=error.message)
    return "failed"

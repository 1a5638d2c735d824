"""Delivery receipts: a sent reply moves through sent, delivered and read, or fails.

Every receipt is kept in ``message_receipts`` (one row per message and status, so a provider's
retries change nothing) and applied to its message when the message is known. Providers name
messages by their own ids, which Hilos learns when the send call answers; a receipt that
overtakes that answer waits, and ``apply_waiting`` applies it once the id is recorded.
Statuses only move forward: a late "delivered" never undoes "read".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations.models import Conversation, Message, MessageReceipt
from hilos.core.clock import now
from hilos.core.errors import Invalid
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned
from hilos.customers.models import Identity
from hilos.customers.service import insert_for

RECEIPT_STATUSES = ("sent", "delivered", "read", "failed")
# The statuses a message may be in for each receipt to move it on.
_MOVES_FROM: dict[str, tuple[str, ...]] = {
    "sent": ("queued", "sending"),
    "delivered": ("queued", "sending", "sent"),
    "read": ("queued", "sending", "sent", "delivered"),
    "failed": ("queued", "sending", "sent"),
}
_RECEIPTS = cast(Table, MessageReceipt.__table__)


async def record_receipt(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    channel_id: str,
    external_id: str,
    status: str,
    occurred_at: datetime,
    error: dict[str, Any] | None = None,
) -> bool:
    """Keep a provider's receipt and apply it if its message is known; return whether a
    message changed."""
    if status not in RECEIPT_STATUSES:
        raise Invalid(f"unknown delivery status {status!r}", field="status")
    connection = await session.connection()
    stored = await connection.execute(
        insert_for(connection.dialect.name, _RECEIPTS)
        .on_conflict_do_nothing(index_elements=["tenant_id", "channel_id", "external_id", "status"])
        .returning(_RECEIPTS.c.id),
        {
            "id": new_id(),
            "tenant_id": tenant.id,
            "channel_id": channel_id,
            "external_id": external_id,
            "status": status,
            "occurred_at": occurred_at,
            "error": error,
            "applied_at": None,
            "created_at": now(),
        },
    )
    if stored.first() is None:
        return False
    return await apply_waiting(session, tenant, channel_id=channel_id, external_id=external_id)


async def apply_waiting(
    session: AsyncSession, tenant: TenantContext, *, channel_id: str, external_id: str
) -> bool:
    """Apply the receipts not yet applied for one provider message id, oldest status first."""
    message = (
        await session.execute(
            select(Message.id, Message.conversation_id, Message.status).where(
                Message.tenant_id == tenant.id,
                Message.channel_id == channel_id,
                Message.external_id == external_id,
                Message.direction == "outbound",
            )
        )
    ).first()
    if message is None:
        return False
    waiting = (
        await session.execute(
            select(MessageReceipt).where(
                MessageReceipt.tenant_id == tenant.id,
                MessageReceipt.channel_id == channel_id,
                MessageReceipt.external_id == external_id,
                MessageReceipt.applied_at.is_(None),
            )
        )
    ).scalars()
    order = {status: rank for rank, status in enumerate(RECEIPT_STATUSES)}
    changed = False
    for receipt in sorted(waiting, key=lambda r: order[r.status]):
        receipt.applied_at = now()
        changed |= await _move(
            session,
            tenant,
            message_id=message.id,
            conversation_id=message.conversation_id,
            channel_id=channel_id,
            status=receipt.status,
            occurred_at=receipt.occurred_at,
            error=receipt.error,
        )
    await session.flush()
    return changed


async def _move(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    message_id: str,
    conversation_id: str,
    channel_id: str,
    status: str,
    occurred_at: datetime,
    error: dict[str, Any] | None,
) -> bool:
    values: dict[str, Any] = {"status": status, "status_at": occurred_at}
    if status == "failed":
        values["error"] = error or {"code": "provider_failed", "message": "the provider failed"}
    result = await session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status.in_(_MOVES_FROM[status]))
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    if not cast(Any, result).rowcount:
        return False
    await emit(
        session,
        tenant_id=tenant.id,
        topic=f"message.{status}",
        payload={
            "message_id": message_id,
            "conversation_id": conversation_id,
            "channel_id": channel_id,
            "error": values.get("error"),
        },
    )
    return True


async def record_watermark(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    channel_id: str,
    recipient_kind: str,
    recipient_value: str,
    status: str,
    watermark: datetime,
) -> int:
    """Apply ``status`` to every reply sent on the channel to this recipient by ``watermark``
    (Messenger's read events); return how many moved. Each becomes an ordinary receipt, so a
    repeated watermark changes nothing."""
    if status not in ("delivered", "read"):
        raise Invalid(f"a watermark cannot report {status!r}", field="status")
    covered = (
        await session.execute(
            select(Message.external_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Identity, Identity.customer_id == Conversation.customer_id)
            .where(
                Identity.tenant_id == tenant.id,
                Identity.kind == recipient_kind,
                Identity.value == recipient_value,
                Message.channel_id == channel_id,
                Message.direction == "outbound",
                Message.external_id.is_not(None),
                Message.status.in_(_MOVES_FROM[status]),
                # When the reply was written: it goes out moments later, so a watermark taken
                # in between can cover a reply the customer has not seen yet (seconds, rarely).
                Message.sent_at <= watermark,
            )
        )
    ).scalars()
    moved = 0
    for external_id in list(covered):
        assert external_id is not None
        moved += await record_receipt(
            session,
            tenant,
            channel_id=channel_id,
            external_id=external_id,
            status=status,
            occurred_at=watermark,
        )
    return moved


async def receipt_for_message(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    message_id: str,
    status: str,
    occurred_at: datetime,
    error: dict[str, Any] | None = None,
) -> Message:
    """A receipt reported by Hilos's own id (an ``api`` channel's integrator)."""
    message = await get_owned(session, Message, message_id, tenant, what="message")
    if message.direction != "outbound" or message.channel_id is None:
        raise Invalid("only a reply sent on a channel has delivery receipts", field="message_id")
    if message.external_id is None:
        message.external_id = message.id
        await session.flush()
    await record_receipt(
        session,
        tenant,
        channel_id=message.channel_id,
        external_id=message.external_id,
        status=status,
        occurred_at=occurred_at,
        error=error,
    )
    await session.refresh(message)
    return message

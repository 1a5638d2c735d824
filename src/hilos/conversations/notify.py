"""Messages the business sends a customer by itself (an order's status, a return's refund),
queued through the conversation outbox like any reply, on the customer's preferred channel.

The channel: the customer's ``preferred_channel`` trait (a channel kind such as ``whatsapp`` or
``email``) when a channel of that kind can carry a message now; otherwise the channel a reply in
their conversation would take (the one they last wrote on), otherwise the first channel that
can. "Can" is ``reply_options``'s judgement: an address the channel delivers to, no refusal of
service messages, WhatsApp's 24-hour window open. When no channel can, nothing is queued and
the caller records why.

The message joins the customer's active conversation, or the latest one; a customer who never
wrote gets a new conversation that starts resolved, so a notice never lands in an agent's
inbox. If the customer answers, that conversation reopens (within the tenant's reopen window)
and the agent sees the notice above the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations import service as conversations
from hilos.conversations.models import ACTIVE_STATUSES, Conversation
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers


@dataclass(frozen=True, slots=True)
class Notified:
    """What became of a notice: the queued message and its channel, or why nothing went."""

    message_id: str | None
    channel_id: str | None
    channel_kind: str | None
    conversation_id: str | None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.message_id is not None,
            "message_id": self.message_id,
            "channel_id": self.channel_id,
            "channel_kind": self.channel_kind,
            "conversation_id": self.conversation_id,
            "reason": self.reason,
        }


async def _conversation_for_notice(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Conversation:
    latest = (
        await session.execute(
            select(Conversation)
            .where(
                Conversation.tenant_id == tenant.id,
                Conversation.customer_id == customer_id,
                Conversation.status != "merged",
            )
            .order_by(
                case((Conversation.status.in_(ACTIVE_STATUSES), 0), else_=1),
                Conversation.last_message_at.desc(),
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    if latest is not None:
        return latest
    # Not added to the session yet: it is stored only if a channel can carry the notice.
    moment = now()
    return Conversation(
        id=new_id(),
        tenant_id=tenant.id,
        customer_id=customer_id,
        status="resolved",
        channel_ids=[],
        created_at=moment,
        updated_at=moment,
        last_message_at=moment,
        resolved_at=moment,
    )


async def notify_customer(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    text: str,
    about: dict[str, Any],
) -> Notified:
    """Queue ``text`` to the customer on their preferred channel; ``about`` names what it is
    about (``{"order_id": ...}``) and is kept on the message."""
    conversation = await _conversation_for_notice(session, tenant, customer_id)
    options = [
        o for o in await conversations.reply_options(session, tenant, conversation) if o.available
    ]
    if not options:
        return Notified(None, None, None, None, reason="no_reachable_channel")
    if conversation not in session:
        session.add(conversation)
        await session.flush()
    customer = await customers.get_customer(session, tenant, customer_id)
    preferred = (customer.traits or {}).get("preferred_channel")
    chosen = next((o for o in options if o.kind == preferred), None)
    chosen = chosen or next((o for o in options if o.default), options[0])
    message = await conversations.reply(
        session,
        tenant,
        conversation_id=conversation.id,
        text=text,
        attachments=[],
        private=False,
        channel_id=chosen.channel_id,
        author_user_id=None,
        automated=about,
    )
    return Notified(message.id, chosen.channel_id, chosen.kind, conversation.id)


async def open_for_agent(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    note: str,
    about: dict[str, Any],
) -> str:
    """Put the customer in front of an agent: their active conversation, or a new open one,
    with ``note`` as a private note, handed to routing (``conversation.requested``)."""
    conversation = (
        await session.execute(
            select(Conversation)
            .where(
                Conversation.tenant_id == tenant.id,
                Conversation.customer_id == customer_id,
                Conversation.status.in_(ACTIVE_STATUSES),
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    transition = "continued"
    if conversation is None:
        moment = now()
        conversation = Conversation(
            id=new_id(),
            tenant_id=tenant.id,
            customer_id=customer_id,
            status="open",
            channel_ids=[],
            created_at=moment,
            updated_at=moment,
            last_message_at=moment,
        )
        # On the channel the agent's reply would take, so routing finds the queue for it.
        usable = [
            o
            for o in await conversations.reply_options(session, tenant, conversation)
            if o.available
        ]
        chosen = next((o for o in usable if o.default), usable[0] if usable else None)
        if chosen is not None:
            conversation.channel_ids = [chosen.channel_id]
            conversation.last_channel_id = chosen.channel_id
        session.add(conversation)
        await session.flush()
        transition = "new"
    await conversations.reply(
        session,
        tenant,
        conversation_id=conversation.id,
        text=note,
        attachments=[],
        private=True,
        channel_id=None,
        author_user_id=None,
    )
    await emit(
        session,
        tenant_id=tenant.id,
        topic="conversation.requested",
        payload={
            "conversation_id": conversation.id,
            "customer_id": customer_id,
            "conversation": transition,
            "about": about,
        },
    )
    return conversation.id


async def conversation_for_notice(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Conversation:
    """The conversation a notice to the customer joins (see the module docstring); a new one
    is not stored until ``queue_notice`` puts a message in it. For a sender that chooses the
    channel itself from ``reply_options`` of this conversation (engagement's sending rules)."""
    return await _conversation_for_notice(session, tenant, customer_id)


async def queue_notice(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation: Conversation,
    channel_id: str,
    channel_kind: str,
    text: str,
    about: dict[str, Any],
    template: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Notified:
    """Queue ``text`` (or an approved WhatsApp ``template``) in ``conversation`` on the chosen
    channel, marked automated with ``about``; ``data`` joins the message's data (an email's
    ``subject`` and ``html``)."""
    if conversation not in session:
        session.add(conversation)
        await session.flush()
    message = await conversations.reply(
        session,
        tenant,
        conversation_id=conversation.id,
        text=text,
        attachments=[],
        private=False,
        channel_id=channel_id,
        author_user_id=None,
        template=template,
        automated=about,
    )
    if data:
        message.data = {**(message.data or {}), **data}
        await session.flush()
    return Notified(message.id, channel_id, channel_kind, conversation.id)

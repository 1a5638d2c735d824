"""HTTP API of conversations: inbound messages, listing, replies and status.

Who sees what: supervisors and admins see every conversation of their tenant. An agent — a
caller with the agent role and a user of their own — sees only the conversations assigned or
offered to them and those routed through the queues they belong to (routing's
``can_see_conversation``, and ``visible_to`` for lists); any other answers 404, as another
tenant's does, on reading, changing, listing messages and replying, and their listing leaves
it out. An agent-role API key that is no one's (an integration's key: today every key, since
keys are not bound to users) sees every conversation of its tenant, as before: integrations
read and answer conversations with the least role there is, and giving them nothing would
push them to supervisor keys, which can do far more.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics import sentiment
from hilos.channels.kinds import ChannelKind
from hilos.conversations import receipts, service
from hilos.conversations.models import Conversation
from hilos.conversations.schemas import (
    ChannelRef,
    ConversationOut,
    ConversationPage,
    ConversationUpdate,
    InboundMessage,
    InboundResult,
    MessageOut,
    MessagePage,
    ReceiptIn,
    ReplyIn,
    SentimentOut,
    SlaOut,
)
from hilos.core.auth import Principal
from hilos.core.clock import now
from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.core.errors import NotFound
from hilos.core.tenancy import TenantContext
from hilos.routing import service as routing
from hilos.routing import sla

router = APIRouter(prefix="/v1", tags=["conversations"])


def _agent_viewer(principal: Principal) -> str | None:
    """The user id of a caller who sees only their own conversations (an agent acting as
    themselves); ``None`` for a caller who sees the whole tenant's."""
    if principal.at_least("supervisor") or principal.user_id is None:
        return None
    return principal.user_id


async def _visible_conversation(
    session: AsyncSession, principal: Principal, conversation_id: str
) -> Conversation:
    conversation = await service.get_conversation(session, principal.tenant, conversation_id)
    viewer = _agent_viewer(principal)
    if viewer is not None and not await routing.can_see_conversation(
        session, principal.tenant, conversation=conversation, user_id=viewer
    ):
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


@router.post("/messages/inbound", response_model=InboundResult)
async def receive(
    body: InboundMessage, request: Request, principal: CurrentPrincipal
) -> InboundResult:
    """The hot path of every channel. It owns its transaction rather than taking ``DbSession``:
    on PostgreSQL the commonest messages are stored by one statement on a bare connection, and
    only the rest open a session for the reference path."""
    state = request.app.state
    message: dict[str, Any] = {
        "channel_id": body.channel_id,
        "external_id": body.external_id,
        "sender_kind": body.sender.kind,
        "sender_value": body.sender.value,
        "sender_name": body.sender.name,
        "text": body.text,
        "attachments": [a.model_dump(exclude_none=True) for a in body.attachments],
        "sent_at": body.sent_at or now(),
    }
    received = await service.receive_committed(
        state.engine, state.sessionmaker, principal.tenant, wakeup=state.outbox_wakeup, **message
    )
    return InboundResult(
        message_id=received.message_id,
        conversation_id=received.conversation_id,
        customer_id=received.customer_id,
        duplicate=received.duplicate,
    )


async def conversation_views(
    session: AsyncSession, tenant: TenantContext, conversations: list[Conversation]
) -> list[ConversationOut]:
    kinds = await service.channel_kinds_for(session, tenant, conversations)
    slas = await sla.sla_states(session, tenant, [c.id for c in conversations])
    queues = await routing.queues_for(session, tenant, [c.id for c in conversations])
    moods = await sentiment.latest_of(session, tenant, [c.id for c in conversations])
    return [
        ConversationOut(
            id=c.id,
            customer_id=c.customer_id,
            status=c.status,
            snoozed_until=c.snoozed_until,
            assignee_id=c.assignee_id,
            channels=[ChannelRef(id=ch, kind=kinds.get(ch)) for ch in c.channel_ids],
            last_channel_id=c.last_channel_id,
            created_at=c.created_at,
            updated_at=c.updated_at,
            last_message_at=c.last_message_at,
            resolved_at=c.resolved_at,
            merged_into_id=c.merged_into_id,
            assignee=c.assignee_id,
            queue=queues.get(c.id),
            sla=SlaOut.model_validate(slas[c.id]),
            sentiment=(
                SentimentOut(score=moods[c.id], label=sentiment.label_of(moods[c.id]))
                if c.id in moods
                else None
            ),
        )
        for c in conversations
    ]


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    session: DbSession,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query(pattern="^(open|pending|snoozed|resolved|merged)$")] = None,
    assignee_id: Annotated[
        str | None, Query(max_length=32, description="a user id, or 'none'")
    ] = None,
    channel_kind: ChannelKind | None = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConversationPage:
    viewer = _agent_viewer(principal)
    rows, next_cursor = await service.list_conversations(
        session,
        principal.tenant,
        status=status,
        assignee_id=None if assignee_id == "none" else assignee_id,
        unassigned=assignee_id == "none",
        channel_kind=channel_kind,
        customer_id=customer_id,
        cursor=cursor,
        limit=limit,
        where=[await routing.visible_to(session, principal.tenant, viewer)] if viewer else [],
    )
    return ConversationPage(
        items=await conversation_views(session, principal.tenant, list(rows)),
        next_cursor=next_cursor,
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: str, session: DbSession, principal: CurrentPrincipal
) -> ConversationOut:
    conversation = await _visible_conversation(session, principal, conversation_id)
    return (await conversation_views(session, principal.tenant, [conversation]))[0]


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
async def update_conversation(
    conversation_id: str,
    body: ConversationUpdate,
    session: DbSession,
    principal: CurrentPrincipal,
) -> ConversationOut:
    await _visible_conversation(session, principal, conversation_id)
    conversation = await service.update_conversation(
        session,
        principal.tenant,
        conversation_id=conversation_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return (await conversation_views(session, principal.tenant, [conversation]))[0]


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage)
async def list_messages(
    conversation_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> MessagePage:
    await _visible_conversation(session, principal, conversation_id)
    rows, next_cursor = await service.messages_of(
        session, principal.tenant, conversation_id, after=cursor, limit=limit
    )
    return MessagePage(items=[MessageOut.model_validate(m) for m in rows], next_cursor=next_cursor)


@router.post(
    "/conversations/{conversation_id}/messages", response_model=MessageOut, status_code=201
)
async def reply(
    conversation_id: str, body: ReplyIn, session: DbSession, principal: CurrentPrincipal
) -> object:
    await _visible_conversation(session, principal, conversation_id)
    return await service.reply(
        session,
        principal.tenant,
        conversation_id=conversation_id,
        text=body.text,
        attachments=[a.model_dump(exclude_none=True) for a in body.attachments],
        private=body.private,
        channel_id=body.channel_id,
        author_user_id=body.author_user_id,
        template=body.template.model_dump() if body.template else None,
    )


@router.post("/messages/{message_id}/receipts", response_model=MessageOut)
async def report_receipt(
    message_id: str, body: ReceiptIn, session: DbSession, principal: CurrentPrincipal
) -> object:
    """A delivery receipt from an integrator that delivers replies itself (``api`` channels,
    or a provider Hilos has no adapter for)."""
    return await receipts.receipt_for_message(
        session,
        principal.tenant,
        message_id=message_id,
        status=body.status,
        occurred_at=body.occurred_at or now(),
        error=body.error,
    )

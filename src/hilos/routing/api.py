"""HTTP API of routing: queues and members, agents and presence, offers, transfers, and each
conversation's routing log.

Supervisors and admins manage queues and agents and see everything of their tenant. An agent
(a principal with a user id and the agent role) sees the queues they belong to, their own
offers, and the routing of conversations in their queues or offered or assigned to them;
anything else answers 404, as another tenant's ids do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations import service as conversations
from hilos.core.auth import Principal
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import Forbidden, NotFound
from hilos.core.models import User
from hilos.core.tenancy import TenantContext
from hilos.routing import engine, service
from hilos.routing.models import RoutingAgent, RoutingQueue
from hilos.routing.schemas import (
    AgentCreate,
    AgentCreated,
    AgentLoadOut,
    AgentOut,
    AgentUpdate,
    DecisionOut,
    MemberIn,
    OfferOut,
    PresenceIn,
    QueueCreate,
    QueueMemberOut,
    QueueOut,
    QueueStats,
    QueueUpdate,
    RingOut,
    RoutingSettingsOut,
    RoutingSettingsUpdate,
    TransferIn,
    TransferOut,
    as_levels,
)

router = APIRouter(prefix="/v1", tags=["routing"])


def _agent_view(principal: Principal) -> str | None:
    """``None`` for a caller who sees the whole tenant; else the agent's user id. An agent-role
    key that is no one's (an integration's) reads the tenant's queues, as it reads its
    conversations (``conversations.api``), and manages nothing."""
    if principal.at_least("supervisor") or principal.user_id is None:
        return None
    return principal.user_id


def _acting_agent(principal: Principal) -> str | None:
    """Whose offers and presence the caller may change: ``None`` for supervisors and admins
    (anyone's), an agent's own user id, and nobody's for a key that is no one's."""
    if principal.at_least("supervisor"):
        return None
    if principal.user_id is None:
        raise Forbidden("this key acts for no agent: use a supervisor key or an agent's own key")
    return principal.user_id


def _queue_out(row: RoutingQueue, members: Sequence[str]) -> QueueOut:
    skills = {str(k): int(v) for k, v in row.skills.items()}
    return QueueOut(
        id=row.id,
        name=row.name,
        skills=sorted(skills),
        skill_levels=skills,
        channel_kinds=list(row.channel_kinds),
        priority=row.priority,
        offer_timeout_seconds=row.offer_timeout_seconds,
        auto_assign=row.auto_assign,
        rings=[
            RingOut(
                after_seconds=ring["after_seconds"],
                skills=sorted(ring["skills"]),
                skill_levels=ring["skills"],
            )
            for ring in row.rings
        ],
        overflow_queue_id=row.overflow_queue_id,
        overflow_after_seconds=row.overflow_after_seconds,
        secondary_after_seconds=row.secondary_after_seconds,
        members=list(members),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _queue_view(session: AsyncSession, tenant: TenantContext, row: RoutingQueue) -> QueueOut:
    members = await service.members_of(session, tenant, [row.id])
    return _queue_out(row, members[row.id])


async def _visible_queue(
    session: AsyncSession, principal: Principal, queue_id: str
) -> RoutingQueue:
    row = await service.get_queue(session, principal.tenant, queue_id)
    viewer = _agent_view(principal)
    if viewer is not None and row.id not in await service.agent_queue_ids(
        session, principal.tenant, viewer
    ):
        raise NotFound(f"queue {queue_id} not found")
    return row


async def _agents_out(
    session: AsyncSession, tenant: TenantContext, agent_ids: Sequence[str] | None = None
) -> list[AgentOut]:
    agents = await service.list_agents(session, tenant, agent_ids=agent_ids)
    loads = await service.loads_of(session, tenant)
    queues = await service.queues_of_agents(session, tenant, agents)
    return [
        _agent_out(agent, user, loads.get(agent.id, {}), queues[agent.id]) for agent, user in agents
    ]


def _agent_out(
    agent: RoutingAgent, user: User, load: dict[str, int], queue_ids: list[str]
) -> AgentOut:
    return AgentOut(
        id=agent.id,
        email=user.email,
        name=user.name,
        role=user.role,
        skills=agent.skills,
        secondary_skills=agent.secondary_skills,
        capacity=agent.capacity,
        presence=agent.presence,
        presence_at=agent.presence_at,
        load=load,
        queue_ids=queue_ids,
    )


async def _one_agent(session: AsyncSession, tenant: TenantContext, agent_id: str) -> AgentOut:
    await service.get_agent(session, tenant, agent_id)
    return (await _agents_out(session, tenant, [agent_id]))[0]


# --- queues ----------------------------------------------------------------------------------


@router.post("/queues", response_model=QueueOut, status_code=201)
async def create_queue(
    body: QueueCreate, session: DbSession, principal: SupervisorPrincipal
) -> QueueOut:
    fields = body.model_dump()
    fields["skills"] = as_levels(body.skills)
    fields["rings"] = [
        {"after_seconds": ring.after_seconds, "skills": as_levels(ring.skills)}
        for ring in body.rings
    ]
    row = await service.create_queue(session, principal.tenant, fields=fields)
    return _queue_out(row, [])


@router.get("/queues", response_model=list[QueueOut])
async def list_queues(session: DbSession, principal: CurrentPrincipal) -> list[QueueOut]:
    rows = await service.list_queues(session, principal.tenant, visible_to=_agent_view(principal))
    members = await service.members_of(session, principal.tenant, [row.id for row in rows])
    return [_queue_out(row, members[row.id]) for row in rows]


@router.get("/queues/{queue_id}", response_model=QueueOut)
async def get_queue(queue_id: str, session: DbSession, principal: CurrentPrincipal) -> QueueOut:
    row = await _visible_queue(session, principal, queue_id)
    return await _queue_view(session, principal.tenant, row)


@router.patch("/queues/{queue_id}", response_model=QueueOut)
async def update_queue(
    queue_id: str, body: QueueUpdate, session: DbSession, principal: SupervisorPrincipal
) -> QueueOut:
    changes = body.model_dump(exclude_unset=True)
    if body.skills is not None:
        changes["skills"] = as_levels(body.skills)
    if body.rings is not None:
        changes["rings"] = [
            {"after_seconds": ring.after_seconds, "skills": as_levels(ring.skills)}
            for ring in body.rings
        ]
    row = await service.update_queue(session, principal.tenant, queue_id=queue_id, changes=changes)
    return await _queue_view(session, principal.tenant, row)


@router.get("/queues/{queue_id}/members", response_model=list[QueueMemberOut])
async def list_members(
    queue_id: str, session: DbSession, principal: CurrentPrincipal
) -> list[QueueMemberOut]:
    """Everyone who serves the queue: added by hand, or by their (primary or secondary)
    skills."""
    row = await _visible_queue(session, principal, queue_id)
    agents = await service.list_agents(session, principal.tenant)
    members = set((await service.members_of(session, principal.tenant, [row.id]))[row.id])
    queue = service.engine_queue(row, members)
    state = engine.RoutingState(
        queues=[queue], agents=[service.engine_agent(agent, user.name) for agent, user in agents]
    )
    result = []
    for agent, user in agents:
        candidate = state.agents[agent.id]
        if agent.id in members:
            how = "member"
        elif engine.meets(candidate.skills, queue.skills):
            how = "skills"
        elif state.belongs(candidate, queue):
            how = "secondary"
        else:
            continue
        result.append(
            QueueMemberOut(agent_id=agent.id, name=user.name, how=how, presence=agent.presence)
        )
    return result


@router.post("/queues/{queue_id}/members", response_model=QueueOut, status_code=201)
async def add_member(
    queue_id: str, body: MemberIn, session: DbSession, principal: SupervisorPrincipal
) -> QueueOut:
    row = await service.add_member(
        session, principal.tenant, queue_id=queue_id, agent_id=body.agent_id
    )
    return await _queue_view(session, principal.tenant, row)


@router.delete("/queues/{queue_id}/members/{agent_id}", response_model=QueueOut)
async def remove_member(
    queue_id: str, agent_id: str, session: DbSession, principal: SupervisorPrincipal
) -> QueueOut:
    row = await service.remove_member(
        session, principal.tenant, queue_id=queue_id, agent_id=agent_id
    )
    return await _queue_view(session, principal.tenant, row)


@router.get("/queues/{queue_id}/stats", response_model=QueueStats)
async def queue_stats(queue_id: str, session: DbSession, principal: CurrentPrincipal) -> QueueStats:
    row = await _visible_queue(session, principal, queue_id)
    stats = await service.queue_stats(session, principal.tenant, row.id)
    return QueueStats(
        queue_id=row.id,
        waiting=stats.waiting,
        offered=stats.offered,
        longest_wait_seconds=stats.longest_wait_seconds,
        agents_online=stats.agents_online,
        agents_available=stats.agents_available,
        agents=[
            AgentLoadOut(
                id=agent.id,
                name=agent.name,
                presence=presence,
                load={kind: n for kind, n in agent.load.items() if n},
                capacity=agent.capacity,
            )
            for agent, presence in stats.agents
        ],
    )


# --- agents ----------------------------------------------------------------------------------


@router.post("/agents", response_model=AgentCreated, status_code=201)
async def create_agent(
    body: AgentCreate, session: DbSession, principal: SupervisorPrincipal
) -> AgentCreated:
    agent, _user, password = await service.create_agent(
        session,
        principal.tenant,
        email=str(body.email) if body.email else None,
        name=body.name,
        user_id=body.user_id,
        password=body.password,
        locale=body.locale,
        skills=dict(body.skills),
        secondary_skills=dict(body.secondary_skills),
        capacity={str(kind): n for kind, n in body.capacity.items()},
    )
    view = await _one_agent(session, principal.tenant, agent.id)
    return AgentCreated(**view.model_dump(), password=password)


@router.get("/agents", response_model=list[AgentOut])
async def list_agents(
    session: DbSession,
    principal: CurrentPrincipal,
    presence: Annotated[Literal["online", "away", "offline"] | None, Query()] = None,
) -> list[AgentOut]:
    agents = await _agents_out(session, principal.tenant)
    return [a for a in agents if presence is None or a.presence == presence]


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: str, session: DbSession, principal: CurrentPrincipal) -> AgentOut:
    return await _one_agent(session, principal.tenant, agent_id)


@router.patch("/agents/{agent_id}", response_model=AgentOut)
async def update_agent(
    agent_id: str, body: AgentUpdate, session: DbSession, principal: SupervisorPrincipal
) -> AgentOut:
    await service.update_agent(
        session, principal.tenant, agent_id=agent_id, changes=body.model_dump(exclude_unset=True)
    )
    return await _one_agent(session, principal.tenant, agent_id)


@router.put("/agents/{agent_id}/presence", response_model=AgentOut)
async def set_presence(
    agent_id: str, body: PresenceIn, session: DbSession, principal: CurrentPrincipal
) -> AgentOut:
    """Online, away or offline. Coming online offers the agent the best waiting conversations
    at once; going away or offline hands their outstanding offers to others."""
    await service.get_agent(session, principal.tenant, agent_id)
    actor = _acting_agent(principal)
    if actor is not None and actor != agent_id:
        raise Forbidden("an agent can change only their own presence")
    await service.set_presence(session, principal.tenant, agent_id=agent_id, status=body.status)
    return await _one_agent(session, principal.tenant, agent_id)


# --- offers, transfers and the routing log ----------------------------------------------------


@router.get("/offers", response_model=list[OfferOut])
async def list_offers(
    session: DbSession,
    principal: CurrentPrincipal,
    agent_id: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[
        Literal["offered", "accepted", "rejected", "expired", "withdrawn"] | None, Query()
    ] = "offered",
) -> object:
    """Offers, newest first (outstanding ones unless ``status`` says otherwise); an agent sees
    only their own."""
    viewer = _agent_view(principal)
    if viewer is not None:
        agent_id = viewer
    return await service.list_offers(session, principal.tenant, agent_id=agent_id, status=status)


@router.post("/offers/{offer_id}/accept", response_model=OfferOut)
async def accept_offer(offer_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    """Take the conversation: it is assigned to the offer's agent."""
    return await service.accept_offer(
        session, principal.tenant, offer_id=offer_id, agent_id=_acting_agent(principal)
    )


@router.post("/offers/{offer_id}/reject", response_model=OfferOut)
async def reject_offer(offer_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    """Pass: the conversation is offered to the next agent at once."""
    return await service.reject_offer(
        session, principal.tenant, offer_id=offer_id, agent_id=_acting_agent(principal)
    )


@router.post("/conversations/{conversation_id}/transfer", response_model=TransferOut)
async def transfer(
    conversation_id: str, body: TransferIn, session: DbSession, principal: CurrentPrincipal
) -> TransferOut:
    """Assign the conversation to an agent, or put it in a queue's line, with a note."""
    conversation, note_id = await service.transfer(
        session,
        principal.tenant,
        conversation_id=conversation_id,
        agent_id=body.agent_id,
        queue_id=body.queue_id,
        note=body.note,
        by_user_id=principal.user_id,
        by_agent=not principal.at_least("supervisor"),
    )
    return TransferOut(
        conversation_id=conversation.id,
        assignee=conversation.assignee_id,
        queue=await service.queue_of(session, principal.tenant, conversation.id),
        note_message_id=note_id,
    )


@router.get("/conversations/{conversation_id}/routing", response_model=list[DecisionOut])
async def routing_log(
    conversation_id: str, session: DbSession, principal: CurrentPrincipal
) -> object:
    """Every routing decision on the conversation, oldest first, each with its reason."""
    conversation = await conversations.get_conversation(session, principal.tenant, conversation_id)
    viewer = _agent_view(principal)
    if viewer is not None and not await service.can_see_conversation(
        session, principal.tenant, conversation=conversation, user_id=viewer
    ):
        raise NotFound(f"conversation {conversation_id} not found")
    return await service.routing_log(session, principal.tenant, conversation_id)


@router.get("/routing/settings", response_model=RoutingSettingsOut)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.routing_settings(session, principal.tenant)


@router.patch("/routing/settings", response_model=RoutingSettingsOut)
async def update_settings(
    body: RoutingSettingsUpdate, session: DbSession, principal: SupervisorPrincipal
) -> object:
    return await service.update_routing_settings(
        session, principal.tenant, changes=body.model_dump(exclude_unset=True)
    )

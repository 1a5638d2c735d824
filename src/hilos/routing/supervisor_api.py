"""HTTP API of the supervisor view: ``GET /v1/supervisor/overview``, the figures the console's
supervisor page shows (thin: ``routing.supervisor`` computes them and says how).

Supervisor and admin keys only: an agent's key is refused with 403, since the figures name
every agent and every queue of the tenant. The response models live here: they are this
router's alone.
"""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hilos.core.deps import DbSession, SupervisorPrincipal
from hilos.routing import supervisor

router = APIRouter(prefix="/v1", tags=["supervisor"])


class QueueFiguresOut(BaseModel):
    id: str
    name: str
    channel_kinds: list[str]
    waiting: int = Field(description="conversations in line, with or without an offer out")
    offered: int = Field(description="of those, how many have an offer out")
    longest_wait_seconds: int
    agents_online: int = Field(description="online agents who belong to the queue")
    agents_available: int = Field(description="of those, how many have a free slot")
    load: int = Field(description="conversations its online agents hold in its channel kinds")
    capacity: int = Field(description="the slots its online agents have in its channel kinds")
    sla_attainment_today: float | None = Field(
        description="share (0–1) of the SLA targets due today that were met, among those "
        "decided; null when none is decided yet"
    )
    sla_targets_decided_today: int
    sla_targets_met_today: int


class AgentStateOut(BaseModel):
    id: str
    name: str
    email: str
    presence: str
    presence_at: datetime
    load: dict[str, int] = Field(description="conversations held, per channel kind")
    capacity: dict[str, int]
    idle_seconds: int | None = Field(
        description="seconds since they came online, were offered or finished a conversation; "
        "null unless online"
    )
    queue_ids: list[str]
    conversation_ids: list[str] = Field(description="open conversations assigned to them")


class OverviewOut(BaseModel):
    at: datetime
    day: date = Field(description="the tenant's calendar day the SLA figures count")
    sla_attainment_today: float | None
    sla_targets_decided_today: int
    sla_targets_met_today: int
    queues: list[QueueFiguresOut]
    agents: list[AgentStateOut]


@router.get("/supervisor/overview", response_model=OverviewOut)
async def overview(session: DbSession, principal: SupervisorPrincipal) -> OverviewOut:
    """Every queue's line and agents, every agent's state, and today's SLA attainment."""
    view = await supervisor.overview(session, principal.tenant, line_limit=0, in_progress_limit=0)
    return OverviewOut(
        at=view.at,
        day=view.day,
        sla_attainment_today=view.sla_today.attainment,
        sla_targets_decided_today=view.sla_today.decided,
        sla_targets_met_today=view.sla_today.met,
        queues=[
            QueueFiguresOut(
                id=queue.id,
                name=queue.name,
                channel_kinds=queue.channel_kinds,
                waiting=queue.waiting,
                offered=queue.offered,
                longest_wait_seconds=queue.longest_wait_seconds,
                agents_online=queue.agents_online,
                agents_available=queue.agents_available,
                load=queue.load,
                capacity=queue.capacity,
                sla_attainment_today=queue.sla_today.attainment,
                sla_targets_decided_today=queue.sla_today.decided,
                sla_targets_met_today=queue.sla_today.met,
            )
            for queue in view.queues
        ],
        agents=[
            AgentStateOut(
                id=agent.id,
                name=agent.name,
                email=agent.email,
                presence=agent.presence,
                presence_at=agent.presence_at,
                load=agent.load,
                capacity=agent.capacity,
                idle_seconds=agent.idle_seconds,
                queue_ids=agent.queue_ids,
                conversation_ids=agent.conversation_ids,
            )
            for agent in view.agents
        ],
    )

"""The supervisor's picture of a tenant's contact center at one moment: each queue's line and
the agents who serve it, every agent's state, and the SLA attainment of the day.

What it owns: the figures, not the data. It reads what routing and the SLA clocks keep
(``routing_conversations``, agents' profiles and load, ``conversation_slas``) and changes
nothing; reassigning goes through ``routing.service.transfer``.

The figures, and the rule behind each:

* **Waiting** (per queue): conversations in its line, with or without an outstanding offer
  (routing's states ``waiting`` and ``offered``), as ``GET /v1/queues/{id}/stats`` counts them.
  **Longest wait**: seconds since the oldest of them started waiting for a human.
* **Agents online** (per queue): online agents who belong to the queue (added by hand, or by
  their skills); **available**: those of them with a free slot in one of its channel kinds.
  **Load / capacity** (per queue): the conversations those online agents hold in the queue's
  channel kinds, against the slots they have there.
* **An agent's load**: routing's own measure (open conversations assigned to them by the kind
  of their last channel, plus outstanding offers), beside their capacity per channel kind.
  **Idle**: seconds since they last came online, were offered a conversation or finished one
  (the idle time longest-idle routing ranks by); none unless they are online.
* **SLA attainment today**: among the first-response and resolution targets due today (the
  tenant's calendar day, in its time zone) whose outcome is known, the share that was met. A
  target is met when the reply (or the resolution) came by its due moment; missed when it is
  past due without one (or the worker already fired its breach); a target due later today and
  still running is not counted yet. A queue counts the conversations routed through it; the
  tenant's figure counts every conversation. Left out: next-response targets (a clock keeps
  only the current one, and forgets it once answered, so the met ones cannot be counted),
  earlier cycles of a reopened conversation, and conversations merged away.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations.models import Conversation
from hilos.core.clock import as_utc
from hilos.core.clock import now as clock_now
from hilos.core.tenancy import TenantContext
from hilos.routing import engine
from hilos.routing import service as routing
from hilos.routing.models import RoutedConversation
from hilos.routing.sla_models import ConversationSla

_ROUTED = cast(Table, RoutedConversation.__table__)
IN_LINE = routing.IN_LINE


@dataclass(frozen=True, slots=True)
class SlaTally:
    """SLA targets due today whose outcome is known, and how many of them were met."""

    met: int = 0
    decided: int = 0

    @property
    def attainment(self) -> float | None:
        """The share met (0–1), or ``None`` when nothing due today is decided yet."""
        return round(self.met / self.decided, 4) if self.decided else None

    def add(self, met: bool) -> SlaTally:
        return SlaTally(met=self.met + int(met), decided=self.decided + 1)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    id: str
    name: str
    channel_kinds: list[str]
    waiting: int
    offered: int
    longest_wait_seconds: int
    agents_online: int
    agents_available: int
    load: int
    capacity: int
    sla_today: SlaTally


@dataclass(frozen=True, slots=True)
class AgentState:
    id: str
    name: str
    email: str
    presence: str
    presence_at: datetime
    load: dict[str, int]
    capacity: dict[str, int]
    idle_seconds: int | None
    queue_ids: list[str]
    # Open conversations assigned to them, most recent activity first.
    conversation_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InLine:
    """A conversation waiting in a queue's line."""

    conversation_id: str
    customer_id: str
    queue_id: str | None
    offered_to: str | None
    waiting_seconds: int


@dataclass(frozen=True, slots=True)
class InProgress:
    """An open conversation an agent holds."""

    conversation_id: str
    customer_id: str
    agent_id: str
    queue_id: str | None
    last_message_at: datetime


@dataclass(frozen=True, slots=True)
class Overview:
    at: datetime
    day: date
    queues: list[QueueFigures]
    agents: list[AgentState]
    sla_today: SlaTally
    # The longest-waiting conversations first, at most ``line_limit``.
    line: list[InLine]
    # The most recently active first, at most ``in_progress_limit``.
    in_progress: list[InProgress]


def day_bounds(moment: datetime, timezone: str) -> tuple[date, datetime, datetime]:
    """The tenant's calendar day holding ``moment``, and its start and end in UTC (a day of
    23 or 25 hours when the clocks change)."""
    zone = ZoneInfo(timezone)
    day = moment.astimezone(zone).date()
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return day, start, end


def target_outcome(
    *, due: datetime, done_at: datetime | None, breached: bool, reference: datetime
) -> bool | None:
    """Whether a target was met (True), missed (False), or is still open (None).

    ``done_at``: the reply (or resolution) that meets it, if any. ``reference``: the moment its
    clock stands at — now, or when it was paused or closed (a paused clock does not run out).
    """
    if done_at is not None and done_at <= due and not breached:
        return True
    if breached or due <= reference:
        return False
    return None


async def sla_today(
    session: AsyncSession, tenant: TenantContext, moment: datetime
) -> tuple[SlaTally, dict[str, SlaTally]]:
    """The tenant's SLA tally of the day holding ``moment``, and each queue's."""
    _day, start, end = day_bounds(moment, tenant.timezone)
    sla = ConversationSla
    rows = await session.execute(
        select(
            sla.first_response_due_at,
            sla.first_responded_at,
            sla.first_response_breached,
            sla.resolution_due_at,
            sla.resolution_breached,
            sla.closed_at,
            sla.paused_at,
            _ROUTED.c.queue_id,
        )
        .join(Conversation, Conversation.id == sla.conversation_id)
        .outerjoin(_ROUTED, _ROUTED.c.conversation_id == sla.conversation_id)
        .where(
            sla.tenant_id == tenant.id,
            Conversation.status != "merged",
            or_(
                and_(sla.first_response_due_at >= start, sla.first_response_due_at < end),
                and_(sla.resolution_due_at >= start, sla.resolution_due_at < end),
            ),
        )
    )
    total = SlaTally()
    by_queue: dict[str, SlaTally] = defaultdict(SlaTally)
    for row in rows.all():
        closed_at = as_utc(row.closed_at) if row.closed_at else None
        paused_at = as_utc(row.paused_at) if row.paused_at else None
        reference = closed_at or paused_at or moment
        targets = (
            (row.first_response_due_at, row.first_responded_at, row.first_response_breached),
            (row.resolution_due_at, closed_at, row.resolution_breached),
        )
        for due, done_at, breached in targets:
            if due is None or not start <= as_utc(due) < end:
                continue
            met = target_outcome(
                due=as_utc(due),
                done_at=as_utc(done_at) if done_at else None,
                breached=bool(breached),
                reference=reference,
            )
            if met is None:
                continue
            total = total.add(met)
            if row.queue_id is not None:
                by_queue[row.queue_id] = by_queue[row.queue_id].add(met)
    return total, dict(by_queue)


def _idle_seconds(agent: engine.Agent, moment: datetime) -> int | None:
    if not agent.online:
        return None
    return max(0, int(moment.timestamp() - agent.idle_since))


async def overview(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    line_limit: int = 50,
    in_progress_limit: int = 100,
) -> Overview:
    """Every figure of the supervisor view, read in a fixed number of queries."""
    moment = clock_now()
    day, _start, _end = day_bounds(moment, tenant.timezone)
    queue_rows = await routing.list_queues(session, tenant)
    members = await routing.members_of(session, tenant, [row.id for row in queue_rows])
    agent_rows = await routing.list_agents(session, tenant)
    loads = await routing.loads_of(session, tenant)
    state = engine.RoutingState(
        queues=[routing.engine_queue(row, members[row.id]) for row in queue_rows],
        agents=[
            routing.engine_agent(agent, user.name, loads.get(agent.id))
            for agent, user in agent_rows
        ],
    )

    lines: dict[str, dict[str, Any]] = defaultdict(lambda: {"waiting": 0, "offered": 0})
    grouped = await session.execute(
        select(
            _ROUTED.c.queue_id,
            _ROUTED.c.state,
            func.count(),
            func.min(_ROUTED.c.waiting_since),
        )
        .where(_ROUTED.c.tenant_id == tenant.id, _ROUTED.c.state.in_(IN_LINE))
        .group_by(_ROUTED.c.queue_id, _ROUTED.c.state)
    )
    for queue_id, line_state, count, oldest in grouped.all():
        line = lines[queue_id]
        line["waiting"] += count
        if line_state == "offered":
            line["offered"] += count
        if oldest is not None:
            since = as_utc(oldest)
            line["oldest"] = min(line.get("oldest", since), since)

    sla_total, sla_by_queue = await sla_today(session, tenant, moment)

    queues = []
    for row in queue_rows:
        queue = state.queues[row.id]
        online = [a for a in state.agents.values() if a.online and state.belongs(a, queue)]
        kinds = sorted(queue.channel_kinds)
        line = lines.get(row.id, {})
        oldest = line.get("oldest")
        queues.append(
            QueueFigures(
                id=row.id,
                name=row.name,
                channel_kinds=kinds,
                waiting=int(line.get("waiting", 0)),
                offered=int(line.get("offered", 0)),
                longest_wait_seconds=(
                    max(0, int((moment - oldest).total_seconds())) if oldest else 0
                ),
                agents_online=len(online),
                agents_available=sum(1 for a in online if any(a.free(kind) > 0 for kind in kinds)),
                load=sum(a.load.get(kind, 0) for a in online for kind in kinds),
                capacity=sum(a.capacity.get(kind, 0) for a in online for kind in kinds),
                sla_today=sla_by_queue.get(row.id, SlaTally()),
            )
        )

    held = await _in_progress(session, tenant, limit=None)
    held_by_agent: dict[str, list[str]] = defaultdict(list)
    for conversation_id, _customer_id, agent_id, _last in held:
        held_by_agent[agent_id].append(conversation_id)
    agents = []
    for agent_row, user in agent_rows:
        candidate = state.agents[agent_row.id]
        agents.append(
            AgentState(
                id=agent_row.id,
                name=user.name,
                email=user.email,
                presence=agent_row.presence,
                presence_at=as_utc(agent_row.presence_at),
                load={kind: n for kind, n in sorted(candidate.load.items()) if n},
                capacity=dict(sorted(candidate.capacity.items())),
                idle_seconds=_idle_seconds(candidate, moment),
                queue_ids=[q.id for q in state.queues.values() if state.belongs(candidate, q)],
                conversation_ids=held_by_agent.get(agent_row.id, []),
            )
        )

    line_entries = await _line(session, tenant, moment, limit=line_limit) if line_limit else []
    queue_of = await routing.queues_for(session, tenant, [c[0] for c in held[:in_progress_limit]])
    return Overview(
        at=moment,
        day=day,
        queues=queues,
        agents=agents,
        sla_today=sla_total,
        line=line_entries,
        in_progress=[
            InProgress(
                conversation_id=conversation_id,
                customer_id=customer_id,
                agent_id=agent_id,
                queue_id=queue_of.get(conversation_id),
                last_message_at=last,
            )
            for conversation_id, customer_id, agent_id, last in held[:in_progress_limit]
        ],
    )


async def _line(
    session: AsyncSession, tenant: TenantContext, moment: datetime, *, limit: int
) -> list[InLine]:
    """The conversations in line in any queue, the longest waiting first."""
    rows = await session.execute(
        select(
            _ROUTED.c.conversation_id,
            Conversation.customer_id,
            _ROUTED.c.queue_id,
            _ROUTED.c.state,
            _ROUTED.c.agent_id,
            _ROUTED.c.waiting_since,
        )
        .join(Conversation, Conversation.id == _ROUTED.c.conversation_id)
        .where(_ROUTED.c.tenant_id == tenant.id, _ROUTED.c.state.in_(IN_LINE))
        .order_by(_ROUTED.c.waiting_since, _ROUTED.c.conversation_id)
        .limit(limit)
    )
    return [
        InLine(
            conversation_id=row.conversation_id,
            customer_id=row.customer_id,
            queue_id=row.queue_id,
            offered_to=row.agent_id if row.state == "offered" else None,
            waiting_seconds=max(0, int((moment - as_utc(row.waiting_since)).total_seconds())),
        )
        for row in rows.all()
    ]


async def _in_progress(
    session: AsyncSession, tenant: TenantContext, *, limit: int | None
) -> list[tuple[str, str, str, datetime]]:
    """Open conversations assigned to someone: (id, customer, assignee, last activity)."""
    statement = (
        select(
            Conversation.id,
            Conversation.customer_id,
            Conversation.assignee_id,
            Conversation.last_message_at,
        )
        .where(
            Conversation.tenant_id == tenant.id,
            Conversation.status == "open",
            Conversation.assignee_id.is_not(None),
        )
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [
        (row.id, row.customer_id, str(row.assignee_id), as_utc(row.last_message_at))
        for row in (await session.execute(statement)).all()
    ]


def options_for_transfer(
    view: Overview, *, exclude_agent: str | None = None
) -> tuple[list[AgentState], list[QueueFigures]]:
    """Where a supervisor can move a conversation: every agent but its holder (online ones
    first), and every queue."""
    agents = sorted(
        (agent for agent in view.agents if agent.id != exclude_agent),
        key=lambda agent: (agent.presence != "online", agent.name.lower(), agent.id),
    )
    return agents, list(view.queues)

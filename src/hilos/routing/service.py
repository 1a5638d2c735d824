"""Routing: queues, agents and presence, and the rounds that offer conversations to agents.

What it owns: queues (with rings, overflow and the secondary-skills delay) and their members,
agents' profiles (skills, capacity per channel kind, presence), the conversations being routed
(``routing_conversations``, whose ``due_at`` is a durable timer), offers and the routing log.
The decisions themselves are ``routing.engine``'s: this module loads a tenant's state into a
``RoutingState``, asks it, and stores what it decided with the reason it gave.

When routing runs:

- **A conversation needs a human** (``message.received`` with a new or reopened
  conversation). Not through a hook in ``conversations.receive``: the inbound path is the hot
  path (on PostgreSQL one statement that no Python hook sees). Not through a bus listener
  either: the in-process bus calls listeners inside the relay's transaction, where SQLite has
  no second connection to route with, and what a listener kept in memory would be lost in a
  crash after the relay marked the events published. Routing is an outbox consumer
  (``core.outbox.register_consumer``), like the SLA clocks: ``consume`` runs in the relay's
  transaction and only writes durable marks — an ``arrived`` row due now, or an agent's
  ``freed_at`` — and ``run_due``, the worker's call right after the relay, does the routing in
  a transaction per tenant. Other domains (the assistant handing off) call
  ``request_routing``.
- **An agent frees capacity or comes online**: a conversation resolved, set pending or snoozed
  (``conversation.<status>``, through the same consumer) frees its assignee's slot; presence
  set to online, new members, and transfers route in the request itself, so the offer exists
  when it answers.
- **Timers**: arrivals, an offer not answered in the queue's ``offer_timeout_seconds``, a ring,
  the secondary delay, overflow, an agent's pass running out: ``due_at`` on the routed row. The
  worker claims due rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a restart finds them
  where they were.

Every routing transaction takes a per-tenant advisory lock first (PostgreSQL; SQLite's write
lock already serialises everything), so two processes never route one tenant's conversations
from different pictures of the same agents' load.

Load: an agent's load in a channel kind is their open conversations assigned to them whose
last channel is of that kind, plus their outstanding offers. Pending and snoozed conversations
wait on the customer and take no slot.

Visibility: supervisors and admins see every queue of the tenant; an agent (a principal with a
user id) sees the queues they belong to, and the conversations in them or offered or assigned
to them. An agent-role API key that is no one's sees no queue.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

import structlog
from babel.localedata import locale_identifiers
from sqlalchemy import ColumnElement, Table, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import sentiment
from hilos.channels.service import channel_kind as channel_kind_of
from hilos.channels.service import kinds_of
from hilos.conversations import service as conversations
from hilos.conversations.models import ACTIVE_STATUSES, Conversation
from hilos.core import metrics
from hilos.core import service as core
from hilos.core.clock import as_utc
from hilos.core.clock import now as clock_now
from hilos.core.db import one_of
from hilos.core.errors import Conflict, Forbidden, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.metrics import on_commit
from hilos.core.models import OutboxEvent, User
from hilos.core.outbox import emit, register_consumer
from hilos.core.tenancy import TenantContext, get_owned, load_tenant, tenant_scope
from hilos.customers import service as customers
from hilos.routing import engine, sla
from hilos.routing.models import (
    DEFAULT_AGEING_SECONDS,
    DEFAULT_NEGATIVE_SENTIMENT_POINTS,
    DEFAULT_STICKY_WINDOW_SECONDS,
    DEFAULT_TIER_PRIORITIES,
    QueueMember,
    RoutedConversation,
    RoutingAgent,
    RoutingDecision,
    RoutingOffer,
    RoutingQueue,
    RoutingSettings,
)

log = structlog.get_logger(__name__)

_ROUTED = cast(Table, RoutedConversation.__table__)
_DECISIONS = cast(Table, RoutingDecision.__table__)
_OFFERS = cast(Table, RoutingOffer.__table__)
IN_LINE = ("waiting", "offered")
# A pass that never runs out (the agent who transferred a conversation away).
FOREVER = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
PRESENCES = ("online", "away", "offline")
# A conversation whose latest customer message scores at or below this (``analytics.sentiment``:
# a complaint, anger; "no funciona" is -0.54, "¡Es una vergüenza!" -0.67) gets the tenant's
# ``negative_sentiment_points``.
UPSET_AT = -0.4


@cache
def language_codes() -> frozenset[str]:
    """Skill names that are languages (``es``, ``en``, ``pt``...), from CLDR through Babel."""
    return frozenset(identifier.split("_")[0] for identifier in locale_identifiers())


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _lock_tenant(session: AsyncSession, tenant: TenantContext) -> None:
    """One routing transaction per tenant at a time (PostgreSQL advisory lock)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(
        hashlib.blake2b(f"routing|{tenant.id}".encode(), digest_size=8).digest(), "big", signed=True
    )
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


# --- settings --------------------------------------------------------------------------------


async def routing_settings(session: AsyncSession, tenant: TenantContext) -> RoutingSettings:
    """The tenant's routing settings (the defaults until someone changes them)."""
    row = await session.get(RoutingSettings, tenant.id)
    if row is None:
        row = RoutingSettings(
            tenant_id=tenant.id,
            sticky_window_seconds=DEFAULT_STICKY_WINDOW_SECONDS,
            ageing_seconds_per_priority=DEFAULT_AGEING_SECONDS,
            tier_priorities=dict(DEFAULT_TIER_PRIORITIES),
            negative_sentiment_points=DEFAULT_NEGATIVE_SENTIMENT_POINTS,
            updated_at=clock_now(),
        )
    return row


async def update_routing_settings(
    session: AsyncSession, tenant: TenantContext, *, changes: dict[str, Any]
) -> RoutingSettings:
    row = await routing_settings(session, tenant)
    for name, value in changes.items():
        if value is not None:
            setattr(row, name, value)
    row.updated_at = clock_now()
    session.add(row)
    await session.flush()
    return row


# --- queues ----------------------------------------------------------------------------------


def _rings_of(rings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"after_seconds": int(ring["after_seconds"]), "skills": dict(ring["skills"])}
        for ring in rings
    ]


async def _check_overflow(
    session: AsyncSession, tenant: TenantContext, *, queue_id: str | None, target_id: str | None
) -> None:
    """The overflow queue exists, and following overflows never comes back to ``queue_id``."""
    if target_id is None:
        return
    seen = {queue_id} if queue_id else set()
    current: str | None = target_id
    first = True
    while current is not None:
        if current in seen:
            raise Invalid(
                "overflow_queue_id would send conversations round in a circle",
                field="overflow_queue_id",
            )
        seen.add(current)
        row = (
            await session.execute(
                tenant_scope(
                    select(RoutingQueue.overflow_queue_id).where(RoutingQueue.id == current),
                    RoutingQueue,
                    tenant,
                )
            )
        ).first()
        if row is None:
            if first:
                raise NotFound(f"queue {current} not found", details={"field": "overflow_queue_id"})
            break
        first = False
        current = row[0]


async def create_queue(
    session: AsyncSession, tenant: TenantContext, *, fields: dict[str, Any]
) -> RoutingQueue:
    await _check_overflow(session, tenant, queue_id=None, target_id=fields.get("overflow_queue_id"))
    moment = clock_now()
    queue = RoutingQueue(
        id=new_id(),
        tenant_id=tenant.id,
        name=fields["name"],
        skills=fields["skills"],
        channel_kinds=list(fields["channel_kinds"]),
        priority=fields.get("priority", 0),
        offer_timeout_seconds=fields.get("offer_timeout_seconds", 30),
        auto_assign=fields.get("auto_assign", True),
        rings=_rings_of(fields.get("rings", [])),
        overflow_queue_id=fields.get("overflow_queue_id"),
        overflow_after_seconds=fields.get("overflow_after_seconds"),
        secondary_after_seconds=fields.get("secondary_after_seconds"),
        created_at=moment,
        updated_at=moment,
    )
    try:
        async with session.begin_nested():
            session.add(queue)
    except IntegrityError as error:
        raise Conflict(
            f"a queue named {fields['name']!r} already exists", code="queue_exists"
        ) from error
    return queue


async def get_queue(
    session: AsyncSession, tenant: TenantContext, queue_id: str, *, field: str | None = None
) -> RoutingQueue:
    """The tenant's queue; ``NotFound`` (naming ``field`` when the id came in a body)."""
    row = await session.get(RoutingQueue, queue_id)
    if row is None or row.tenant_id != tenant.id:
        raise NotFound(f"queue {queue_id} not found", details={"field": field} if field else None)
    return row


async def update_queue(
    session: AsyncSession, tenant: TenantContext, *, queue_id: str, changes: dict[str, Any]
) -> RoutingQueue:
    queue = await get_queue(session, tenant, queue_id)
    overflow_id = changes.get("overflow_queue_id", queue.overflow_queue_id)
    overflow_after = changes.get("overflow_after_seconds", queue.overflow_after_seconds)
    if (overflow_id is None) != (overflow_after is None):
        raise Invalid(
            "overflow_queue_id and overflow_after_seconds go together",
            field="overflow_after_seconds" if overflow_id else "overflow_queue_id",
        )
    if "overflow_queue_id" in changes:
        await _check_overflow(session, tenant, queue_id=queue.id, target_id=overflow_id)
    for name, value in changes.items():
        setattr(queue, name, _rings_of(value) if name == "rings" else value)
    queue.updated_at = clock_now()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise Conflict(
            f"a queue named {changes.get('name')!r} already exists", code="queue_exists"
        ) from error
    return queue


async def list_queues(
    session: AsyncSession, tenant: TenantContext, *, visible_to: str | None = None
) -> list[RoutingQueue]:
    """The tenant's queues; with ``visible_to`` (a user id) only those the agent belongs to."""
    rows = list(
        (
            await session.execute(
                tenant_scope(select(RoutingQueue).order_by(RoutingQueue.id), RoutingQueue, tenant)
            )
        ).scalars()
    )
    if visible_to is None:
        return rows
    mine = await agent_queue_ids(session, tenant, visible_to)
    return [row for row in rows if row.id in mine]


async def members_of(
    session: AsyncSession, tenant: TenantContext, queue_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Agents added by hand to each queue."""
    members: dict[str, list[str]] = {queue_id: [] for queue_id in queue_ids}
    if not queue_ids:
        return members
    rows = await session.execute(
        select(QueueMember.queue_id, QueueMember.agent_id)
        .where(QueueMember.tenant_id == tenant.id, QueueMember.queue_id.in_(list(queue_ids)))
        .order_by(QueueMember.created_at, QueueMember.agent_id)
    )
    for queue_id, agent_id in rows.all():
        members[queue_id].append(agent_id)
    return members


async def add_member(
    session: AsyncSession, tenant: TenantContext, *, queue_id: str, agent_id: str
) -> RoutingQueue:
    await _lock_tenant(session, tenant)
    queue = await get_queue(session, tenant, queue_id)
    await get_agent(session, tenant, agent_id, field="agent_id")
    if await session.get(QueueMember, (queue_id, agent_id)) is None:
        session.add(
            QueueMember(
                queue_id=queue_id, agent_id=agent_id, tenant_id=tenant.id, created_at=clock_now()
            )
        )
        await session.flush()
        # A new member who is online with room may take what waits there now.
        round_ = await Round.open(session, tenant)
        await round_.dispatch_agents([agent_id])
        await round_.save()
    return queue


async def remove_member(
    session: AsyncSession, tenant: TenantContext, *, queue_id: str, agent_id: str
) -> RoutingQueue:
    queue = await get_queue(session, tenant, queue_id)
    member = await session.get(QueueMember, (queue_id, agent_id))
    if member is None or member.tenant_id != tenant.id:
        raise NotFound(f"agent {agent_id} is not a member of queue {queue_id}")
    await session.delete(member)
    await session.flush()
    return queue


def engine_queue(row: RoutingQueue, members: Iterable[str] = ()) -> engine.Queue:
    return engine.Queue(
        id=row.id,
        name=row.name,
        channel_kinds=frozenset(row.channel_kinds),
        skills={str(k): int(v) for k, v in row.skills.items()},
        priority=row.priority,
        offer_timeout=float(row.offer_timeout_seconds),
        rings=tuple(
            engine.Ring(
                after=float(ring["after_seconds"]),
                skills={str(k): int(v) for k, v in ring["skills"].items()},
            )
            for ring in row.rings
        ),
        overflow_queue_id=row.overflow_queue_id,
        overflow_after=(
            float(row.overflow_after_seconds) if row.overflow_after_seconds is not None else None
        ),
        secondary_after=(
            float(row.secondary_after_seconds) if row.secondary_after_seconds is not None else None
        ),
        members=frozenset(members),
    )


# --- agents ----------------------------------------------------------------------------------


def with_default_capacity(capacity: Mapping[str, int]) -> dict[str, int]:
    return {**engine.DEFAULT_CAPACITY, **capacity}


async def create_agent(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    email: str | None,
    name: str | None,
    user_id: str | None,
    password: str | None,
    locale: str | None,
    skills: dict[str, int],
    secondary_skills: dict[str, int],
    capacity: dict[str, int],
) -> tuple[RoutingAgent, User, str | None]:
    """A new agent user (role agent), or an existing user given an agent profile.

    Returns the profile, the user and the generated initial password (``None`` when the
    caller chose one, or the user existed).
    """
    generated = None
    if user_id is not None:
        user = await get_owned(session, User, user_id, tenant, what="user")
        if await session.get(RoutingAgent, user.id) is not None:
            raise Conflict(f"user {user_id} is already an agent", code="agent_exists")
    else:
        # The schema requires both without a user_id.
        assert email is not None
        assert name is not None
        if password is None:
            generated = password = secrets.token_urlsafe(12)
        user = await core.create_user(
            session,
            tenant=tenant,
            email=email,
            name=name,
            role="agent",
            password=password,
            locale=locale,
        )
    moment = clock_now()
    agent = RoutingAgent(
        id=user.id,
        tenant_id=tenant.id,
        skills=skills,
        secondary_skills=secondary_skills,
        capacity=with_default_capacity(capacity),
        presence="offline",
        presence_at=moment,
        idle_since=moment,
        created_at=moment,
    )
    session.add(agent)
    await session.flush()
    return agent, user, generated


async def get_agent(
    session: AsyncSession, tenant: TenantContext, agent_id: str, *, field: str | None = None
) -> RoutingAgent:
    agent = await session.get(RoutingAgent, agent_id)
    if agent is None or agent.tenant_id != tenant.id:
        raise NotFound(f"agent {agent_id} not found", details={"field": field} if field else None)
    return agent


async def update_agent(
    session: AsyncSession, tenant: TenantContext, *, agent_id: str, changes: dict[str, Any]
) -> RoutingAgent:
    await _lock_tenant(session, tenant)
    agent = await get_agent(session, tenant, agent_id)
    if changes.get("skills") is not None:
        agent.skills = changes["skills"]
    if changes.get("secondary_skills") is not None:
        agent.secondary_skills = changes["secondary_skills"]
    if changes.get("capacity") is not None:
        agent.capacity = {**agent.capacity, **changes["capacity"]}
    await session.flush()
    if agent.presence == "online":
        # More skills or capacity may open the door to what waits.
        round_ = await Round.open(session, tenant)
        await round_.dispatch_agents([agent.id])
        await round_.save()
    return agent


async def list_agents(
    session: AsyncSession, tenant: TenantContext, *, agent_ids: Sequence[str] | None = None
) -> list[tuple[RoutingAgent, User]]:
    statement = (
        select(RoutingAgent, User)
        .join(User, User.id == RoutingAgent.id)
        .where(RoutingAgent.tenant_id == tenant.id)
        .order_by(User.name, User.id)
    )
    if agent_ids is not None:
        statement = statement.where(RoutingAgent.id.in_(list(agent_ids)))
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def loads_of(session: AsyncSession, tenant: TenantContext) -> dict[str, dict[str, int]]:
    """Every agent's load per channel kind: open conversations assigned to them (by the kind of
    their last channel) and outstanding offers. Two grouped queries, whatever the size."""
    assigned = (
        await session.execute(
            select(Conversation.assignee_id, Conversation.last_channel_id, func.count())
            .where(
                Conversation.tenant_id == tenant.id,
                Conversation.status == "open",
                Conversation.assignee_id.is_not(None),
            )
            .group_by(Conversation.assignee_id, Conversation.last_channel_id)
        )
    ).all()
    kinds = await kinds_of(session, tenant, sorted({row[1] for row in assigned if row[1]}))
    loads: dict[str, dict[str, int]] = defaultdict(dict)
    for agent_id, channel_id, count in assigned:
        kind = kinds.get(channel_id or "")
        if kind is not None and agent_id is not None:
            loads[agent_id][kind] = loads[agent_id].get(kind, 0) + count
    offered = await session.execute(
        select(_ROUTED.c.agent_id, _ROUTED.c.channel_kind, func.count())
        .where(_ROUTED.c.tenant_id == tenant.id, _ROUTED.c.state == "offered")
        .group_by(_ROUTED.c.agent_id, _ROUTED.c.channel_kind)
    )
    for agent_id, kind, count in offered.all():
        loads[agent_id][kind] = loads[agent_id].get(kind, 0) + count
    return dict(loads)


def engine_agent(
    row: RoutingAgent, name: str, load: Mapping[str, int] | None = None
) -> engine.Agent:
    return engine.Agent(
        id=row.id,
        name=name,
        skills={str(k): int(v) for k, v in row.skills.items()},
        secondary_skills={str(k): int(v) for k, v in row.secondary_skills.items()},
        capacity={str(k): int(v) for k, v in row.capacity.items()},
        load=dict(load or {}),
        idle_since=_ts(row.idle_since),
        online=row.presence == "online",
    )


async def _queue_state(
    session: AsyncSession, tenant: TenantContext, agents: Iterable[engine.Agent]
) -> engine.RoutingState:
    rows = list(
        (
            await session.execute(
                tenant_scope(select(RoutingQueue).order_by(RoutingQueue.id), RoutingQueue, tenant)
            )
        ).scalars()
    )
    members = await members_of(session, tenant, [row.id for row in rows])
    return engine.RoutingState(
        queues=[engine_queue(row, members[row.id]) for row in rows], agents=agents
    )


async def queues_of_agents(
    session: AsyncSession, tenant: TenantContext, agents: Sequence[tuple[RoutingAgent, User]]
) -> dict[str, list[str]]:
    """The queues each agent belongs to (by hand or by skills)."""
    state = await _queue_state(
        session, tenant, [engine_agent(agent, user.name) for agent, user in agents]
    )
    return {
        agent.id: [q.id for q in state.queues.values() if state.belongs(state.agents[agent.id], q)]
        for agent, _ in agents
    }


async def agent_queue_ids(session: AsyncSession, tenant: TenantContext, user_id: str) -> set[str]:
    """The queues an agent belongs to; none for a user who is not an agent."""
    agent = await session.get(RoutingAgent, user_id)
    if agent is None or agent.tenant_id != tenant.id:
        return set()
    state = await _queue_state(session, tenant, [engine_agent(agent, "")])
    return {q.id for q in state.queues.values() if state.belongs(state.agents[agent.id], q)}


async def set_presence(
    session: AsyncSession, tenant: TenantContext, *, agent_id: str, status: str
) -> RoutingAgent:
    """Change an agent's presence. Coming online offers them the best waiting conversations at
    once; going away or offline takes back their outstanding offers and offers them to others."""
    await _lock_tenant(session, tenant)
    agent = await get_agent(session, tenant, agent_id)
    previous = agent.presence
    if status == previous:
        return agent
    moment = clock_now()
    agent.presence, agent.presence_at = status, moment
    if status == "online":
        agent.idle_since = moment
    await session.flush()
    await emit(
        session,
        tenant_id=tenant.id,
        topic="agent.presence",
        payload={"agent_id": agent.id, "status": status, "previous": previous},
    )
    round_ = await Round.open(session, tenant, now=moment)
    if status == "online":
        await round_.dispatch_agents([agent.id])
    else:
        outstanding = await round_.load(agent_offers=agent.id)
        for conversation_id in outstanding:
            await round_.take_back(
                conversation_id,
                action="withdrawn",
                reason=f"{await round_.agent_name(agent.id)} went {status}",
                pass_for=None,
            )
        await round_.dispatch_conversations(outstanding)
    await round_.save()
    return agent


# --- the routing round -----------------------------------------------------------------------


@dataclass
class Round:
    """One tenant's routing work in one transaction: the state loaded from the database, the
    engine's decisions on it, and the writes that store them."""

    session: AsyncSession
    tenant: TenantContext
    now: datetime
    settings: RoutingSettings
    state: engine.RoutingState
    # Conversation id → its outstanding offer, and when that offer lapses.
    offer_ids: dict[str, str] = field(default_factory=dict)
    offer_expiry: dict[str, datetime] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    all_loaded: bool = False

    @classmethod
    async def open(
        cls, session: AsyncSession, tenant: TenantContext, *, now: datetime | None = None
    ) -> Round:
        await _lock_tenant(session, tenant)
        moment = now or clock_now()
        settings = await routing_settings(session, tenant)
        agents = (
            await session.execute(
                select(RoutingAgent, User.name)
                .join(User, User.id == RoutingAgent.id)
                .where(
                    RoutingAgent.tenant_id == tenant.id,
                    RoutingAgent.presence == "online",
                    User.deactivated_at.is_(None),
                )
            )
        ).all()
        loads = await loads_of(session, tenant) if agents else {}
        state = await _queue_state(
            session, tenant, [engine_agent(row, name, loads.get(row.id)) for row, name in agents]
        )
        return cls(session=session, tenant=tenant, now=moment, settings=settings, state=state)

    @property
    def at(self) -> float:
        return _ts(self.now)

    async def agent_name(self, agent_id: str) -> str:
        """The agent's name for the log (from the state, or the users table when offline)."""
        agent = self.state.agents.get(agent_id)
        if agent is not None and agent.name:
            return agent.name
        name = await self.session.scalar(select(User.name).where(User.id == agent_id))
        return str(name or agent_id)

    def queue_name(self, queue_id: str | None) -> str:
        queue = self.state.queues.get(queue_id or "")
        return queue.name if queue else str(queue_id)

    # --- loading ------------------------------------------------------------------------------

    async def load(
        self,
        *,
        conversation_ids: Sequence[str] | None = None,
        due: bool = False,
        agent_offers: str | None = None,
    ) -> list[str]:
        """Bring conversations in line into the state: the given ones, the due ones (claimed
        with SKIP LOCKED), those offered to one agent, or (no argument) all of the tenant's.
        Those a person assigned by hand, or that were resolved, leave routing here."""
        statement = (
            select(
                _ROUTED,
                Conversation.status.label("conversation_status"),
                Conversation.assignee_id.label("assignee_id"),
            )
            .join(Conversation, Conversation.id == _ROUTED.c.conversation_id)
            .where(_ROUTED.c.tenant_id == self.tenant.id, _ROUTED.c.state.in_(IN_LINE))
        )
        if conversation_ids is not None:
            statement = statement.where(_ROUTED.c.conversation_id.in_(list(conversation_ids)))
        if agent_offers is not None:
            statement = statement.where(
                _ROUTED.c.state == "offered", _ROUTED.c.agent_id == agent_offers
            )
        if due:
            statement = (
                statement.where(_ROUTED.c.due_at <= self.now).order_by(_ROUTED.c.due_at).limit(500)
            )
            if self.session.get_bind().dialect.name == "postgresql":
                statement = statement.with_for_update(of=_ROUTED, skip_locked=True)
        if conversation_ids is None and not due and agent_offers is None:
            if self.all_loaded:
                return list(self.state.waiting)
            self.all_loaded = True
        loaded = []
        for row in (await self.session.execute(statement)).all():
            if row.conversation_id in self.state.waiting:
                loaded.append(row.conversation_id)
                continue
            if row.conversation_status not in ACTIVE_STATUSES:
                await self._leave(row, "left", "the conversation was resolved while waiting")
                continue
            if row.assignee_id is not None:
                await self._leave(
                    row,
                    "assigned",
                    f"assigned by hand to {await self.agent_name(row.assignee_id)} while waiting",
                    state="assigned",
                    agent_id=row.assignee_id,
                )
                continue
            if row.queue_id not in self.state.queues:
                continue
            self.state.add(
                engine.Waiting(
                    conversation_id=row.conversation_id,
                    queue_id=row.queue_id,
                    channel_kind=row.channel_kind,
                    rank=_ts(row.rank_at),
                    queued_at=_ts(row.queued_at),
                    sticky_agent_id=row.sticky_agent_id,
                    passed={str(k): float(v) for k, v in (row.passed or {}).items()},
                    offered_to=row.agent_id if row.state == "offered" else None,
                )
            )
            if row.state == "offered" and row.offer_id:
                self.offer_ids[row.conversation_id] = row.offer_id
                if row.due_at is not None:
                    self.offer_expiry[row.conversation_id] = row.due_at
            loaded.append(row.conversation_id)
        return loaded

    async def _leave(
        self,
        row: Any,
        action: str,
        reason: str,
        *,
        state: str = "done",
        agent_id: str | None = None,
    ) -> None:
        if row.state == "offered" and row.offer_id:
            await self._close_offer(row.offer_id, "withdrawn")
        await self.session.execute(
            update(_ROUTED)
            .where(_ROUTED.c.conversation_id == row.conversation_id)
            .values(state=state, agent_id=agent_id, offer_id=None, due_at=None, updated_at=self.now)
        )
        await self.log(
            row.conversation_id, action, reason, queue_id=row.queue_id, agent_id=agent_id
        )

    # --- decisions ----------------------------------------------------------------------------

    async def dispatch_conversations(self, conversation_ids: Iterable[str]) -> None:
        """Offer each of these waiting conversations to one agent, best placed first."""
        waiting = [self.state.waiting[c] for c in conversation_ids if c in self.state.waiting]
        for item in sorted(waiting, key=lambda w: w.rank):
            self.touched.add(item.conversation_id)
            offer = self.state.choose_agent(item.conversation_id, now=self.at)
            if offer is not None:
                await self._store_offer(offer)

    async def dispatch_agents(self, agent_ids: Iterable[str]) -> None:
        """Offer each of these agents the best waiting conversations while they have room."""
        agents = [a for a in dict.fromkeys(agent_ids) if a in self.state.agents]
        if not agents:
            return
        await self.load()
        for agent_id in agents:
            while (offer := self.state.choose_conversation(agent_id, now=self.at)) is not None:
                self.touched.add(offer.conversation_id)
                await self._store_offer(offer)

    async def _store_offer(self, offer: engine.Offer) -> None:
        queue_row = await self.session.get(RoutingQueue, offer.queue_id)
        assert queue_row is not None
        details = {**offer.details, "rule": offer.rule}
        if queue_row.auto_assign:
            await self.log(
                offer.conversation_id,
                "assigned",
                offer.reason,
                queue_id=offer.queue_id,
                agent_id=offer.agent_id,
                details=details,
            )
            await self.assign(offer.conversation_id, offer.agent_id)
            return
        offer_id = new_id()
        expires = self.now + timedelta(seconds=queue_row.offer_timeout_seconds)
        await self.session.execute(
            insert(_OFFERS).values(
                id=offer_id,
                tenant_id=self.tenant.id,
                conversation_id=offer.conversation_id,
                queue_id=offer.queue_id,
                agent_id=offer.agent_id,
                status="offered",
                offered_at=self.now,
                expires_at=expires,
                answered_at=None,
            )
        )
        self.offer_ids[offer.conversation_id] = offer_id
        self.offer_expiry[offer.conversation_id] = expires
        await self.session.execute(
            update(RoutingAgent)
            .where(RoutingAgent.id == offer.agent_id)
            .values(idle_since=self.now)
        )
        await self.log(
            offer.conversation_id,
            "offered",
            offer.reason,
            queue_id=offer.queue_id,
            agent_id=offer.agent_id,
            details=details,
        )
        await emit(
            self.session,
            tenant_id=self.tenant.id,
            topic="conversation.offered",
            payload={
                "conversation_id": offer.conversation_id,
                "offer_id": offer_id,
                "agent_id": offer.agent_id,
                "queue_id": offer.queue_id,
                "expires_at": expires.isoformat(),
            },
        )

    async def assign(self, conversation_id: str, agent_id: str) -> None:
        """The conversation is the agent's: ``assignee_id`` set, out of line."""
        waiting = self.state.assign(conversation_id)
        self.touched.discard(conversation_id)
        self.offer_ids.pop(conversation_id, None)
        await conversations.update_conversation(
            self.session,
            self.tenant,
            conversation_id=conversation_id,
            changes={"assignee_id": agent_id},
        )
        waited_since = (
            await self.session.execute(
                update(_ROUTED)
                .where(_ROUTED.c.conversation_id == conversation_id)
                .values(
                    state="assigned",
                    agent_id=agent_id,
                    offer_id=None,
                    due_at=None,
                    updated_at=self.now,
                )
                .returning(_ROUTED.c.waiting_since)
            )
        ).scalar_one_or_none()
        await self.session.execute(
            update(RoutingAgent).where(RoutingAgent.id == agent_id).values(idle_since=self.now)
        )
        on_commit(self.session, metrics.ROUTING_ASSIGNMENTS.inc)
        if waiting is not None and waited_since is not None:
            # Only a conversation that stood in line waited; one moved agent to agent did not.
            waited = max((self.now - as_utc(waited_since)).total_seconds(), 0.0)
            wait_of_queue = metrics.ROUTING_WAIT.labels(waiting.queue_id)
            on_commit(self.session, lambda: wait_of_queue.observe(waited))
        await emit(
            self.session,
            tenant_id=self.tenant.id,
            topic="conversation.assigned",
            payload={
                "conversation_id": conversation_id,
                "agent_id": agent_id,
                "queue_id": waiting.queue_id if waiting else None,
            },
        )

    async def take_back(
        self, conversation_id: str, *, action: str, reason: str, pass_for: float | None
    ) -> None:
        """The outstanding offer ends unaccepted (rejected, expired, withdrawn); with
        ``pass_for`` seconds the agent is not offered it again before they run out."""
        waiting = self.state.waiting.get(conversation_id)
        if waiting is None or waiting.offered_to is None:
            return
        until = self.at + pass_for if pass_for is not None else None
        agent_id = self.state.release(conversation_id, now=self.at, pass_until=until)
        offer_id = self.offer_ids.pop(conversation_id, None)
        if offer_id is not None:
            await self._close_offer(offer_id, action)
        self.touched.add(conversation_id)
        await self.log(
            conversation_id, action, reason, queue_id=waiting.queue_id, agent_id=agent_id
        )

    async def _close_offer(self, offer_id: str, status: str) -> None:
        await self.session.execute(
            update(_OFFERS)
            .where(_OFFERS.c.id == offer_id, _OFFERS.c.status == "offered")
            .values(status=status, answered_at=self.now)
        )

    async def run_timers(self) -> int:
        """Lapsed offers go to the next agent; waits that crossed a ring, the secondary delay,
        an agent's pass or the overflow time are looked at again."""
        due = await self.load(due=True)
        for conversation_id in due:
            waiting = self.state.waiting[conversation_id]
            queue = self.state.queues[waiting.queue_id]
            if waiting.offered_to is not None:
                await self.take_back(
                    conversation_id,
                    action="expired",
                    reason=(
                        f"{await self.agent_name(waiting.offered_to)} did not answer within "
                        f"{queue.offer_timeout:.0f} s"
                    ),
                    pass_for=queue.offer_timeout,
                )
            target = self.state.overflow(conversation_id, now=self.at)
            if target is not None:
                await self.log(
                    conversation_id,
                    "overflowed",
                    f"waited {queue.overflow_after or 0:.0f} s in {queue.name}: moved to "
                    f"{target.name}",
                    queue_id=target.id,
                    details={"from_queue_id": queue.id},
                )
            self.touched.add(conversation_id)
        await self.dispatch_conversations(due)
        return len(due)

    # --- storing ------------------------------------------------------------------------------

    async def log(
        self,
        conversation_id: str,
        action: str,
        reason: str,
        *,
        queue_id: str | None = None,
        agent_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.session.execute(
            insert(_DECISIONS).values(
                id=new_id(),
                tenant_id=self.tenant.id,
                conversation_id=conversation_id,
                action=action,
                queue_id=queue_id,
                agent_id=agent_id,
                reason=reason,
                details=details or {},
                at=self.now,
            )
        )

    async def save(self) -> None:
        """Write back every conversation this round touched that is still in line."""
        for conversation_id in sorted(self.touched):
            waiting = self.state.waiting.get(conversation_id)
            if waiting is None:
                continue
            offered = waiting.offered_to is not None
            due: datetime | None
            if offered:
                queue = self.state.queues[waiting.queue_id]
                due = self.offer_expiry.get(conversation_id) or self.now + timedelta(
                    seconds=queue.offer_timeout
                )
            else:
                change = self.state.next_change(conversation_id, now=self.at)
                due = _at(change) if change is not None else None
            await self.session.execute(
                update(_ROUTED)
                .where(_ROUTED.c.conversation_id == conversation_id)
                .values(
                    state="offered" if offered else "waiting",
                    queue_id=waiting.queue_id,
                    queued_at=_at(waiting.queued_at),
                    passed=waiting.passed,
                    agent_id=waiting.offered_to,
                    offer_id=self.offer_ids.get(conversation_id) if offered else None,
                    due_at=due,
                    updated_at=self.now,
                )
            )
        self.touched.clear()

    # --- joining the line ---------------------------------------------------------------------

    async def enqueue(
        self,
        conversation_id: str,
        *,
        why: str,
        queue_id: str | None = None,
        passed: dict[str, float] | None = None,
        sticky: bool = True,
    ) -> bool:
        """Put a conversation in line (its queue chosen unless given) and try to offer it.

        Returns whether it joined a queue. A conversation already in line stays as it is; an
        ``arrived`` one that no queue serves (or no longer active) is settled as done.
        """
        existing = (
            await self.session.execute(
                select(_ROUTED.c.state).where(_ROUTED.c.conversation_id == conversation_id)
            )
        ).scalar_one_or_none()
        if existing in IN_LINE and queue_id is None:
            return False
        conversation = await conversations.get_conversation(
            self.session, self.tenant, conversation_id
        )
        if conversation.status not in ACTIVE_STATUSES or conversation.last_channel_id is None:
            await self._settle_arrival(conversation_id, existing)
            return False
        if why == "new conversation" and conversation.assignee_id is not None:
            # Someone took it by hand before routing got to it (or it was imported with its
            # agent): theirs it stays.
            await self.log(
                conversation_id,
                "kept",
                f"already assigned to {await self.agent_name(conversation.assignee_id)}",
                agent_id=conversation.assignee_id,
            )
            await self._settle_arrival(conversation_id, existing)
            return False
        kind = await channel_kind_of(self.session, self.tenant, conversation.last_channel_id)
        customer = await customers.get_customer(self.session, self.tenant, conversation.customer_id)
        language = _language(customer.language) or self.tenant.locale
        if queue_id is not None:
            queue: engine.Queue | None = self.state.queues[queue_id]
            reason = f"{why}: queue {self.queue_name(queue_id)}"
        else:
            queue, picked = engine.pick_queue(
                self.state.queues.values(),
                channel_kind=kind,
                language=language,
                languages=language_codes(),
            )
            reason = f"{why}; {picked}"
        if queue is None:
            if self.state.queues:
                await self.log(conversation_id, "unrouted", reason)
            await self._settle_arrival(conversation_id, existing)
            return False
        sticky_agent = None
        if sticky:
            sticky_agent = await self._last_agent(conversation.customer_id)
        points = _customer_points(customer.traits, self.settings.tier_priorities)
        mood = (await sentiment.latest_of(self.session, self.tenant, [conversation_id])).get(
            conversation_id
        )
        if mood is not None and mood <= UPSET_AT:
            points += self.settings.negative_sentiment_points
            reason += f"; upset customer (sentiment {mood:+.2f})"
        sla_due = await _sla_due(self.session, self.tenant, conversation_id)
        rank = engine.rank_of(
            waiting_since=self.at,
            priority=queue.priority + points,
            ageing_step=float(self.settings.ageing_seconds_per_priority),
            sla_due=_ts(sla_due) if sla_due else None,
        )
        if conversation.assignee_id is not None:
            # Reopened (or transferred to a queue): unassigned until someone accepts it, and
            # no longer in its agent's load.
            holder = self.state.agents.get(conversation.assignee_id)
            if holder is not None and conversation.status == "open":
                holder.load[kind] = max(0, holder.load.get(kind, 0) - 1)
            await conversations.update_conversation(
                self.session,
                self.tenant,
                conversation_id=conversation_id,
                changes={"assignee_id": None},
            )
        values = {
            "tenant_id": self.tenant.id,
            "queue_id": queue.id,
            "state": "waiting",
            "channel_kind": kind,
            "priority": queue.priority + points,
            "rank_at": _at(rank),
            "waiting_since": self.now,
            "queued_at": self.now,
            "sticky_agent_id": sticky_agent,
            "passed": passed or {},
            "agent_id": None,
            "offer_id": None,
            "due_at": None,
            "updated_at": self.now,
        }
        if existing is None:
            await self.session.execute(
                insert(_ROUTED).values(conversation_id=conversation_id, **values)
            )
        else:
            await self.session.execute(
                update(_ROUTED).where(_ROUTED.c.conversation_id == conversation_id).values(**values)
            )
        details: dict[str, Any] = {"channel_kind": kind, "language": language, "priority": points}
        if mood is not None:
            details["sentiment"] = mood
        if sticky_agent:
            reason += f"; last agent {sticky_agent}"
            details["sticky_agent_id"] = sticky_agent
        await self.log(conversation_id, "queued", reason, queue_id=queue.id, details=details)
        # The supervisor view's lines change here, whether or not an offer follows.
        await emit(
            self.session,
            tenant_id=self.tenant.id,
            topic="conversation.queued",
            payload={"conversation_id": conversation_id, "queue_id": queue.id},
        )
        self.state.add(
            engine.Waiting(
                conversation_id=conversation_id,
                queue_id=queue.id,
                channel_kind=kind,
                rank=rank,
                queued_at=self.at,
                sticky_agent_id=sticky_agent,
                passed=dict(passed or {}),
            )
        )
        self.touched.add(conversation_id)
        return True

    async def _settle_arrival(self, conversation_id: str, existing: str | None) -> None:
        if existing == "arrived":
            await self.session.execute(
                update(_ROUTED)
                .where(_ROUTED.c.conversation_id == conversation_id)
                .values(state="done", due_at=None, updated_at=self.now)
            )

    async def explain_waits(self, conversation_ids: Iterable[str]) -> None:
        for conversation_id in conversation_ids:
            waiting = self.state.waiting.get(conversation_id)
            if waiting is not None and waiting.offered_to is None:
                await self.log(
                    conversation_id,
                    "waiting",
                    self.state.explain_wait(conversation_id, now=self.at),
                    queue_id=waiting.queue_id,
                )

    async def _last_agent(self, customer_id: str) -> str | None:
        """The agent of the customer's latest conversation within the sticky window."""
        since = self.now - timedelta(seconds=self.settings.sticky_window_seconds)
        return cast(
            str | None,
            await self.session.scalar(
                select(Conversation.assignee_id)
                .where(
                    Conversation.tenant_id == self.tenant.id,
                    Conversation.customer_id == customer_id,
                    Conversation.assignee_id.is_not(None),
                    Conversation.last_message_at >= since,
                )
                .order_by(Conversation.last_message_at.desc())
                .limit(1)
            ),
        )


def _language(value: str | None) -> str | None:
    if not value:
        return None
    return value.replace("_", "-").split("-")[0].lower() or None


def _customer_points(traits: Mapping[str, Any], tiers: Mapping[str, Any]) -> int:
    """Priority points of a customer: a numeric ``priority`` trait (0–10), else their ``tier``."""
    value = traits.get("priority")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0, min(10, int(value)))
    tier = traits.get("tier")
    if isinstance(tier, str):
        return int(tiers.get(tier.strip().lower(), 0))
    return 0


async def _sla_due(
    session: AsyncSession, tenant: TenantContext, conversation_id: str
) -> datetime | None:
    """When the response the conversation waits for falls due under its SLA, if one applies."""
    view = (await sla.sla_states(session, tenant, [conversation_id]))[conversation_id]
    dues = [view.next_response_due_at]
    if view.first_responded_at is None:
        dues.append(view.first_response_due_at)
    known = [due for due in dues if due is not None]
    return min(known) if known else None


# --- requests from other domains and from people ---------------------------------------------


async def request_routing(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation_id: str,
    why: str = "needs a human",
) -> str | None:
    """Route a conversation that needs a human (the assistant handing off, for example);
    return the queue it joined, or ``None`` when no queue serves it."""
    round_ = await Round.open(session, tenant)
    if not await round_.enqueue(conversation_id, why=why):
        return None
    await round_.dispatch_conversations([conversation_id])
    await round_.explain_waits([conversation_id])
    await round_.save()
    return await queue_of(session, tenant, conversation_id)


async def get_offer(
    session: AsyncSession, tenant: TenantContext, offer_id: str, *, agent_id: str | None
) -> RoutingOffer:
    offer = await get_owned(session, RoutingOffer, offer_id, tenant, what="offer")
    if agent_id is not None and offer.agent_id != agent_id:
        raise NotFound(f"offer {offer_id} not found")
    return offer


async def list_offers(
    session: AsyncSession, tenant: TenantContext, *, agent_id: str | None, status: str | None
) -> Sequence[RoutingOffer]:
    statement = tenant_scope(select(RoutingOffer), RoutingOffer, tenant)
    if agent_id is not None:
        statement = statement.where(RoutingOffer.agent_id == agent_id)
    if status is not None:
        statement = statement.where(RoutingOffer.status == status)
    statement = statement.order_by(RoutingOffer.id.desc()).limit(200)
    return (await session.execute(statement)).scalars().all()


def _open_offer(offer: RoutingOffer, moment: datetime) -> None:
    if offer.status != "offered":
        raise Conflict(f"offer {offer.id} was already {offer.status}", code=f"offer_{offer.status}")
    if offer.expires_at <= moment:
        raise Conflict(f"offer {offer.id} expired at {offer.expires_at}", code="offer_expired")


async def accept_offer(
    session: AsyncSession, tenant: TenantContext, *, offer_id: str, agent_id: str | None
) -> RoutingOffer:
    """The agent takes the conversation: it is assigned to them."""
    await _lock_tenant(session, tenant)
    offer = await get_offer(session, tenant, offer_id, agent_id=agent_id)
    moment = clock_now()
    _open_offer(offer, moment)
    round_ = await Round.open(session, tenant, now=moment)
    await round_.load(conversation_ids=[offer.conversation_id])
    if offer.conversation_id not in round_.state.waiting:
        raise Conflict(
            f"conversation {offer.conversation_id} no longer waits for an agent",
            code="offer_withdrawn",
        )
    offer.status, offer.answered_at = "accepted", moment
    await session.flush()
    waited = (moment - offer.offered_at).total_seconds()
    await round_.log(
        offer.conversation_id,
        "accepted",
        f"{await round_.agent_name(offer.agent_id)} accepted after {waited:.0f} s",
        queue_id=offer.queue_id,
        agent_id=offer.agent_id,
    )
    await round_.assign(offer.conversation_id, offer.agent_id)
    await round_.save()
    return offer


async def reject_offer(
    session: AsyncSession, tenant: TenantContext, *, offer_id: str, agent_id: str | None
) -> RoutingOffer:
    """The agent passes: the conversation goes to the next agent at once, and comes back to
    this one only after one offer timeout if nobody else takes it."""
    await _lock_tenant(session, tenant)
    offer = await get_offer(session, tenant, offer_id, agent_id=agent_id)
    moment = clock_now()
    _open_offer(offer, moment)
    round_ = await Round.open(session, tenant, now=moment)
    await round_.load(conversation_ids=[offer.conversation_id])
    queue = round_.state.queues.get(offer.queue_id or "")
    await round_.take_back(
        offer.conversation_id,
        action="rejected",
        reason=f"{await round_.agent_name(offer.agent_id)} rejected it",
        pass_for=queue.offer_timeout if queue else 30.0,
    )
    await session.refresh(offer)
    await round_.dispatch_conversations([offer.conversation_id])
    await round_.save()
    return offer


async def transfer(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation_id: str,
    agent_id: str | None,
    queue_id: str | None,
    note: str,
    by_user_id: str | None,
    by_agent: bool,
) -> tuple[Conversation, str | None]:
    """Hand a conversation to an agent (assigned at once) or to a queue (in line there, never
    offered back to the agent who let it go), with a note in the thread; the previous
    assignee's freed slot is offered on at once. Returns the conversation and the note's id.

    ``by_agent``: the caller is an agent, who may transfer only what is assigned to them.
    """
    await _lock_tenant(session, tenant)
    conversation = await conversations.get_conversation(session, tenant, conversation_id)
    if by_agent and (by_user_id is None or conversation.assignee_id != by_user_id):
        raise Forbidden("an agent can transfer only a conversation assigned to them")
    if conversation.status not in ACTIVE_STATUSES:
        raise Conflict(
            f"conversation {conversation_id} is {conversation.status}: nothing to transfer",
            code="conversation_not_active",
        )
    if agent_id is not None:
        target_agent = await get_agent(session, tenant, agent_id, field="agent_id")
        target_user = await session.get(User, target_agent.id)
        target = f"agent {target_user.name if target_user else agent_id}"
    else:
        assert queue_id is not None
        target = f"queue {(await get_queue(session, tenant, queue_id, field='queue_id')).name}"
    by = "a supervisor" if by_user_id is None else by_user_id
    if by_user_id is not None:
        by_user = await session.get(User, by_user_id)
        by = by_user.name if by_user else by_user_id
    note_id = None
    if note:
        message = await conversations.reply(
            session,
            tenant,
            conversation_id=conversation_id,
            text=note,
            attachments=[],
            private=True,
            channel_id=None,
            author_user_id=by_user_id,
        )
        note_id = message.id
    previous = conversation.assignee_id
    round_ = await Round.open(session, tenant)
    await round_.load(conversation_ids=[conversation_id])
    if conversation_id in round_.state.waiting:
        await round_.take_back(
            conversation_id, action="withdrawn", reason=f"transferred to {target}", pass_for=None
        )
    reason = f"transferred to {target} by {by}" + (f": {note}" if note else "")
    details = {"note": note, "by_user_id": by_user_id, "previous_assignee_id": previous}
    if agent_id is not None:
        existing = await session.get(RoutedConversation, conversation_id)
        if existing is None:
            kind = await _conversation_kind(session, tenant, conversation)
            await session.execute(
                insert(_ROUTED).values(
                    conversation_id=conversation_id,
                    tenant_id=tenant.id,
                    queue_id=None,
                    state="assigned",
                    channel_kind=kind,
                    priority=0,
                    rank_at=round_.now,
                    waiting_since=round_.now,
                    queued_at=round_.now,
                    sticky_agent_id=None,
                    passed={},
                    agent_id=agent_id,
                    offer_id=None,
                    due_at=None,
                    updated_at=round_.now,
                )
            )
        queue_now = existing.queue_id if existing else None
        await round_.log(
            conversation_id,
            "transferred",
            reason,
            queue_id=queue_now,
            agent_id=agent_id,
            details=details,
        )
        await round_.assign(conversation_id, agent_id)
    else:
        assert queue_id is not None
        passed = {previous: FOREVER} if previous else {}
        round_.state.remove(conversation_id)
        await round_.log(conversation_id, "transferred", reason, queue_id=queue_id, details=details)
        await round_.enqueue(
            conversation_id, why="transferred", queue_id=queue_id, passed=passed, sticky=False
        )
        await round_.dispatch_conversations([conversation_id])
        await round_.explain_waits([conversation_id])
    if previous is not None and previous != agent_id:
        await round_.dispatch_agents([previous])
    await round_.save()
    await session.refresh(conversation)
    return conversation, note_id


async def _conversation_kind(
    session: AsyncSession, tenant: TenantContext, conversation: Conversation
) -> str:
    if conversation.last_channel_id is None:
        return "api"
    return await channel_kind_of(session, tenant, conversation.last_channel_id)


# --- reading ---------------------------------------------------------------------------------


async def queue_of(
    session: AsyncSession, tenant: TenantContext, conversation_id: str
) -> str | None:
    return (await queues_for(session, tenant, [conversation_id])).get(conversation_id)


async def queues_for(
    session: AsyncSession, tenant: TenantContext, conversation_ids: Sequence[str]
) -> dict[str, str | None]:
    """The queue each conversation is in (or was last routed through)."""
    if not conversation_ids:
        return {}
    rows = await session.execute(
        select(_ROUTED.c.conversation_id, _ROUTED.c.queue_id).where(
            _ROUTED.c.tenant_id == tenant.id,
            _ROUTED.c.conversation_id.in_(list(conversation_ids)),
        )
    )
    return {row[0]: row[1] for row in rows.all()}


async def routing_log(
    session: AsyncSession, tenant: TenantContext, conversation_id: str
) -> Sequence[RoutingDecision]:
    statement = tenant_scope(
        select(RoutingDecision)
        .where(RoutingDecision.conversation_id == conversation_id)
        .order_by(RoutingDecision.id),
        RoutingDecision,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


async def can_see_conversation(
    session: AsyncSession, tenant: TenantContext, *, conversation: Conversation, user_id: str
) -> bool:
    """An agent sees a conversation assigned or offered to them, or in a queue they belong to."""
    if conversation.assignee_id == user_id:
        return True
    routed = await session.get(RoutedConversation, conversation.id)
    if routed is None:
        return False
    if routed.agent_id == user_id:
        return True
    return routed.queue_id is not None and routed.queue_id in await agent_queue_ids(
        session, tenant, user_id
    )


async def visible_to(
    session: AsyncSession, tenant: TenantContext, user_id: str
) -> ColumnElement[bool]:
    """``can_see_conversation`` as one SQL condition on ``Conversation``, for lists: assigned
    or offered to the agent, or routed through a queue they belong to."""
    queue_ids = sorted(await agent_queue_ids(session, tenant, user_id))
    routed = select(_ROUTED.c.conversation_id).where(
        _ROUTED.c.tenant_id == tenant.id,
        or_(_ROUTED.c.agent_id == user_id, _ROUTED.c.queue_id.in_(queue_ids)),
    )
    return or_(Conversation.assignee_id == user_id, Conversation.id.in_(routed))


def in_queues(tenant: TenantContext, queue_ids: Iterable[str]) -> ColumnElement[bool]:
    """A condition on ``Conversation``: routed through one of ``queue_ids``."""
    return Conversation.id.in_(
        select(_ROUTED.c.conversation_id).where(
            _ROUTED.c.tenant_id == tenant.id, _ROUTED.c.queue_id.in_(sorted(queue_ids))
        )
    )


@dataclass(frozen=True, slots=True)
class Stats:
    waiting: int
    offered: int
    longest_wait_seconds: int
    agents_online: int
    agents_available: int
    agents: list[tuple[engine.Agent, str]]


async def queue_stats(session: AsyncSession, tenant: TenantContext, queue_id: str) -> Stats:
    queue_row = await get_queue(session, tenant, queue_id)
    moment = clock_now()
    counts: dict[str, int] = dict(
        (
            await session.execute(
                select(_ROUTED.c.state, func.count())
                .where(_ROUTED.c.queue_id == queue_row.id, _ROUTED.c.state.in_(IN_LINE))
                .group_by(_ROUTED.c.state)
            )
        ).all()
    )
    oldest = await session.scalar(
        select(func.min(_ROUTED.c.waiting_since)).where(
            _ROUTED.c.queue_id == queue_row.id, _ROUTED.c.state.in_(IN_LINE)
        )
    )
    agents = await list_agents(session, tenant)
    loads = await loads_of(session, tenant)
    state = await _queue_state(
        session,
        tenant,
        [engine_agent(agent, user.name, loads.get(agent.id)) for agent, user in agents],
    )
    queue = state.queues[queue_row.id]
    presence = {agent.id: agent.presence for agent, _ in agents}
    members = [a for a in state.agents.values() if state.belongs(a, queue)]
    online = [a for a in members if a.online]
    available = [a for a in online if any(a.free(kind) > 0 for kind in queue.channel_kinds)]
    longest = 0
    if oldest is not None:
        longest = max(0, int((moment - as_utc(oldest)).total_seconds()))
    return Stats(
        waiting=int(sum(counts.values())),
        offered=int(counts.get("offered", 0)),
        longest_wait_seconds=longest,
        agents_online=len(online),
        agents_available=len(available),
        agents=[(agent, presence[agent.id]) for agent in members],
    )


# --- the worker's part -----------------------------------------------------------------------

FREEING = ("conversation.resolved", "conversation.pending", "conversation.snoozed")

# Who may take a new conversation before the queues do: the virtual assistant answers first
# on its channels and hands the conversation to routing (``request_routing``) when a person
# is needed. A hold gets the relay's ``message.received`` events of new and reopened
# conversations and answers the conversation ids it takes; routing leaves those alone.
ArrivalHold = Callable[[AsyncSession, Sequence[OutboxEvent]], Awaitable[set[str]]]
_ARRIVAL_HOLDS: dict[str, ArrivalHold] = {}


def register_arrival_hold(name: str, hold: ArrivalHold) -> None:
    _ARRIVAL_HOLDS[name] = hold


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The relay's consumer: note durably what routing must do, in the relay's transaction.

    A new or reopened conversation gets an ``arrived`` row due now; the assignee of a
    conversation that was resolved, set pending or snoozed gets ``freed_at``. ``run_due``
    does the routing itself, in transactions of its own, right after the relay.
    """
    arrived: dict[str, OutboxEvent] = {}
    changed: dict[str, OutboxEvent] = {}
    for event in events:
        conversation_id = event.payload.get("conversation_id")
        if not isinstance(conversation_id, str):
            continue
        if event.topic == "message.received":
            if event.payload.get("conversation") in ("new", "reopened"):
                arrived[conversation_id] = event
        elif event.topic == "conversation.requested":
            # The business asked for an agent (a journey's step): routed like a new one,
            # unless an agent already has it.
            if event.payload.get("conversation") == "new":
                arrived[conversation_id] = event
        elif event.topic in FREEING:
            changed[conversation_id] = event
    moment = clock_now()
    dialect = session.get_bind().dialect.name
    if arrived and _ARRIVAL_HOLDS:
        received = [e for e in arrived.values() if e.topic == "message.received"]
        for hold in _ARRIVAL_HOLDS.values():
            for conversation_id in await hold(session, received):
                arrived.pop(conversation_id, None)
    if arrived:
        existing = dict(
            (
                await session.execute(
                    select(_ROUTED.c.conversation_id, _ROUTED.c.state).where(
                        one_of(dialect, _ROUTED.c.conversation_id, sorted(arrived))
                    )
                )
            ).all()
        )
        for conversation_id, event in arrived.items():
            if existing.get(conversation_id) in IN_LINE:
                continue
            values = {
                "state": "arrived",
                "cause": f"{event.payload['conversation']} conversation",
                "due_at": as_utc(event.created_at),
                "updated_at": moment,
            }
            if conversation_id in existing:
                await session.execute(
                    update(_ROUTED)
                    .where(_ROUTED.c.conversation_id == conversation_id)
                    .values(**values)
                )
            else:
                await session.execute(
                    insert(_ROUTED).values(
                        conversation_id=conversation_id, tenant_id=event.tenant_id, **values
                    )
                )
    if changed:
        rows = (
            await session.execute(
                select(Conversation.id, Conversation.status, Conversation.assignee_id).where(
                    one_of(dialect, Conversation.id, sorted(changed))
                )
            )
        ).all()
        for row in rows:
            if row.assignee_id is not None and row.status != "open":
                at = as_utc(changed[row.id].created_at)
                await session.execute(
                    update(RoutingAgent)
                    .where(RoutingAgent.id == row.assignee_id)
                    .values(freed_at=at, idle_since=at)
                )
            if row.status == "resolved":
                await _settle_resolved(session, row.id, changed[row.id].tenant_id, moment)


async def _settle_resolved(
    session: AsyncSession, conversation_id: str, tenant_id: str, moment: datetime
) -> None:
    """A resolved conversation leaves routing; one still in line takes its offer with it."""
    in_line = (
        await session.execute(
            select(_ROUTED.c.queue_id).where(
                _ROUTED.c.conversation_id == conversation_id, _ROUTED.c.state.in_(IN_LINE)
            )
        )
    ).first()
    if in_line is not None:
        await session.execute(
            update(_OFFERS)
            .where(_OFFERS.c.conversation_id == conversation_id, _OFFERS.c.status == "offered")
            .values(status="withdrawn", answered_at=moment)
        )
        await session.execute(
            insert(_DECISIONS).values(
                id=new_id(),
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                action="left",
                queue_id=in_line.queue_id,
                agent_id=None,
                reason="the conversation was resolved while waiting",
                details={},
                at=moment,
            )
        )
    await session.execute(
        update(_ROUTED)
        .where(
            _ROUTED.c.conversation_id == conversation_id,
            _ROUTED.c.state.in_(("assigned", *IN_LINE)),
        )
        .values(state="done", agent_id=None, offer_id=None, due_at=None, updated_at=moment)
    )


register_consumer(
    "routing",
    topics=("message.received", "conversation.requested", *FREEING),
    consume=consume,
)


async def run_due(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The worker's call: route what arrived, offer freed capacity, run the due timers, each
    tenant in a transaction of its own; return what was done."""
    moment = clock_now()
    async with sessionmaker() as session:
        tenants = set(
            (
                await session.execute(
                    select(_ROUTED.c.tenant_id)
                    .where(_ROUTED.c.due_at <= moment, _ROUTED.c.state.in_(DUE_STATES))
                    .distinct()
                    .limit(1000)
                )
            ).scalars()
        )
        tenants.update(
            (
                await session.execute(
                    select(RoutingAgent.tenant_id)
                    .where(RoutingAgent.freed_at.is_not(None))
                    .distinct()
                    .limit(1000)
                )
            ).scalars()
        )
    done = {"routed": 0, "routing_timers": 0}
    for tenant_id in sorted(tenants):
        try:
            async with sessionmaker() as session, session.begin():
                tenant = await load_tenant(session, tenant_id)
                routed, timers = await route_tenant(session, tenant, now=moment)
            done["routed"] += routed
            done["routing_timers"] += timers
        except Exception:  # one tenant's trouble must not hold up the others
            log.exception("routing.round_failed", tenant_id=tenant_id)
    return done


DUE_STATES = ("arrived", *IN_LINE)


async def route_tenant(
    session: AsyncSession, tenant: TenantContext, *, now: datetime | None = None
) -> tuple[int, int]:
    """One tenant's round in the worker: returns (conversations queued, timers run)."""
    round_ = await Round.open(session, tenant, now=now)
    claim = (
        select(_ROUTED.c.conversation_id, _ROUTED.c.cause)
        .where(
            _ROUTED.c.tenant_id == tenant.id,
            _ROUTED.c.state == "arrived",
            _ROUTED.c.due_at <= round_.now,
        )
        .order_by(_ROUTED.c.due_at)
        .limit(500)
    )
    freed_claim = (
        select(RoutingAgent.id)
        .where(RoutingAgent.tenant_id == tenant.id, RoutingAgent.freed_at.is_not(None))
        .limit(1000)
    )
    if session.get_bind().dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
        freed_claim = freed_claim.with_for_update(skip_locked=True)
    queued = []
    for conversation_id, cause in (await session.execute(claim)).all():
        if await round_.enqueue(conversation_id, why=cause or "needs a human"):
            queued.append(conversation_id)
    freed = list((await session.execute(freed_claim)).scalars())
    if freed:
        await session.execute(
            update(RoutingAgent).where(RoutingAgent.id.in_(freed)).values(freed_at=None)
        )
    await round_.dispatch_conversations(queued)
    await round_.explain_waits(queued)
    ran = await round_.run_timers()
    await round_.dispatch_agents(freed)
    await round_.save()
    return len(queued), ran

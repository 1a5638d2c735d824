"""SLA policies and each conversation's SLA clock: due dates, pauses, warnings and breaches.

A policy promises a first response, a next response (after the customer writes again following
an agent's reply) and a resolution, each in seconds of the tenant's business hours or around
the clock. The most specific matching policy applies: one naming the conversation's priority
beats one that does not, then one naming its channel kind (fewer kinds first), then the oldest.
Targets are counted from the moment the conversation starts (or reopens); the clock stops while
the conversation is ``pending`` (waiting on the customer) and, when it resumes, every running
target moves on by the open time the pause took. A warning goes out when ``warning_share`` of a
target has passed and a breach when all of it has, as the outbox events ``sla.warning`` and
``sla.breached``, each once per target.

How the clock is driven: by the outbox, not by calls from ``conversations.service``. The events
that move it (``message.received``, ``message.queued``, ``conversation.<status>``) are already
written in the transaction of each change, and ``consume`` is registered as an outbox consumer:
the relay hands it each batch inside its own transaction, so every event is applied exactly once,
in order, timed by the event's own ``created_at`` (not by when the worker got to it), and the
inbound hot path — one statement on PostgreSQL, a pinned statement count on SQLite — pays
nothing. Calls from the conversations service would have made conversations import routing and
added statements to every inbound message; a bus listener cannot use the database (it runs
inside the relay's transaction on SQLite's one connection). The price: a conversation's SLA
shows in the API once the worker has relayed its event (at once in ``hilos serve``, where
each write wakes the worker), and two workers relaying concurrent batches on PostgreSQL may
apply one conversation's events out of order.

Timers are durable: each clock's next warning or due moment is ``next_check_at`` on its row, and
``fire_due`` (called by the worker) claims the rows that are due (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), emits the events and moves ``next_check_at`` on, in one transaction. A worker that
restarts finds them where they were; an event applied late first fires what fell due before it,
so the outcome does not depend on how often the worker runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.models import ACTIVE_STATUSES, Conversation
from hilos.core.clock import as_utc, now
from hilos.core.db import one_of
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import emit, register_consumer
from hilos.core.tenancy import TenantContext, get_owned, load_tenant, tenant_scope
from hilos.routing.hours import (
    BusinessCalendar,
    CalendarError,
    add_business_seconds,
    business_seconds_between,
)
from hilos.routing.sla_models import BusinessHours, ConversationSla, SlaPolicy

PRIORITIES = ("low", "normal", "high", "urgent")
DEFAULT_PRIORITY = "normal"
TARGETS = ("first_response", "next_response", "resolution")
TOPICS = (
    "message.received",
    "message.queued",
    "conversation.open",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.resolved",
)


# --- business hours -------------------------------------------------------------------------


async def get_business_hours(
    session: AsyncSession, tenant: TenantContext
) -> tuple[BusinessHours | None, BusinessCalendar]:
    """The tenant's stored hours (None if never set) and the calendar they make: without
    stored hours, around the clock in the tenant's time zone."""
    row = await session.get(BusinessHours, tenant.id)
    return row, _calendar_of(row, tenant.timezone)


def _calendar_of(row: BusinessHours | None, tenant_timezone: str) -> BusinessCalendar:
    if row is None:
        return BusinessCalendar.around_the_clock(tenant_timezone)
    return BusinessCalendar.build(
        timezone=row.timezone or tenant_timezone, weekly=row.weekly, holidays=row.holidays
    )


async def set_business_hours(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    timezone: str | None,
    weekly: dict[str, list[list[str]]],
    holidays: Sequence[str],
) -> tuple[BusinessHours, BusinessCalendar]:
    """Replace the tenant's hours. Clocks already running keep the due dates they have; the
    new hours count from the next computation on (a new cycle, a resume, a new target)."""
    try:
        calendar = BusinessCalendar.build(
            timezone=timezone or tenant.timezone, weekly=weekly, holidays=holidays
        )
    except CalendarError as error:
        raise Invalid(str(error), field=error.field) from error
    row = await session.get(BusinessHours, tenant.id)
    if row is None:
        row = BusinessHours(tenant_id=tenant.id)
        session.add(row)
    row.timezone = timezone
    row.weekly = calendar.to_weekly()
    row.holidays = sorted(day.isoformat() for day in calendar.holidays)
    row.updated_at = now()
    await session.flush()
    return row, calendar


# --- policies -------------------------------------------------------------------------------

POLICY_FIELDS = (
    "name",
    "channel_kinds",
    "priority",
    "first_response_seconds",
    "next_response_seconds",
    "resolution_seconds",
    "business_hours",
    "warning_share",
)


async def list_policies(session: AsyncSession, tenant: TenantContext) -> Sequence[SlaPolicy]:
    statement = tenant_scope(select(SlaPolicy), SlaPolicy, tenant).order_by(
        SlaPolicy.created_at, SlaPolicy.id
    )
    return (await session.execute(statement)).scalars().all()


async def get_policy(session: AsyncSession, tenant: TenantContext, policy_id: str) -> SlaPolicy:
    return await get_owned(session, SlaPolicy, policy_id, tenant, what="SLA policy")


async def create_policy(session: AsyncSession, tenant: TenantContext, **fields: Any) -> SlaPolicy:
    moment = now()
    policy = SlaPolicy(id=new_id(), tenant_id=tenant.id, created_at=moment, updated_at=moment)
    _apply(policy, {"business_hours": False, "warning_share": 0.8, **fields})
    await _check_name_free(session, tenant, policy.name, policy.id)
    session.add(policy)
    await session.flush()
    return policy


async def update_policy(
    session: AsyncSession, tenant: TenantContext, policy_id: str, changes: dict[str, Any]
) -> SlaPolicy:
    policy = await get_policy(session, tenant, policy_id)
    _apply(policy, changes)
    await _check_name_free(session, tenant, policy.name, policy.id)
    policy.updated_at = now()
    await session.flush()
    return policy


async def delete_policy(session: AsyncSession, tenant: TenantContext, policy_id: str) -> None:
    """Delete a policy. Conversations whose clock it started keep their targets."""
    await session.delete(await get_policy(session, tenant, policy_id))
    await session.flush()


def _apply(policy: SlaPolicy, changes: dict[str, Any]) -> None:
    for field in POLICY_FIELDS:
        if field in changes:
            setattr(policy, field, changes[field])
    if policy.warning_share is None:
        raise Invalid("warning_share cannot be null", field="warning_share")
    if policy.business_hours is None:
        raise Invalid("business_hours cannot be null", field="business_hours")
    if not any(getattr(policy, f"{target}_seconds") for target in TARGETS):
        raise Invalid(
            "a policy needs at least one target: first_response_seconds, "
            "next_response_seconds or resolution_seconds",
            field="first_response_seconds",
        )


async def _check_name_free(
    session: AsyncSession, tenant: TenantContext, name: str, policy_id: str
) -> None:
    taken = await session.execute(
        tenant_scope(
            select(SlaPolicy.id).where(SlaPolicy.name == name, SlaPolicy.id != policy_id),
            SlaPolicy,
            tenant,
        )
    )
    if taken.first() is not None:
        raise Conflict(f"an SLA policy named {name!r} exists already", code="name_taken")


def matching_policy(
    policies: Iterable[SlaPolicy], *, channel_kind: str | None, priority: str
) -> SlaPolicy | None:
    """The most specific policy for a conversation of ``channel_kind`` and ``priority``."""
    candidates = [
        policy
        for policy in policies
        if (policy.channel_kinds is None or channel_kind in policy.channel_kinds)
        and (policy.priority is None or policy.priority == priority)
    ]
    return min(
        candidates,
        key=lambda p: (
            p.priority is None,
            p.channel_kinds is None,
            len(p.channel_kinds or ()),
            p.created_at,
            p.id,
        ),
        default=None,
    )


# --- the clock ------------------------------------------------------------------------------
# Pure functions of one conversation's row. ``hours`` is the calendar the clock counts in: the
# tenant's business hours under a business-hours policy, None (around the clock) otherwise.


def _running(state: ConversationSla, target: str) -> bool:
    """Whether ``target`` is being counted (met targets and closed cycles are not)."""
    if state.closed_at is not None or getattr(state, f"{target}_due_at") is None:
        return False
    return target != "first_response" or state.first_responded_at is None


def _set_target(
    state: ConversationSla, target: str, start: datetime, hours: BusinessCalendar | None
) -> None:
    seconds = getattr(state, f"{target}_seconds")
    due = warn = None
    if seconds:
        due = add_business_seconds(start, seconds, hours)
        warn = add_business_seconds(start, seconds * state.warning_share, hours)
    setattr(state, f"{target}_due_at", due)
    setattr(state, f"{target}_warn_at", warn)
    setattr(state, f"{target}_warned", False)
    setattr(state, f"{target}_breached", False)


def start_cycle(
    state: ConversationSla | None,
    *,
    conversation_id: str,
    tenant_id: str,
    policy: SlaPolicy,
    channel_kind: str | None,
    priority: str,
    at: datetime,
    hours: BusinessCalendar | None,
) -> ConversationSla:
    """A fresh clock from ``at`` (a new conversation, or one reopened), reusing the row of the
    conversation's previous cycle if it has one."""
    if state is None:
        state = ConversationSla(conversation_id=conversation_id, tenant_id=tenant_id)
    state.policy_id = policy.id
    state.channel_kind = channel_kind
    state.priority = priority
    for target in TARGETS:
        setattr(state, f"{target}_seconds", getattr(policy, f"{target}_seconds"))
    state.business_hours = policy.business_hours
    state.warning_share = policy.warning_share
    state.started_at = at
    state.first_responded_at = state.last_responded_at = None
    state.awaiting_reply = True
    state.paused_at = None
    state.paused_seconds = 0.0
    state.breached = False
    state.closed_at = None
    _set_target(state, "first_response", at, hours)
    _set_target(state, "resolution", at, hours)
    state.next_response_due_at = state.next_response_warn_at = None
    state.next_response_warned = state.next_response_breached = False
    return state


def fire(state: ConversationSla, at: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Mark what has fallen due by ``at``; return the events to emit (each fires once).

    A paused clock fires nothing. A target found past due before its warning went out gets
    only the breach: a warning about a promise already broken would be noise.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    if state.paused_at is not None:
        return events
    for target in TARGETS:
        if not _running(state, target):
            continue
        due: datetime = getattr(state, f"{target}_due_at")
        warn: datetime | None = getattr(state, f"{target}_warn_at")
        topic = None
        if not getattr(state, f"{target}_breached") and due <= at:
            setattr(state, f"{target}_breached", True)
            setattr(state, f"{target}_warned", True)
            state.breached = True
            topic = "sla.breached"
        elif not getattr(state, f"{target}_warned") and warn is not None and warn <= at:
            setattr(state, f"{target}_warned", True)
            topic = "sla.warning"
        if topic is not None:
            events.append(
                (
                    topic,
                    {
                        "conversation_id": state.conversation_id,
                        "policy_id": state.policy_id,
                        "target": target,
                        "due_at": due.isoformat(),
                    },
                )
            )
    return events


def next_check(state: ConversationSla) -> datetime | None:
    """The earliest warning or due moment not yet fired, if the clock runs."""
    if state.paused_at is not None or state.closed_at is not None:
        return None
    moments = []
    for target in TARGETS:
        if not _running(state, target):
            continue
        if not getattr(state, f"{target}_breached"):
            moments.append(getattr(state, f"{target}_due_at"))
        warn = getattr(state, f"{target}_warn_at")
        if not getattr(state, f"{target}_warned") and warn is not None:
            moments.append(warn)
    return min(moments, default=None)


def pause(state: ConversationSla, at: datetime) -> None:
    if state.paused_at is None and state.closed_at is None:
        state.paused_at = at


def resume(state: ConversationSla, at: datetime, hours: BusinessCalendar | None) -> None:
    """Restart a paused clock: each running target keeps the open time it had left."""
    paused_at = state.paused_at
    if paused_at is None:
        return
    for target in TARGETS:
        if not _running(state, target):
            continue
        for kind in ("due", "warn"):
            moment = getattr(state, f"{target}_{kind}_at")
            if moment is not None and moment > paused_at:
                left = business_seconds_between(paused_at, moment, hours)
                setattr(state, f"{target}_{kind}_at", add_business_seconds(at, left, hours))
    state.paused_seconds += max(0.0, business_seconds_between(paused_at, at, hours))
    state.paused_at = None


def customer_wrote(state: ConversationSla, at: datetime, hours: BusinessCalendar | None) -> None:
    """A message from the customer on a running clock: resumes it; after an agent's reply it
    starts the next-response target."""
    resume(state, at, hours)
    if not state.awaiting_reply:
        state.awaiting_reply = True
        if state.next_response_seconds:
            _set_target(state, "next_response", at, hours)


def agent_replied(state: ConversationSla, at: datetime) -> None:
    """An agent's reply (not a private note): meets the first or the next response."""
    if state.first_responded_at is None:
        state.first_responded_at = at
    state.last_responded_at = at
    state.awaiting_reply = False
    state.next_response_due_at = state.next_response_warn_at = None


def close(state: ConversationSla, at: datetime) -> None:
    state.paused_at = None
    state.closed_at = at


# --- applying events (the outbox consumer) --------------------------------------------------


class _Rules:
    """Each tenant's policies and calendar, loaded once per batch of events, and only when an
    event needs them (most batches of a tenant without policies cost one query)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._policies: dict[str, Sequence[SlaPolicy]] = {}
        self._calendars: dict[str, BusinessCalendar] = {}

    async def policies(self, tenant_id: str) -> Sequence[SlaPolicy]:
        if tenant_id not in self._policies:
            tenant = TenantContext(id=tenant_id)
            self._policies[tenant_id] = await list_policies(self.session, tenant)
        return self._policies[tenant_id]

    async def hours(self, tenant_id: str, *, business_hours: bool) -> BusinessCalendar | None:
        """The calendar a clock counts in: the tenant's hours, or None (around the clock)."""
        if not business_hours:
            return None
        if tenant_id not in self._calendars:
            tenant = await load_tenant(self.session, tenant_id)
            _row, self._calendars[tenant_id] = await get_business_hours(self.session, tenant)
        return self._calendars[tenant_id]


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """Apply a batch of conversation events to the SLA clocks (the relay's consumer)."""
    conversation_ids = {
        str(event.payload["conversation_id"])
        for event in events
        if event.payload.get("conversation_id")
    }
    if not conversation_ids:
        return
    dialect = session.get_bind().dialect.name
    statement = select(ConversationSla).where(
        one_of(dialect, ConversationSla.conversation_id, sorted(conversation_ids))
    )
    if dialect == "postgresql":
        statement = statement.with_for_update()
    states = {s.conversation_id: s for s in (await session.execute(statement)).scalars()}
    rules = _Rules(session)
    touched: set[str] = set()
    for event in events:
        conversation_id = event.payload.get("conversation_id")
        if not conversation_id:
            continue
        state = await _apply_event(session, rules, event, states.get(conversation_id))
        if state is not None:
            states[conversation_id] = state
            touched.add(conversation_id)
        elif event.topic == "message.received":
            # A new cycle that no policy covers: the previous cycle's clock is gone.
            previous = states.pop(conversation_id, None)
            touched.discard(conversation_id)
            if previous is not None and inspect(previous).persistent:
                await session.delete(previous)
    for conversation_id in touched:
        state = states[conversation_id]
        state.next_check_at = next_check(state)
        state.updated_at = now()
        session.add(state)
    await session.flush()


async def _apply_event(
    session: AsyncSession, rules: _Rules, event: OutboxEvent, state: ConversationSla | None
) -> ConversationSla | None:
    """Apply one event; return the clock it changed (None when there is none to change)."""
    at = as_utc(event.created_at)
    payload = event.payload
    running = state is not None and state.closed_at is None
    if state is not None and running:
        for topic, body in fire(state, at):
            await emit(session, tenant_id=event.tenant_id, topic=topic, payload=body)
    if event.topic == "message.received":
        if payload.get("conversation") in ("new", "reopened") or not running:
            return await _start(session, rules, event, state, at)
        assert state is not None
        hours = await rules.hours(event.tenant_id, business_hours=state.business_hours)
        customer_wrote(state, at, hours)
        return state
    if state is None or not running:
        return None
    if event.topic == "message.queued":
        # A message the system sent by itself (an order's status) answers nobody.
        if not payload.get("automated"):
            agent_replied(state, at)
    elif event.topic == "conversation.pending":
        pause(state, at)
    elif event.topic in ("conversation.open", "conversation.snoozed"):
        hours = await rules.hours(event.tenant_id, business_hours=state.business_hours)
        resume(state, at, hours)
    elif event.topic == "conversation.resolved":
        close(state, at)
    return state


async def _start(
    session: AsyncSession,
    rules: _Rules,
    event: OutboxEvent,
    state: ConversationSla | None,
    at: datetime,
) -> ConversationSla | None:
    payload = event.payload
    channel_kind = payload.get("channel_kind")
    priority = payload.get("priority") or DEFAULT_PRIORITY
    policy = matching_policy(
        await rules.policies(event.tenant_id), channel_kind=channel_kind, priority=priority
    )
    if policy is None:
        return None
    return start_cycle(
        state,
        conversation_id=payload["conversation_id"],
        tenant_id=event.tenant_id,
        policy=policy,
        channel_kind=channel_kind,
        priority=priority,
        at=at,
        hours=await rules.hours(event.tenant_id, business_hours=policy.business_hours),
    )


register_consumer("sla", topics=TOPICS, consume=consume)


# --- the worker's timers --------------------------------------------------------------------


async def fire_due(sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = 500) -> int:
    """Emit the warnings and breaches that have fallen due (all tenants); return how many.

    Only what fell due before the oldest event still waiting in the outbox fires here: that
    event (a reply written a moment before the due time) may yet meet the target, and the
    consumer fires the rest when it applies it. A clock whose conversation is no longer active
    (merged into another one, which sends no event of its own) is closed without firing.
    """
    async with sessionmaker() as session, session.begin():
        moment = now()
        waiting = await session.execute(
            select(OutboxEvent.created_at)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(1)
        )
        oldest = waiting.scalar_one_or_none()
        if oldest is not None:
            moment = min(moment, as_utc(oldest))
        statement = (
            select(ConversationSla)
            .where(ConversationSla.next_check_at <= moment)
            .order_by(ConversationSla.next_check_at)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        due = (await session.execute(statement)).scalars().all()
        if not due:
            return 0
        # Read-only look at the conversations' status: the one fact no event carries (merges).
        looked_up = await session.execute(
            select(Conversation.id, Conversation.status).where(
                Conversation.id.in_([state.conversation_id for state in due])
            )
        )
        statuses = {row.id: row.status for row in looked_up}
        fired = 0
        for state in due:
            if statuses.get(state.conversation_id) not in ACTIVE_STATUSES:
                close(state, moment)
            else:
                for topic, payload in fire(state, moment):
                    await emit(session, tenant_id=state.tenant_id, topic=topic, payload=payload)
                    fired += 1
            state.next_check_at = next_check(state)
            state.updated_at = moment
        await session.flush()
        return fired


# --- what the conversation API shows --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaView:
    """A conversation's SLA as the API shows it.

    ``state``: ``ok`` (targets running), ``warning`` (a running target is past its warning
    share), ``breached`` (a running target is overdue, or a closed cycle broke one), ``paused``
    (pending on the customer), ``met`` (nothing left running, nothing broken), None (no policy
    applies). ``remaining_seconds`` is the open time left on the nearest running target
    (negative once overdue; frozen while paused). Both are computed at the moment of reading,
    so they are right even before the worker has fired the timers.
    """

    policy_id: str | None = None
    state: str | None = None
    breached: bool = False
    remaining_seconds: float | None = None
    first_response_due_at: datetime | None = None
    first_responded_at: datetime | None = None
    next_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    started_at: datetime | None = None


NO_SLA = SlaView()


def view_of(state: ConversationSla, moment: datetime, hours: BusinessCalendar | None) -> SlaView:
    running = [target for target in TARGETS if _running(state, target)]
    reference = state.paused_at or moment
    due = {target: getattr(state, f"{target}_due_at") for target in running}
    overdue = any(due[target] <= reference for target in running)
    warned = any(
        getattr(state, f"{target}_warned")
        or (
            getattr(state, f"{target}_warn_at") is not None
            and getattr(state, f"{target}_warn_at") <= reference
        )
        for target in running
    )
    breached = state.breached or overdue
    remaining = (
        min(business_seconds_between(reference, due[target], hours) for target in running)
        if running
        else None
    )
    if state.closed_at is not None:
        label = "breached" if breached else "met"
    elif state.paused_at is not None:
        label = "paused"
    elif overdue:
        label = "breached"
    elif warned:
        label = "warning"
    elif running:
        label = "ok"
    else:
        label = "breached" if breached else "met"
    return SlaView(
        policy_id=state.policy_id,
        state=label,
        breached=breached,
        remaining_seconds=None if remaining is None else round(remaining, 3),
        first_response_due_at=state.first_response_due_at,
        first_responded_at=state.first_responded_at,
        next_response_due_at=state.next_response_due_at,
        resolution_due_at=state.resolution_due_at,
        started_at=state.started_at,
    )


async def sla_states(
    session: AsyncSession, tenant: TenantContext, conversation_ids: Sequence[str]
) -> dict[str, SlaView]:
    """The SLA of each conversation (``NO_SLA`` where no policy applies): one query, two when
    a clock counts business hours."""
    views = dict.fromkeys(conversation_ids, NO_SLA)
    if not conversation_ids:
        return views
    states = (
        (
            await session.execute(
                tenant_scope(
                    select(ConversationSla).where(
                        ConversationSla.conversation_id.in_(list(conversation_ids))
                    ),
                    ConversationSla,
                    tenant,
                )
            )
        )
        .scalars()
        .all()
    )
    if not states:
        return views
    calendar = None
    if any(state.business_hours for state in states):
        _row, calendar = await get_business_hours(session, tenant)
    moment = now()
    for state in states:
        hours = calendar if state.business_hours else None
        views[state.conversation_id] = view_of(state, moment, hours)
    return views


AT_RISK = ("warning", "breached")


def _nearest_due(state: ConversationSla) -> datetime | None:
    dues = [
        as_utc(getattr(state, f"{target}_due_at")) for target in TARGETS if _running(state, target)
    ]
    return min(dues, default=None)


async def at_risk(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    where: Iterable[ColumnElement[bool]] = (),
    limit: int = 50,
) -> list[tuple[str, SlaView]]:
    """The conversations whose SLA is at risk (``warning`` or ``breached`` now, with a target
    still running), the soonest due first (the most overdue at the top), with their SLA.
    ``where`` narrows them with conditions on ``Conversation`` (what an agent may see).

    SQL keeps the clocks that run and have passed a warning moment (or fired one); the exact
    state is then ``view_of``'s, the same the API shows.
    """
    moment = now()
    warned = or_(
        *(
            or_(
                getattr(ConversationSla, f"{target}_warned"),
                getattr(ConversationSla, f"{target}_warn_at") <= moment,
            )
            for target in TARGETS
        )
    )
    statement = (
        select(ConversationSla)
        .join(Conversation, Conversation.id == ConversationSla.conversation_id)
        .where(
            ConversationSla.tenant_id == tenant.id,
            Conversation.tenant_id == tenant.id,
            ConversationSla.closed_at.is_(None),
            ConversationSla.paused_at.is_(None),
            warned,
            *where,
        )
    )
    states = (await session.execute(statement)).scalars().all()
    calendar = None
    if any(state.business_hours for state in states):
        _row, calendar = await get_business_hours(session, tenant)
    found = []
    for state in states:
        view = view_of(state, moment, calendar if state.business_hours else None)
        due = _nearest_due(state)
        # A promise broken earlier with nothing left running is not at risk any more.
        if view.state in AT_RISK and due is not None:
            found.append((due, state.conversation_id, view))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(conversation_id, view) for _due, conversation_id, view in found[:limit]]

"""KPIs: one function per figure, ``compute`` for all of them, over a date range and filters.

What it owns: the formulas (each one documented with its inputs and edge cases in
``docs/kpis.md``, which is the reference; the docstrings below say the same in short), the
reading of the filters (``resolve_filters``), and nothing else: it writes nothing.

The rules it enforces:

- A range is ``[start, end)`` in UTC, at most ``MAX_RANGE_DAYS`` long, ``start`` before ``end``.
- A figure with nothing to count is ``None`` (JSON null), never 0: "no answers" is not "NPS 0".
- Rates and shares are fractions from 0 to 1 rounded to 4 places; NPS is a whole number from
  -100 to 100; CSAT is a percentage (0-100); CES the mean score (1-7); durations are seconds;
  money is integer minor units per currency (amounts of different currencies are never added).
- A filter applies to the figures it has a meaning for (a queue says nothing about the stock);
  ``applicable_filters`` says which, and the response lists the figures a given filter left
  untouched, so an unfiltered number is never mistaken for a filtered one.

How it reads: KPIs are a read model over every domain's tables, so this module reads them
directly with SQL aggregates (as ``routing.supervisor`` reads the SLA clocks) instead of asking
each domain's service for rows: one aggregate query per family of figures, whatever the tenant's
size, and no query per conversation or customer. The only rows that come back to Python are
durations where SQL cannot finish the job: percentiles on SQLite (PostgreSQL computes them with
``percentile_cont``) and durations in business hours, which follow the tenant's calendar
(``routing.hours``); both cost one row per conversation turn of the range. (The CLV fit in
``analytics.clv`` reads one row per customer and day of purchase, once per hour.) Prices and
the parity policy come through ``commerce.pricing``'s service functions, which own that rule.
On PostgreSQL ``compute`` runs the families in two lanes on two connections at once (see
there), and raises ``work_mem`` for its transaction so that a month of page views is grouped
in memory.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Interval,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import clv
from hilos.analytics.survey_models import SurveyResponse
from hilos.channels import service as channels
from hilos.channels.kinds import CHANNEL_KINDS, KIND_ALIASES
from hilos.channels.models import Channel
from hilos.commerce import catalog, pricing
from hilos.commerce.cart_models import Cart
from hilos.commerce.order_models import Order, OrderLine, Return
from hilos.commerce.stock import SHARED_CHANNELS
from hilos.commerce.stock_models import StockMovement
from hilos.conversations.models import ACTIVE_STATUSES, Conversation, Message
from hilos.core.clock import as_utc, now
from hilos.core.errors import Invalid, NotFound
from hilos.core.models import User
from hilos.core.tenancy import TenantContext, get_owned
from hilos.customers.models import TimelineEvent
from hilos.routing import service as routing
from hilos.routing import sla
from hilos.routing.hours import BusinessCalendar, business_seconds_between
from hilos.routing.models import RoutedConversation
from hilos.routing.sla_models import ConversationSla

MAX_RANGE_DAYS = 400
DEFAULT_RANGE_DAYS = 30
REPEAT_CONTACT_DAYS = 7
# PostgreSQL's memory for the sorts and hashes of one KPI request.
WORK_MEM = "64MB"
# NPS: 9-10 promote, 0-6 detract. CSAT: 4-5 of 5 is satisfied.
PROMOTER_AT = 9
DETRACTOR_UP_TO = 6
SATISFIED_AT = 4
# Sales channels that belong to a messaging medium for the multichannel share.
_SALES_MEDIUM = {"callcenter": "phone"}

_MESSAGES = Message.__table__
_CONVERSATIONS = Conversation.__table__
_CHANNELS = Channel.__table__
_ROUTED = RoutedConversation.__table__
_SLAS = ConversationSla.__table__
_SURVEYS = SurveyResponse.__table__
_CARTS = Cart.__table__
_ORDERS = Order.__table__
_LINES = OrderLine.__table__
_RETURNS = Return.__table__
_EVENTS = TimelineEvent.__table__
_MOVEMENTS = StockMovement.__table__
for _table in (
    _MESSAGES,
    _CONVERSATIONS,
    _CHANNELS,
    _ROUTED,
    _SLAS,
    _SURVEYS,
    _CARTS,
    _ORDERS,
    _LINES,
    _RETURNS,
    _EVENTS,
    _MOVEMENTS,
):
    assert isinstance(_table, Table)

FilterName = Literal["channel", "store", "queue", "agent"]


# --- the filters ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelFilter:
    """What ``channel=`` named: one of the tenant's messaging channels (by id), every channel
    of a messaging kind, or a sales channel (``web``, ``app``, ``callcenter``, ``marketplace``,
    ``store:<code>``)."""

    value: str
    # Messaging: the kind, and the tenant's channels meant (none when it has none of the kind).
    kind: str | None = None
    channel_ids: tuple[str, ...] = ()
    # Sales: the channel code as orders and carts store it.
    sales: str | None = None

    @property
    def messaging(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True, slots=True)
class StoreFilter:
    location_id: str
    code: str

    @property
    def sales_channel(self) -> str:
        return f"store:{self.code}"


@dataclass(frozen=True, slots=True)
class KpiFilters:
    start: datetime
    end: datetime
    channel: ChannelFilter | None = None
    store: StoreFilter | None = None
    queue_id: str | None = None
    agent_id: str | None = None

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86_400

    def given(self) -> dict[str, str]:
        """The filters as the caller gave them."""
        named = {
            "channel": self.channel.value if self.channel else None,
            "store": self.store.code if self.store else None,
            "queue": self.queue_id,
            "agent": self.agent_id,
        }
        return {name: value for name, value in named.items() if value is not None}


def parse_moment(value: str, *, field: str, end: bool) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime.

    A date stands for its whole UTC day: as ``from`` its start, as ``to`` its end (the next
    midnight), so ``from=2026-03-01&to=2026-03-31`` is all of March. A date-time without an
    offset is taken as UTC.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise Invalid(
            f"{field} must be an ISO 8601 date (2026-03-01) or date-time "
            f"(2026-03-01T09:00:00Z), got {value!r}",
            field=field,
        ) from error
    return as_utc(parsed)


def check_range(start: datetime, end: datetime) -> None:
    if start >= end:
        raise Invalid(
            f"the range is upside down: from ({start.isoformat()}) must be before "
            f"to ({end.isoformat()})",
            field="from",
            code="invalid_range",
        )
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise Invalid(
            f"the range covers {(end - start).days} days; at most {MAX_RANGE_DAYS} are allowed",
            field="to",
            code="range_too_long",
        )


def default_range(moment: datetime | None = None) -> tuple[datetime, datetime]:
    """The last ``DEFAULT_RANGE_DAYS`` whole UTC days up to and including today."""
    today = (moment or now()).astimezone(UTC).date()
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=DEFAULT_RANGE_DAYS), end


_ID_LENGTH = 32


def _looks_like_id(value: str) -> bool:
    return len(value) == _ID_LENGTH and all(ch in "0123456789abcdef" for ch in value)


async def _channel_filter(
    session: AsyncSession, tenant: TenantContext, value: str
) -> ChannelFilter:
    tenant_channels = await channels.list_channels(session, tenant)
    for channel in tenant_channels:
        if channel.id == value:
            return ChannelFilter(value=value, kind=channel.kind, channel_ids=(channel.id,))
    kind = KIND_ALIASES[value][0] if value in KIND_ALIASES else value
    if kind in CHANNEL_KINDS:
        ids = tuple(c.id for c in tenant_channels if c.kind == kind)
        return ChannelFilter(value=value, kind=kind, channel_ids=ids)
    if value in SHARED_CHANNELS:
        return ChannelFilter(value=value, sales=value)
    if value.startswith("store:"):
        store = await catalog.location_by_code(
            session, tenant, value.removeprefix("store:"), field="channel"
        )
        return ChannelFilter(value=value, sales=f"store:{store.code}")
    if _looks_like_id(value):
        raise NotFound(f"channel {value} not found", details={"field": "channel"})
    raise Invalid(
        f"unknown channel {value!r}: give one of the tenant's channel ids, a channel kind "
        f"({', '.join(CHANNEL_KINDS)}) or a sales channel ({', '.join(SHARED_CHANNELS)}, "
        "store:<code>)",
        field="channel",
        code="unknown_channel",
    )


async def resolve_filters(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    store: str | None = None,
    queue: str | None = None,
    agent: str | None = None,
) -> KpiFilters:
    """Check the range and find what each filter names; an unknown id is a 404 naming it."""
    check_range(start, end)
    channel_filter = await _channel_filter(session, tenant, channel) if channel else None
    store_filter = None
    if store:
        if _looks_like_id(store):
            location = await catalog.get_location(session, tenant, store)
        else:
            location = await catalog.location_by_code(session, tenant, store, field="store")
        store_filter = StoreFilter(location_id=location.id, code=location.code)
    if queue:
        await routing.get_queue(session, tenant, queue, field="queue")
    if agent:
        try:
            await get_owned(session, User, agent, tenant, what="agent")
        except NotFound as error:
            raise NotFound(error.message, details={"field": "agent"}) from error
    return KpiFilters(
        start=start,
        end=end,
        channel=channel_filter,
        store=store_filter,
        queue_id=queue or None,
        agent_id=agent or None,
    )


# Which filters each family of figures honours: "channel:messaging" is a channel id or kind,
# "channel:sales" a sales channel.
_FAMILIES: dict[str, frozenset[str]] = {
    "surveys": frozenset({"channel:messaging", "queue", "agent"}),
    "conversations": frozenset({"channel:messaging", "queue", "agent"}),
    "calls": frozenset({"channel:messaging"}),
    "carts": frozenset({"channel:sales", "store"}),
    "orders": frozenset({"channel:sales", "store", "agent"}),
    "customers": frozenset(),
    "multichannel": frozenset({"channel:messaging", "channel:sales"}),
    "prices": frozenset(),
    "stock": frozenset({"store"}),
}
KPI_FAMILIES: dict[str, str] = {
    "nps": "surveys",
    "csat": "surveys",
    "ces": "surveys",
    "first_response_seconds": "conversations",
    "next_response_seconds": "conversations",
    "resolution_seconds": "conversations",
    "sla_attainment": "conversations",
    "backlog": "conversations",
    "repeat_contact_rate": "conversations",
    "channel_switches_per_conversation": "conversations",
    "average_handle_time_seconds": "calls",
    "missed_call_rate": "calls",
    "conversion_rate": "carts",
    "average_order_value": "orders",
    "bopis_share": "orders",
    "retention": "customers",
    "churn_rate": "customers",
    "clv": "customers",
    "multichannel_customer_share": "multichannel",
    "price_parity_score": "prices",
    "stock_out_rate": "stock",
}


def applicable_filters(kpi: str) -> frozenset[str]:
    """The filters ``kpi`` honours (``channel:messaging``, ``channel:sales``, ``store``,
    ``queue``, ``agent``)."""
    return _FAMILIES[KPI_FAMILIES[kpi]]


def _given_kinds(filters: KpiFilters) -> list[str]:
    kinds = []
    if filters.channel is not None:
        kinds.append("channel:messaging" if filters.channel.messaging else "channel:sales")
    if filters.store is not None:
        kinds.append("store")
    if filters.queue_id is not None:
        kinds.append("queue")
    if filters.agent_id is not None:
        kinds.append("agent")
    return kinds


def unfiltered(filters: KpiFilters) -> dict[str, list[str]]:
    """``{kpi: [filter, ...]}``: the given filters each figure could not apply."""
    left: dict[str, list[str]] = {}
    for kpi in KPI_FAMILIES:
        honoured = applicable_filters(kpi)
        missing = [kind.split(":")[0] for kind in _given_kinds(filters) if kind not in honoured]
        if missing:
            left[kpi] = missing
    return left


# --- small helpers ----------------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _rate(part: int | float | None, whole: int | float | None) -> float | None:
    if not whole:
        return None
    return round(float(part or 0) / float(whole), 4)


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """``percentile_cont`` of sorted values: linear between the two nearest ranks."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _round(value: float | None, places: int = 1) -> float | None:
    return None if value is None else round(float(value), places)


def _summary(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "median": _round(percentile(ordered, 0.5)),
        "p90": _round(percentile(ordered, 0.9)),
        "count": len(ordered),
    }


def _seconds(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, in SQL."""
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86_400.0


_UTC: ColumnElement[str] = literal_column("'UTC'")


def _month(column: Any, dialect: str) -> ColumnElement[str]:
    """``YYYY-MM`` of a UTC timestamp, in SQL."""
    # Constants inline, not as parameters: PostgreSQL matches a GROUP BY expression to the
    # selected one by its text, and two parameters are two different expressions.
    if dialect == "postgresql":
        return func.to_char(func.timezone(_UTC, column), literal_column("'YYYY-MM'"))
    return func.strftime(literal_column("'%Y-%m'"), column)


def utc_day(column: Any, dialect: str) -> ColumnElement[str]:
    """``YYYY-MM-DD`` of a UTC timestamp, in SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(_UTC, column), literal_column("'YYYY-MM-DD'"))
    return func.substr(column, literal_column("1"), literal_column("10"))


def _day_key(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a timestamp, for grouping and joining only (cheaper than ``utc_day``'s
    text on PostgreSQL)."""
    if dialect == "postgresql":
        return cast(func.timezone(_UTC, column), Date)
    return func.substr(column, literal_column("1"), literal_column("10"))


def _not_automated() -> ColumnElement[bool]:
    """An outbound message an agent wrote: not one the system sent by itself (an order's
    status, a survey), which answers nobody."""
    automated: ColumnElement[bool] = _MESSAGES.c.data["automated"].as_string().is_(None)
    return automated


def conversation_scope(filters: KpiFilters) -> list[ColumnElement[bool]]:
    """Conditions on ``conversations`` for the queue and agent filters."""
    conditions: list[ColumnElement[bool]] = []
    if filters.agent_id is not None:
        conditions.append(_CONVERSATIONS.c.assignee_id == filters.agent_id)
    if filters.queue_id is not None:
        conditions.append(
            exists().where(
                _ROUTED.c.conversation_id == _CONVERSATIONS.c.id,
                _ROUTED.c.queue_id == filters.queue_id,
            )
        )
    return conditions


def messaging_channel(filters: KpiFilters) -> ChannelFilter | None:
    return filters.channel if filters.channel is not None and filters.channel.messaging else None


def _sales(filters: KpiFilters) -> str | None:
    if filters.channel is not None and filters.channel.sales is not None:
        return filters.channel.sales
    return None


# --- surveys ----------------------------------------------------------------------------------


async def survey_scores(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, dict[str, Any]]:
    """NPS, CSAT and CES of the answers given in the range, with their counts (one query).

    NPS = % promoters (9-10) - % detractors (0-6), rounded to a whole number; CSAT = % of
    answers 4-5 (of 5); CES = mean score (of 7), 2 decimals.
    """
    s = _SURVEYS.c
    statement = (
        select(
            s.kind,
            func.count().label("answers"),
            func.sum(case((s.score >= PROMOTER_AT, 1), else_=0)).label("promoters"),
            func.sum(case((s.score <= DETRACTOR_UP_TO, 1), else_=0)).label("detractors"),
            func.sum(case((s.score >= SATISFIED_AT, 1), else_=0)).label("satisfied"),
            func.sum(s.score).label("total"),
        )
        .where(
            s.tenant_id == tenant.id,
            s.kind.in_(("nps", "csat", "ces")),
            s.answered_at >= filters.start,
            s.answered_at < filters.end,
        )
        .group_by(s.kind)
    )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(s.channel == channel.kind)
    if filters.queue_id is not None:
        statement = statement.where(s.queue_id == filters.queue_id)
    if filters.agent_id is not None:
        statement = statement.where(s.agent_id == filters.agent_id)
    found = {row.kind: row for row in (await session.execute(statement)).all()}
    result: dict[str, dict[str, Any]] = {}
    nps = found.get("nps")
    if nps is not None:
        promoters, detractors, answers = int(nps.promoters), int(nps.detractors), int(nps.answers)
        result["nps"] = {
            "score": round(100 * (promoters - detractors) / answers),
            "answers": answers,
            "promoters": promoters,
            "passives": answers - promoters - detractors,
            "detractors": detractors,
        }
    else:
        result["nps"] = {"score": None, "answers": 0}
    csat = found.get("csat")
    result["csat"] = (
        {
            "score": round(100 * int(csat.satisfied) / int(csat.answers), 1),
            "answers": int(csat.answers),
            "satisfied": int(csat.satisfied),
        }
        if csat is not None
        else {"score": None, "answers": 0}
    )
    ces = found.get("ces")
    result["ces"] = (
        {"score": round(int(ces.total) / int(ces.answers), 2), "answers": int(ces.answers)}
        if ces is not None
        else {"score": None, "answers": 0}
    )
    return result


# --- conversations: response and resolution times -----------------------------------------------


async def business_calendar(
    session: AsyncSession, tenant: TenantContext
) -> BusinessCalendar | None:
    """The tenant's business hours, or None when it keeps none (then business time is clock
    time)."""
    row, calendar = await sla.get_business_hours(session, tenant)
    return None if row is None else calendar


def _earliest_start(conversations: Select[Any]) -> Any:
    """When the first of ``conversations`` (a select of ids), or of the conversations merged
    into them, started: none of their messages is older, so the tenant's messages need only be
    read from then on (by tenant and time)."""
    c = _CONVERSATIONS.c
    return (
        select(func.min(c.created_at))
        .where(or_(c.id.in_(conversations), c.merged_into_id.in_(conversations)))
        .scalar_subquery()
    )


def turns(tenant: TenantContext, filters: KpiFilters) -> Select[Any]:
    """The customer's turns that started in the range, each with the agent reply that ended it.

    A turn starts with a customer message that follows an agent's reply (or opens the
    conversation) and ends with the next agent reply; the conversation's first turn is its
    first response. Only written messages count: calls and visits are not waits for a reply,
    notes are private and automated messages answer nobody.
    """
    m = _MESSAGES.c
    in_range = [
        m.tenant_id == tenant.id,
        m.direction == "inbound",
        m.kind == "message",
        m.sent_at >= filters.start,
        m.sent_at < filters.end,
    ]
    active = select(m.conversation_id).where(*in_range)
    scope = conversation_scope(filters)
    if scope:
        active = active.where(m.conversation_id.in_(select(_CONVERSATIONS.c.id).where(*scope)))
    turn_order = (m.sent_at, m.id)
    ordered = (
        select(
            m.conversation_id,
            m.channel_id,
            m.direction,
            m.sent_at,
            func.lag(m.direction)
            .over(partition_by=m.conversation_id, order_by=turn_order)
            .label("previous"),
            func.sum(case((m.direction == "inbound", 1), else_=0))
            .over(partition_by=m.conversation_id, order_by=turn_order, rows=(None, -1))
            .label("earlier_inbound"),
            func.min(case((m.direction == "outbound", m.sent_at)))
            .over(partition_by=m.conversation_id, order_by=turn_order, rows=(1, None))
            .label("answered_at"),
        )
        .where(
            m.tenant_id == tenant.id,
            m.conversation_id.in_(active.distinct()),
            m.sent_at >= _earliest_start(active),
            m.kind == "message",
            or_(m.direction == "inbound", and_(m.direction == "outbound", _not_automated())),
        )
        .subquery("ordered")
    )
    o = ordered.c
    statement = select(
        func.coalesce(o.earlier_inbound, 0).label("earlier_inbound"),
        o.sent_at,
        o.answered_at,
    ).where(
        o.direction == "inbound",
        or_(o.previous.is_(None), o.previous == "outbound"),
        o.sent_at >= filters.start,
        o.sent_at < filters.end,
    )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(o.channel_id.in_(channel.channel_ids or ("",)))
    return statement


def _empty_durations() -> dict[str, Any]:
    return {
        "median": None,
        "p90": None,
        "count": 0,
        "business_hours": {"median": None, "p90": None},
    }


def _durations(
    pairs: Sequence[tuple[datetime, datetime]], calendar: BusinessCalendar | None
) -> dict[str, Any]:
    """Median and p90 of ``end - start``, by the clock and in business hours."""
    if not pairs:
        return _empty_durations()
    wall = [(end - start).total_seconds() for start, end in pairs]
    summary = _summary(wall)
    business = (
        _summary(business_seconds_between(start, end, calendar) for start, end in pairs)
        if calendar is not None
        else summary
    )
    summary["business_hours"] = {"median": business["median"], "p90": business["p90"]}
    return summary


async def response_times(
    session: AsyncSession,
    tenant: TenantContext,
    filters: KpiFilters,
    calendar: BusinessCalendar | None,
) -> dict[str, dict[str, Any]]:
    """First and next response times of the turns that started in the range (see ``turns``).

    Unanswered turns have no duration: they are counted apart (``unanswered``).
    """
    started = turns(tenant, filters).subquery("turns")
    t = started.c
    first = t.earlier_inbound == 0
    if _dialect(session) == "postgresql" and calendar is None:
        seconds = _seconds(t.answered_at, t.sent_at, "postgresql")
        statement = select(
            first.label("first"),
            func.count().label("turns"),
            func.count(t.answered_at).label("answered"),
            func.percentile_cont(0.5).within_group(seconds).label("median"),
            func.percentile_cont(0.9).within_group(seconds).label("p90"),
        ).group_by(first)
        figures = {}
        for row in (await session.execute(statement)).all():
            median, p90 = _round(row.median), _round(row.p90)
            figures[bool(row.first)] = {
                "median": median,
                "p90": p90,
                "count": int(row.answered),
                "unanswered": int(row.turns) - int(row.answered),
                "business_hours": {"median": median, "p90": p90},
            }
        empty = {**_empty_durations(), "unanswered": 0}
        return {
            "first_response_seconds": figures.get(True, empty),
            "next_response_seconds": figures.get(False, empty),
        }
    rows = (await session.execute(select(first.label("first"), t.sent_at, t.answered_at))).all()
    result: dict[str, dict[str, Any]] = {}
    for name, is_first in (("first_response_seconds", True), ("next_response_seconds", False)):
        mine = [row for row in rows if bool(row.first) == is_first]
        pairs = [(as_utc(r.sent_at), as_utc(r.answered_at)) for r in mine if r.answered_at]
        result[name] = {**_durations(pairs, calendar), "unanswered": len(mine) - len(pairs)}
    return result


def _resolved_in_range(tenant: TenantContext, filters: KpiFilters) -> list[ColumnElement[bool]]:
    c = _CONVERSATIONS.c
    conditions = [
        c.tenant_id == tenant.id,
        c.status == "resolved",
        c.resolved_at >= filters.start,
        c.resolved_at < filters.end,
        *conversation_scope(filters),
    ]
    if (channel := messaging_channel(filters)) is not None:
        conditions.append(c.last_channel_id.in_(channel.channel_ids or ("",)))
    return conditions


async def resolution_times(
    session: AsyncSession,
    tenant: TenantContext,
    filters: KpiFilters,
    calendar: BusinessCalendar | None,
) -> dict[str, Any]:
    """Seconds from a conversation's start to its resolution, for those resolved in the range
    (by the channel it ended on)."""
    c = _CONVERSATIONS.c
    conditions = _resolved_in_range(tenant, filters)
    if _dialect(session) == "postgresql" and calendar is None:
        seconds = _seconds(c.resolved_at, c.created_at, "postgresql")
        row = (
            await session.execute(
                select(
                    func.count().label("resolved"),
                    func.percentile_cont(0.5).within_group(seconds).label("median"),
                    func.percentile_cont(0.9).within_group(seconds).label("p90"),
                ).where(*conditions)
            )
        ).one()
        median, p90 = _round(row.median), _round(row.p90)
        return {
            "median": median,
            "p90": p90,
            "count": int(row.resolved),
            "business_hours": {"median": median, "p90": p90},
        }
    rows = (await session.execute(select(c.created_at, c.resolved_at).where(*conditions))).all()
    return _durations([(as_utc(r.created_at), as_utc(r.resolved_at)) for r in rows], calendar)


async def sla_attainment(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """The share of SLA targets due in the range whose outcome is known that were met.

    The rule of ``routing.supervisor.target_outcome``, in SQL: a first-response or resolution
    target is met when the reply (or the resolution) came by its due moment without a breach;
    missed when it breached, or is past due (against the moment its clock stands at: closed,
    paused, or now) without one; otherwise still open and not counted.
    """
    s = _SLAS.c
    c = _CONVERSATIONS.c
    reference = func.coalesce(s.closed_at, s.paused_at, now())
    columns = []
    for target, due, done_at, breached in (
        ("first", s.first_response_due_at, s.first_responded_at, s.first_response_breached),
        ("resolution", s.resolution_due_at, s.closed_at, s.resolution_breached),
    ):
        in_range = and_(due.is_not(None), due >= filters.start, due < filters.end)
        met = and_(done_at.is_not(None), done_at <= due, not_(breached))
        missed = and_(not_(met), or_(breached, due <= reference))
        columns += [
            func.sum(case((and_(in_range, met), 1), else_=0)).label(f"{target}_met"),
            func.sum(case((and_(in_range, missed), 1), else_=0)).label(f"{target}_missed"),
        ]
    statement = (
        select(*columns)
        .select_from(_SLAS.join(_CONVERSATIONS, c.id == s.conversation_id))
        .where(
            s.tenant_id == tenant.id,
            c.status != "merged",
            or_(
                and_(
                    s.first_response_due_at >= filters.start, s.first_response_due_at < filters.end
                ),
                and_(s.resolution_due_at >= filters.start, s.resolution_due_at < filters.end),
            ),
            *conversation_scope(filters),
        )
    )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(s.channel_kind == channel.kind)
    row = (await session.execute(statement)).one()
    met_count = int(row.first_met or 0) + int(row.resolution_met or 0)
    missed_count = int(row.first_missed or 0) + int(row.resolution_missed or 0)
    return {
        "rate": _rate(met_count, met_count + missed_count),
        "met": met_count,
        "missed": missed_count,
        "first_response": _rate(row.first_met, (row.first_met or 0) + (row.first_missed or 0)),
        "resolution": _rate(
            row.resolution_met, (row.resolution_met or 0) + (row.resolution_missed or 0)
        ),
    }


async def backlog(session: AsyncSession, tenant: TenantContext, filters: KpiFilters) -> int:
    """Conversations still open (open, pending or snoozed) at the end of the range: started
    before it and not resolved by then."""
    c = _CONVERSATIONS.c
    statement = select(func.count()).where(
        c.tenant_id == tenant.id,
        c.created_at < filters.end,
        or_(
            c.status.in_(ACTIVE_STATUSES),
            and_(c.status == "resolved", c.resolved_at >= filters.end),
        ),
        *conversation_scope(filters),
    )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(c.last_channel_id.in_(channel.channel_ids or ("",)))
    return int((await session.execute(statement)).scalar_one())


async def repeat_contacts(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Of the conversations resolved in the range, the share whose customer wrote or called
    again, on any channel, within ``REPEAT_CONTACT_DAYS`` days of the resolution."""
    c = _CONVERSATIONS.c
    later = _MESSAGES.alias("later")
    other = _CONVERSATIONS.alias("other")
    dialect = _dialect(session)
    if dialect == "postgresql":
        within = later.c.sent_at - c.resolved_at <= literal(
            timedelta(days=REPEAT_CONTACT_DAYS), Interval()
        )
    else:
        within = func.julianday(later.c.sent_at) <= func.julianday(c.resolved_at) + float(
            REPEAT_CONTACT_DAYS
        )
    came_back = exists().where(
        other.c.customer_id == c.customer_id,
        later.c.conversation_id == other.c.id,
        later.c.direction == "inbound",
        later.c.kind.in_(("message", "call")),
        later.c.sent_at > c.resolved_at,
        within,
    )
    row = (
        await session.execute(
            select(
                func.count().label("resolved"),
                func.sum(case((came_back, 1), else_=0)).label("repeated"),
            ).where(*_resolved_in_range(tenant, filters))
        )
    ).one()
    return {
        "rate": _rate(row.repeated, row.resolved),
        "resolved": int(row.resolved),
        "repeated": int(row.repeated or 0),
    }


async def channel_switches(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Customer messages (and calls, and visits) in the range that came on another channel
    than the customer's previous one in the same conversation, per conversation."""
    m = _MESSAGES.c
    active = (
        select(m.conversation_id)
        .where(
            m.tenant_id == tenant.id,
            m.direction == "inbound",
            m.sent_at >= filters.start,
            m.sent_at < filters.end,
        )
        .distinct()
    )
    ordered = (
        select(
            m.conversation_id,
            m.channel_id,
            m.sent_at,
            func.lag(m.channel_id)
            .over(partition_by=m.conversation_id, order_by=(m.sent_at, m.id))
            .label("previous_channel"),
        )
        .where(
            m.tenant_id == tenant.id,
            m.direction == "inbound",
            m.sent_at >= _earliest_start(active),
            m.sent_at < filters.end,
            m.conversation_id.in_(active),
        )
        .subquery("ordered")
    )
    o = ordered.c
    switched = and_(o.previous_channel.is_not(None), o.previous_channel != o.channel_id)
    statement = (
        select(
            func.count(func.distinct(o.conversation_id)).label("conversations"),
            func.sum(case((switched, 1), else_=0)).label("switches"),
        )
        .select_from(ordered)
        .where(o.sent_at >= filters.start)
    )
    scope = conversation_scope(filters)
    if scope:
        statement = statement.where(
            o.conversation_id.in_(select(_CONVERSATIONS.c.id).where(*scope))
        )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(
            o.conversation_id.in_(
                select(m.conversation_id).where(
                    m.tenant_id == tenant.id,
                    m.channel_id.in_(channel.channel_ids or ("",)),
                    m.sent_at >= filters.start,
                    m.sent_at < filters.end,
                )
            )
        )
    row = (await session.execute(statement)).one()
    conversations = int(row.conversations)
    return {
        "per_conversation": (
            round(int(row.switches or 0) / conversations, 4) if conversations else None
        ),
        "conversations": conversations,
        "switches": int(row.switches or 0),
    }


async def calls(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Average handle time (talk seconds of answered calls that ended) and missed-call rate
    (incoming calls that rang out or went to voicemail, of incoming calls that finished)."""
    m = _MESSAGES.c
    status = m.data["status"].as_string()
    duration = m.data["duration_seconds"].as_float()
    incoming = m.direction == "inbound"
    finished = status.in_(("ended", "missed", "voicemail"))
    statement = select(
        func.avg(case((and_(status == "ended", duration.is_not(None)), duration))).label("aht"),
        func.count(case((and_(status == "ended", duration.is_not(None)), 1))).label("handled"),
        func.sum(case((and_(incoming, finished), 1), else_=0)).label("incoming"),
        func.sum(case((and_(incoming, status.in_(("missed", "voicemail"))), 1), else_=0)).label(
            "missed"
        ),
    ).where(
        m.tenant_id == tenant.id,
        m.kind == "call",
        m.sent_at >= filters.start,
        m.sent_at < filters.end,
    )
    if (channel := messaging_channel(filters)) is not None:
        statement = statement.where(m.channel_id.in_(channel.channel_ids or ("",)))
    row = (await session.execute(statement)).one()
    return {
        "average_handle_time_seconds": _round(row.aht),
        "handled": int(row.handled),
        "missed_call_rate": _rate(row.missed, row.incoming),
        "incoming": int(row.incoming or 0),
        "missed": int(row.missed or 0),
    }


# --- commerce ---------------------------------------------------------------------------------


async def cart_conversion(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Carts started in the range, per sales channel, and how many became an order (whenever
    that happened). Carts folded into another by a customer merge are not counted."""
    k = _CARTS.c
    statement = (
        select(
            k.channel,
            func.count().label("carts"),
            func.sum(case((k.status == "converted", 1), else_=0)).label("converted"),
        )
        .where(
            k.tenant_id == tenant.id,
            k.status != "merged",
            k.created_at >= filters.start,
            k.created_at < filters.end,
        )
        .group_by(k.channel)
        .order_by(k.channel)
    )
    if (sales := _sales(filters)) is not None:
        statement = statement.where(k.channel == sales)
    if filters.store is not None:
        statement = statement.where(k.channel == filters.store.sales_channel)
    rows = (await session.execute(statement)).all()
    carts = sum(int(row.carts) for row in rows)
    converted = sum(int(row.converted or 0) for row in rows)
    return {
        "rate": _rate(converted, carts),
        "carts": carts,
        "converted": converted,
        "by_channel": [
            {
                "channel": row.channel,
                "carts": int(row.carts),
                "converted": int(row.converted or 0),
                "rate": _rate(row.converted, row.carts),
            }
            for row in rows
        ],
    }


async def session_conversion(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any] | None:
    """Visits of the online shop (web: ``page`` events; app: ``screen``) as sessions — one per
    customer, medium and UTC day — and how many of them the customer ordered on (any channel,
    same day). ``None`` when a sales-channel filter other than web or app is given."""
    sales = _sales(filters)
    types = {"web": ("page",), "app": ("screen",)}.get(sales or "", ("page", "screen"))
    if (sales is not None and sales not in ("web", "app")) or filters.store is not None:
        return None
    dialect = _dialect(session)
    e = _EVENTS.c
    visits = (
        select(e.customer_id, _day_key(e.occurred_at, dialect).label("day"), e.type)
        .where(
            e.tenant_id == tenant.id,
            e.type.in_(types),
            e.occurred_at >= filters.start,
            e.occurred_at < filters.end,
        )
        .group_by(e.customer_id, _day_key(e.occurred_at, dialect), e.type)
        .subquery("visits")
    )
    o = _ORDERS.c
    ordered = (
        select(o.customer_id, _day_key(o.created_at, dialect).label("day"))
        .where(
            o.tenant_id == tenant.id,
            o.status != "cancelled",
            o.created_at >= filters.start,
            o.created_at < filters.end,
        )
        .distinct()
        .subquery("ordered")
    )
    v = visits.c
    statement = (
        select(
            v.type,
            func.count().label("sessions"),
            func.count(ordered.c.customer_id).label("converted"),
        )
        .select_from(
            visits.outerjoin(
                ordered, and_(ordered.c.customer_id == v.customer_id, ordered.c.day == v.day)
            )
        )
        .group_by(v.type)
    )
    rows = {row.type: row for row in (await session.execute(statement)).all()}
    total = sum(int(row.sessions) for row in rows.values())
    converted = sum(int(row.converted) for row in rows.values())
    return {
        "rate": _rate(converted, total),
        "sessions": total,
        "converted": converted,
        "by_channel": [
            {
                "channel": medium,
                "sessions": int(rows[kind].sessions),
                "converted": int(rows[kind].converted),
                "rate": _rate(rows[kind].converted, rows[kind].sessions),
            }
            for medium, kind in (("web", "page"), ("app", "screen"))
            if kind in rows
        ],
    }


def order_scope(tenant: TenantContext, filters: KpiFilters) -> list[ColumnElement[bool]]:
    o = _ORDERS.c
    conditions: list[ColumnElement[bool]] = [
        o.tenant_id == tenant.id,
        o.status != "cancelled",
        o.created_at >= filters.start,
        o.created_at < filters.end,
    ]
    if (sales := _sales(filters)) is not None:
        conditions.append(o.channel == sales)
    if filters.store is not None:
        conditions.append(
            or_(
                o.channel == filters.store.sales_channel,
                exists().where(
                    _LINES.c.order_id == o.id,
                    _LINES.c.pickup_location_id == filters.store.location_id,
                ),
            )
        )
    if filters.agent_id is not None:
        conditions.append(o.placed_by_user_id == filters.agent_id)
    return conditions


async def orders(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Average order value per currency and the share of orders picked up in a store (BOPIS:
    at least one line to collect), over the orders placed in the range and not cancelled."""
    o = _ORDERS.c
    pickup = exists().where(_LINES.c.order_id == o.id, _LINES.c.fulfilment == "pickup")
    statement = (
        select(
            o.currency,
            func.count().label("orders"),
            func.sum(o.total).label("revenue"),
            func.sum(case((pickup, 1), else_=0)).label("pickup"),
        )
        .where(*order_scope(tenant, filters))
        .group_by(o.currency)
        .order_by(o.currency)
    )
    rows = (await session.execute(statement)).all()
    count = sum(int(row.orders) for row in rows)
    pickups = sum(int(row.pickup or 0) for row in rows)
    return {
        "average_order_value": {
            row.currency: {
                "amount": round(int(row.revenue) / int(row.orders)),
                "orders": int(row.orders),
                "revenue": int(row.revenue),
            }
            for row in rows
        }
        or None,
        "bopis": {"share": _rate(pickups, count), "orders": count, "pickup_orders": pickups},
    }


def _month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _month_number(month: str) -> int:
    """``YYYY-MM`` as a count of months, so that two can be subtracted."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


async def retention(session: AsyncSession, tenant: TenantContext, filters: KpiFilters) -> list[Any]:
    """Monthly cohorts: customers by the month of their first order (ever), for cohorts that
    start in the range, and the share of each cohort that ordered in each month since, up to
    the range's end. Month 0 is 1.0 by definition."""
    dialect = _dialect(session)
    o = _ORDERS.c
    cohort_start = _month_start(filters.start)
    first = (
        select(o.customer_id, func.min(o.created_at).label("first_at"))
        .where(o.tenant_id == tenant.id, o.status != "cancelled", o.created_at < filters.end)
        .group_by(o.customer_id)
        .subquery("first")
    )
    active = (
        select(o.customer_id, _month(o.created_at, dialect).label("month"))
        .where(
            o.tenant_id == tenant.id,
            o.status != "cancelled",
            o.created_at >= cohort_start,
            o.created_at < filters.end,
        )
        .distinct()
        .subquery("active")
    )
    cohort = _month(first.c.first_at, dialect)
    statement = (
        select(cohort.label("cohort"), active.c.month, func.count().label("customers"))
        .select_from(first.join(active, active.c.customer_id == first.c.customer_id))
        .where(first.c.first_at >= cohort_start)
        .group_by(cohort, active.c.month)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in (await session.execute(statement)).all():
        counts[row.cohort][row.month] = int(row.customers)
    last_month = (filters.end - timedelta(microseconds=1)).strftime("%Y-%m")
    cohorts = []
    for name in sorted(counts):
        size = counts[name].get(name, 0)
        if not size:
            continue
        first_month = _month_number(name)
        shares = []
        for number in range(first_month, _month_number(last_month) + 1):
            year, month = divmod(number, 12)
            key = f"{year:04d}-{month + 1:02d}"
            shares.append(round(counts[name].get(key, 0) / size, 4))
        cohorts.append({"cohort": name, "customers": size, "retention": shares})
    return cohorts


async def churn(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Of the customers who ordered in the period of the same length just before the range,
    the share who did not order in the range."""
    o = _ORDERS.c
    length = filters.end - filters.start

    def buyers(start: datetime, end: datetime, name: str) -> Any:
        return (
            select(o.customer_id)
            .where(
                o.tenant_id == tenant.id,
                o.status != "cancelled",
                o.created_at >= start,
                o.created_at < end,
            )
            .distinct()
            .subquery(name)
        )

    before = buyers(filters.start - length, filters.start, "before")
    during = buyers(filters.start, filters.end, "during")
    row = (
        await session.execute(
            select(
                func.count().label("customers"),
                func.count(during.c.customer_id).label("kept"),
            ).select_from(before.outerjoin(during, during.c.customer_id == before.c.customer_id))
        )
    ).one()
    customers = int(row.customers)
    return {
        "rate": _rate(customers - int(row.kept), customers),
        "customers": customers,
        "churned": customers - int(row.kept),
    }


async def historic_clv(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any] | None:
    """Per currency, what a customer has been worth so far: the totals of their orders up to
    the range's end (cancelled ones aside) less what was refunded, over the customers who
    ordered."""
    o = _ORDERS.c
    r = _RETURNS.c
    per_customer = (
        select(o.currency, o.customer_id, func.sum(o.total).label("revenue"))
        .where(o.tenant_id == tenant.id, o.status != "cancelled", o.created_at < filters.end)
        .group_by(o.currency, o.customer_id)
        .subquery("per_customer")
    )
    p = per_customer.c
    bought = (
        await session.execute(
            select(
                p.currency,
                func.sum(p.revenue).label("revenue"),
                func.count().label("customers"),
            ).group_by(p.currency)
        )
    ).all()
    if not bought:
        return None
    refunded = await session.execute(
        select(r.currency, func.sum(r.refund_amount))
        .where(r.tenant_id == tenant.id, r.created_at < filters.end)
        .group_by(r.currency)
    )
    refunds = {currency: int(amount or 0) for currency, amount in refunded.all()}
    return {
        row.currency: {
            "average": round(
                (int(row.revenue) - int(refunds.get(row.currency) or 0)) / int(row.customers)
            ),
            "customers": int(row.customers),
        }
        for row in bought
    }


async def multichannel_share(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """Of the customers active in the range, the share active in two or more channels.

    A customer's channels in the range: the kinds of the channels they wrote, called or visited
    on (inbound messages), the sales channels of their orders (a store's till counts as
    ``store``, the call center as ``phone``) and the online shop (``web`` for page views, ``app``
    for screens). With a channel filter, only the customers active on that channel count.
    """
    m, c, ch = _MESSAGES.c, _CONVERSATIONS.c, _CHANNELS.c
    o, e = _ORDERS.c, _EVENTS.c
    in_range_messages = (
        select(c.customer_id, cast(ch.kind, String).label("channel"))
        .select_from(
            _MESSAGES.join(_CONVERSATIONS, c.id == m.conversation_id).join(
                _CHANNELS, ch.id == m.channel_id
            )
        )
        .where(
            m.tenant_id == tenant.id,
            m.direction == "inbound",
            m.sent_at >= filters.start,
            m.sent_at < filters.end,
        )
    )
    store_like = o.channel.like("store:%")
    sales_medium = case(
        (store_like, literal("store")),
        *((o.channel == sales, literal(medium)) for sales, medium in _SALES_MEDIUM.items()),
        else_=o.channel,
    )
    in_range_orders = select(o.customer_id, sales_medium.label("channel")).where(
        o.tenant_id == tenant.id,
        o.status != "cancelled",
        o.created_at >= filters.start,
        o.created_at < filters.end,
    )
    visits = (
        select(
            e.customer_id,
            case((e.type == "page", literal("web")), else_=literal("app")).label("channel"),
        )
        .where(
            e.tenant_id == tenant.id,
            e.type.in_(("page", "screen")),
            e.occurred_at >= filters.start,
            e.occurred_at < filters.end,
        )
        .group_by(e.customer_id, e.type)
    )
    touches = union(in_range_messages, in_range_orders, visits).subquery("touches")
    t = touches.c
    per_customer = select(
        t.customer_id, func.count(func.distinct(t.channel)).label("channels")
    ).group_by(t.customer_id)
    if filters.channel is not None:
        wanted = filters.channel.kind or filters.channel.sales or ""
        if wanted.startswith("store:"):
            wanted = "store"
        wanted = _SALES_MEDIUM.get(wanted, wanted)
        per_customer = per_customer.having(func.sum(case((t.channel == wanted, 1), else_=0)) > 0)
    counted = per_customer.subquery("per_customer")
    row = (
        await session.execute(
            select(
                func.count().label("customers"),
                func.sum(case((counted.c.channels >= 2, 1), else_=0)).label("multichannel"),
            )
        )
    ).one()
    return {
        "share": _rate(row.multichannel, row.customers),
        "customers": int(row.customers),
        "multichannel": int(row.multichannel or 0),
    }


async def price_parity(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """At the range's end (or now, if sooner): of the SKUs priced in two or more sales channels
    in one currency, the share whose prices all sit within the tenant's parity policy."""
    moment = min(filters.end, now())
    prices = await pricing.effective_prices(session, tenant, at=moment)
    policy = await pricing.get_policy(session, tenant)
    comparable = 0
    for by_channel in prices.values():
        currencies = [price.currency for price in by_channel.values()]
        comparable += sum(1 for cur in set(currencies) if currencies.count(cur) >= 2)
    exceeding = sum(1 for item in pricing.compare(prices, policy) if item.exceeds)
    return {
        "score": _rate(comparable - exceeding, comparable),
        "comparable": comparable,
        "exceeding": exceeding,
        "at": moment.isoformat(),
    }


async def stock_outs(
    session: AsyncSession, tenant: TenantContext, filters: KpiFilters
) -> dict[str, Any]:
    """At the range's end: of the SKU-location pairs that ever held stock, the share with
    nothing on hand (the ledger's ``on_hand`` after each pair's last movement before then)."""
    s = _MOVEMENTS.c
    latest = select(
        s.variant_id,
        s.location_id,
        s.on_hand,
        func.row_number()
        .over(
            partition_by=(s.variant_id, s.location_id),
            order_by=(s.created_at.desc(), s.id.desc()),
        )
        .label("recency"),
    ).where(s.tenant_id == tenant.id, s.created_at < filters.end)
    if filters.store is not None:
        latest = latest.where(s.location_id == filters.store.location_id)
    ranked = latest.subquery("ranked")
    row = (
        await session.execute(
            select(
                func.count().label("positions"),
                func.sum(case((func.coalesce(ranked.c.on_hand, 0) <= 0, 1), else_=0)).label("out"),
            ).where(ranked.c.recency == 1)
        )
    ).one()
    return {
        "rate": _rate(row.out, row.positions),
        "positions": int(row.positions),
        "out_of_stock": int(row.out or 0),
    }


# --- everything -----------------------------------------------------------------------------


@dataclass(slots=True)
class Kpis:
    """Every figure of one range and set of filters (``as_json`` is the API's body)."""

    filters: KpiFilters
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.filters.start.isoformat(),
            "to": self.filters.end.isoformat(),
            "filters": self.filters.given(),
            **self.figures,
            "unfiltered": unfiltered(self.filters),
        }


Family = Callable[[AsyncSession], Awaitable[Any]]


async def _run_lane(session: AsyncSession, lane: Sequence[tuple[str, Family]]) -> dict[str, Any]:
    return {name: await family(session) for name, family in lane}


async def _prepare(session: AsyncSession) -> None:
    if _dialect(session) == "postgresql":
        # A month of a large tenant groups a million page views: in memory, not on disk. Only
        # for this transaction.
        await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))


async def compute(
    session: AsyncSession,
    tenant: TenantContext,
    filters: KpiFilters,
    *,
    predict_clv: bool = True,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> Kpis:
    """Every KPI of the range (one aggregate query per family; see the module docstring).

    With ``sessionmaker`` on PostgreSQL the families run in two lanes at once, the second on a
    connection of its own: a database on two cores answers both in about the time of one.
    Each lane reads its own snapshot, a moment apart; on SQLite (one connection) everything
    runs in ``session``, one after the other.
    """
    await _prepare(session)
    calendar = await business_calendar(session, tenant)
    as_of = min(filters.end, now())

    def family(function: Callable[..., Awaitable[Any]], *extra: Any) -> Family:
        return lambda lane_session: function(lane_session, tenant, filters, *extra)

    async def predicted_clv(lane_session: AsyncSession) -> Any:
        if not predict_clv:
            return None
        return await clv.tenant_prediction(lane_session, tenant, as_of=as_of)

    # Two lanes of about equal cost on a large tenant (see benchmarks/kpis.py's profile).
    first_lane: list[tuple[str, Family]] = [
        ("sessions", family(session_conversion)),
        ("responses", family(response_times, calendar)),
        ("repeats", family(repeat_contacts)),
        ("historic_clv", family(historic_clv)),
        ("calls", family(calls)),
        ("surveys", family(survey_scores)),
        ("resolution", family(resolution_times, calendar)),
        ("backlog", family(backlog)),
    ]
    second_lane: list[tuple[str, Family]] = [
        ("multichannel", family(multichannel_share)),
        ("sla", family(sla_attainment)),
        ("switches", family(channel_switches)),
        ("retention", family(retention)),
        ("churn", family(churn)),
        ("orders", family(orders)),
        ("carts", family(cart_conversion)),
        ("parity", family(price_parity)),
        ("stock", family(stock_outs)),
        ("predicted", predicted_clv),
    ]
    if sessionmaker is not None and _dialect(session) == "postgresql":

        async def in_own_session() -> dict[str, Any]:
            # Committed: the predicted CLV may ask the worker for a newer fit.
            async with sessionmaker() as lane_session, lane_session.begin():
                await _prepare(lane_session)
                return await _run_lane(lane_session, second_lane)

        found_first, found_second = await asyncio.gather(
            _run_lane(session, first_lane), in_own_session()
        )
        found = {**found_first, **found_second}
    else:
        found = await _run_lane(session, [*first_lane, *second_lane])
    surveys, order_figures = found["surveys"], found["orders"]
    predicted = found["predicted"]
    figures: dict[str, Any] = {
        "nps": surveys["nps"]["score"],
        "csat": surveys["csat"]["score"],
        "ces": surveys["ces"]["score"],
        "surveys": surveys,
        **found["responses"],
        "resolution_seconds": found["resolution"],
        "sla_attainment": found["sla"]["rate"],
        "sla": found["sla"],
        "backlog": found["backlog"],
        "repeat_contact_rate": found["repeats"]["rate"],
        "repeat_contacts": found["repeats"],
        "channel_switches_per_conversation": found["switches"]["per_conversation"],
        "channel_switches": found["switches"],
        "average_handle_time_seconds": found["calls"]["average_handle_time_seconds"],
        "missed_call_rate": found["calls"]["missed_call_rate"],
        "calls": found["calls"],
        "conversion_rate": found["carts"]["rate"],
        "conversion": {"carts": found["carts"], "sessions": found["sessions"]},
        "average_order_value": order_figures["average_order_value"],
        "bopis_share": order_figures["bopis"]["share"],
        "bopis": order_figures["bopis"],
        "retention": found["retention"],
        "churn_rate": found["churn"]["rate"],
        "churn": found["churn"],
        "clv": {
            "historic": found["historic_clv"],
            "predicted": predicted.as_json() if predicted is not None else None,
        },
        "multichannel_customer_share": found["multichannel"]["share"],
        "multichannel": found["multichannel"],
        "price_parity_score": found["parity"]["score"],
        "price_parity": found["parity"],
        "stock_out_rate": found["stock"]["rate"],
        "stock_outs": found["stock"],
    }
    return Kpis(filters=filters, figures=figures)

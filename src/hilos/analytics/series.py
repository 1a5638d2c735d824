"""The dashboard's figures over time and by channel, beside the KPIs of ``analytics.kpis``:
conversations, first responses and orders per day, conversations and first responses per
messaging channel, orders per sales channel, and the live figures of today.

What it owns: those series, never a formula of its own. Each follows the KPI module's filters
and rules (``kpis.KpiFilters``: the range ``[start, end)`` in UTC, a messaging or sales
channel, a store, a queue, an agent), reusing its conditions so that a filtered series counts
what the filtered KPI counts:

* **Conversations per day**: conversations started that UTC day by a customer message (merged
  ones, and those carrying only the business's notices, left out), in the queue or held by the
  agent filtered; with a messaging channel, those with a customer message on it in the range.
* **First response per day**: the median of the first responses (``kpis.response_times``'s
  turns: a conversation's first customer message to the first reply that was not automated)
  whose customer message came that day.
* **Orders per day**: orders placed that day and not cancelled, per currency, with their
  revenue (integer minor units), under ``kpis``'s order filters.
* **By messaging channel**: per channel kind, the conversations with a customer message on it
  in the range (a conversation that crossed two kinds counts in both) and the median first
  response of turns that began on it. **By sales channel**: orders and revenue per currency.
* **Today**: from the tenant's local midnight to now, the same filters: conversations started,
  customer messages received, orders, median first response, SLA attainment, and the backlog
  (open conversations) now.

Like the KPIs it reads the tables of every domain with aggregate queries: one per series.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics import kpis
from hilos.channels import service as channels
from hilos.channels.models import Channel
from hilos.commerce.order_models import Order
from hilos.conversations.models import Conversation, Message
from hilos.core.clock import as_utc, now
from hilos.core.tenancy import TenantContext


@dataclass(frozen=True, slots=True)
class Daily:
    """One value per UTC day of the range (``days``)."""

    days: list[date]
    conversations: list[int]
    first_response_median: list[float | None]
    # Per currency: orders and revenue (minor units) per day.
    orders: dict[str, list[int]]
    revenue: dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class ChannelRow:
    kind: str
    conversations: int
    first_response_median: float | None
    first_responses: int


@dataclass(frozen=True, slots=True)
class SalesRow:
    channel: str
    currency: str
    orders: int
    revenue: int


@dataclass(frozen=True, slots=True)
class Today:
    start: datetime
    at: datetime
    conversations: int
    messages: int
    orders: int
    revenue: dict[str, int]
    first_response_median: float | None
    sla_attainment: float | None
    backlog: int


def days_of(filters: kpis.KpiFilters) -> list[date]:
    """The UTC days the range touches."""
    first = filters.start.astimezone(UTC).date()
    last = (filters.end - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _conversation_conditions(tenant: TenantContext, filters: kpis.KpiFilters) -> list[Any]:
    c = Conversation
    conditions: list[Any] = [
        c.tenant_id == tenant.id,
        c.status != "merged",
        c.created_at >= filters.start,
        c.created_at < filters.end,
        *kpis.conversation_scope(filters),
    ]
    # Started by the customer: a conversation that only carries the business's own notices
    # (an order's status) is not a contact.
    wrote = [
        Message.conversation_id == c.id,
        Message.tenant_id == tenant.id,
        Message.direction == "inbound",
        Message.sent_at < filters.end,
    ]
    if (channel := kpis.messaging_channel(filters)) is not None:
        wrote += [
            Message.channel_id.in_(channel.channel_ids or ("",)),
            Message.sent_at >= filters.start,
        ]
    conditions.append(exists().where(*wrote))
    return conditions


async def daily(session: AsyncSession, tenant: TenantContext, filters: kpis.KpiFilters) -> Daily:
    dialect = session.get_bind().dialect.name
    days = days_of(filters)
    index = {day.isoformat(): n for n, day in enumerate(days)}

    conversations = [0] * len(days)
    day = kpis.utc_day(Conversation.created_at, dialect)
    rows = await session.execute(
        select(day, func.count()).where(*_conversation_conditions(tenant, filters)).group_by(day)
    )
    for name, count in rows.all():
        if name in index:
            conversations[index[name]] = int(count)

    turns = kpis.turns(tenant, filters).subquery("turns")
    waits: dict[int, list[float]] = defaultdict(list)
    first_turns = await session.execute(
        select(turns.c.sent_at, turns.c.answered_at).where(
            turns.c.earlier_inbound == 0, turns.c.answered_at.is_not(None)
        )
    )
    for sent_at, answered_at in first_turns.all():
        asked = as_utc(sent_at)
        position = index.get(asked.date().isoformat())
        if position is not None:
            waits[position].append((as_utc(answered_at) - asked).total_seconds())
    medians: list[float | None] = [None] * len(days)
    for position, seconds in waits.items():
        middle = kpis.percentile(sorted(seconds), 0.5)
        medians[position] = None if middle is None else round(middle, 1)

    orders: dict[str, list[int]] = {}
    revenue: dict[str, list[int]] = {}
    order_day = kpis.utc_day(Order.created_at, dialect)
    placed = await session.execute(
        select(order_day, Order.currency, func.count(), func.sum(Order.total))
        .where(*kpis.order_scope(tenant, filters))
        .group_by(order_day, Order.currency)
    )
    for name, currency, count, total in placed.all():
        if name not in index:
            continue
        orders.setdefault(currency, [0] * len(days))[index[name]] = int(count)
        revenue.setdefault(currency, [0] * len(days))[index[name]] = int(total or 0)
    return Daily(
        days=days,
        conversations=conversations,
        first_response_median=medians,
        orders=dict(sorted(orders.items())),
        revenue=dict(sorted(revenue.items())),
    )


async def by_messaging_channel(
    session: AsyncSession, tenant: TenantContext, filters: kpis.KpiFilters
) -> list[ChannelRow]:
    kinds_of = {
        channel.id: channel.kind for channel in await channels.list_channels(session, tenant)
    }
    wanted = kpis.messaging_channel(filters)
    statement = (
        select(Channel.kind, func.count(func.distinct(Message.conversation_id)))
        .select_from(Message)
        .join(Channel, Channel.id == Message.channel_id)
        .where(
            Message.tenant_id == tenant.id,
            Message.direction == "inbound",
            Message.sent_at >= filters.start,
            Message.sent_at < filters.end,
        )
        .group_by(Channel.kind)
    )
    scope = kpis.conversation_scope(filters)
    if scope:
        statement = statement.where(
            Message.conversation_id.in_(select(Conversation.id).where(*scope))
        )
    if wanted is not None:
        statement = statement.where(Message.channel_id.in_(wanted.channel_ids or ("",)))
    counts = {kind: int(count) for kind, count in (await session.execute(statement)).all()}
    calendar = await kpis.business_calendar(session, tenant)
    rows = []
    for kind in sorted(counts):
        ids = tuple(sorted(cid for cid, k in kinds_of.items() if k == kind))
        if wanted is not None:
            ids = tuple(cid for cid in ids if cid in wanted.channel_ids)
        narrowed = dataclasses.replace(
            filters, channel=kpis.ChannelFilter(value=kind, kind=kind, channel_ids=ids)
        )
        times = await kpis.response_times(session, tenant, narrowed, calendar)
        first = times["first_response_seconds"]
        rows.append(
            ChannelRow(
                kind=kind,
                conversations=counts[kind],
                first_response_median=first["median"],
                first_responses=int(first["count"]),
            )
        )
    return rows


async def by_sales_channel(
    session: AsyncSession, tenant: TenantContext, filters: kpis.KpiFilters
) -> list[SalesRow]:
    statement = (
        select(Order.channel, Order.currency, func.count(), func.sum(Order.total))
        .where(*kpis.order_scope(tenant, filters))
        .group_by(Order.channel, Order.currency)
        .order_by(Order.channel, Order.currency)
    )
    return [
        SalesRow(channel=channel, currency=currency, orders=int(count), revenue=int(total or 0))
        for channel, currency, count, total in (await session.execute(statement)).all()
    ]


def local_midnight(tenant: TenantContext, moment: datetime) -> datetime:
    """The start of ``moment``'s day in the tenant's time zone, in UTC."""
    zone = ZoneInfo(tenant.timezone)
    local = moment.astimezone(zone)
    return datetime.combine(local.date(), time(), tzinfo=zone).astimezone(UTC)


async def today(
    session: AsyncSession,
    tenant: TenantContext,
    filters: kpis.KpiFilters,
    *,
    at: datetime | None = None,
) -> Today:
    """Today's live figures under ``filters``' channel, store, queue and agent."""
    moment = at or now()
    start = local_midnight(tenant, moment)
    # Up to and including this moment: what arrived as the page is drawn counts.
    day = dataclasses.replace(filters, start=start, end=moment + timedelta(microseconds=1))
    started = (
        await session.execute(select(func.count()).where(*_conversation_conditions(tenant, day)))
    ).scalar_one()
    received = select(func.count()).where(
        Message.tenant_id == tenant.id,
        Message.direction == "inbound",
        Message.sent_at >= day.start,
        Message.sent_at < day.end,
    )
    scope = kpis.conversation_scope(day)
    if scope:
        received = received.where(
            Message.conversation_id.in_(select(Conversation.id).where(*scope))
        )
    if (channel := kpis.messaging_channel(day)) is not None:
        received = received.where(Message.channel_id.in_(channel.channel_ids or ("",)))
    messages = (await session.execute(received)).scalar_one()
    placed = await kpis.orders(session, tenant, day)
    values = placed["average_order_value"] or {}
    calendar = await kpis.business_calendar(session, tenant)
    times = await kpis.response_times(session, tenant, day, calendar)
    sla = await kpis.sla_attainment(session, tenant, day)
    return Today(
        start=start,
        at=moment,
        conversations=int(started),
        messages=int(messages),
        orders=sum(int(v["orders"]) for v in values.values()),
        revenue={currency: int(v["revenue"]) for currency, v in sorted(values.items())},
        first_response_median=times["first_response_seconds"]["median"],
        sla_attainment=sla["rate"],
        backlog=await kpis.backlog(session, tenant, day),
    )

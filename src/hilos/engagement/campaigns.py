"""Campaigns: one template broadcast to a segment, at a scheduled time, each customer on their
preferred channel under the sending rules, throttled per channel, and counted.

The worker stage ``run_due`` does the work in two steps:

1. A scheduled campaign whose time has come takes its recipients: the segment's members at
   that moment (``segments.member_ids``, page by page), one row each, all due at once.
2. A sending campaign sends to its due recipients in batches, in customer-id order (the
   sending rules lock per customer on PostgreSQL; one order everywhere avoids deadlocks).
   Each send goes through ``sending.send`` with the key ``campaign:<id>:<customer>``, so a
   batch that rolls back and runs again sends nobody twice. Per channel kind there is a budget
   of messages a minute (``throttle_per_minute``, ``"*"`` for kinds not named); once a kind
   has used it, the sends that would go on it are deferred a minute (the customer still gets
   it where they prefer), as are those the quiet hours defer, each until its ``retry_at``.
   Consent refusals and the frequency cap suppress, with the reason kept per recipient.

The campaign is ``sent`` when no recipient is pending. Its counts (``stats``) read what
happened afterwards: messages delivered and read (the delivery receipts of the queued
messages), replies (the customer wrote in the same conversation after the message) and
conversions (an order, in any channel, within ``conversion_days`` of the message). The counts
read the messages and orders tables directly: a report across domains, read-only.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from hilos.core.clock import as_utc, now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.engagement.campaign_models import Campaign, CampaignRecipient

log = structlog.get_logger(__name__)

BATCH = 200
MEMBERS_PAGE = 1000
DEFAULT_THROTTLE = 600
MAX_THROTTLE = 100_000
THROTTLE_WINDOW = timedelta(minutes=1)
CHANNEL_KINDS = ("whatsapp", "email", "sms", "messenger", "instagram", "telegram", "web_chat")


def _check_throttle(throttle: dict[str, Any]) -> dict[str, int]:
    checked: dict[str, int] = {}
    for kind, value in throttle.items():
        if kind != "*" and kind not in CHANNEL_KINDS:
            raise Invalid(
                f"throttle_per_minute names {kind!r}: use {', '.join(CHANNEL_KINDS)} or *",
                field=f"throttle_per_minute.{kind}",
            )
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_THROTTLE:
            raise Invalid(
                f"a budget is between 1 and {MAX_THROTTLE} messages a minute",
                field=f"throttle_per_minute.{kind}",
            )
        checked[kind] = value
    return checked


async def create_campaign(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str,
    segment_id: str,
    template_id: str,
    channel_order: list[str],
    throttle_per_minute: dict[str, Any],
    conversion_days: int,
    scheduled_at: datetime | None,
) -> Campaign:
    from hilos.engagement import segments, templates

    try:
        await segments.get_segment(session, tenant, segment_id)
    except NotFound as error:
        raise Invalid(
            f"segment {segment_id} does not exist", field="segment_id", code="unknown_segment"
        ) from error
    try:
        template = await templates.get_template(session, tenant, template_id)
    except NotFound as error:
        raise Invalid(
            f"template {template_id} does not exist", field="template_id", code="unknown_template"
        ) from error
    if template.purpose != "marketing":
        raise Invalid(
            "a campaign sends marketing: its template's purpose must be marketing",
            field="template_id",
        )
    for index, kind in enumerate(channel_order):
        if kind not in CHANNEL_KINDS:
            raise Invalid(f"unknown channel kind {kind!r}", field=f"channel_order.{index}")
    if not 0 < conversion_days <= 90:
        raise Invalid("conversion_days is between 1 and 90", field="conversion_days")
    moment = now()
    campaign = Campaign(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        segment_id=segment_id,
        template_id=template_id,
        channel_order=list(channel_order),
        throttle_per_minute=_check_throttle(throttle_per_minute),
        conversion_days=conversion_days,
        status="draft",
        recipients=0,
        created_at=moment,
        updated_at=moment,
    )
    session.add(campaign)
    await session.flush()
    if scheduled_at is not None:
        await schedule(session, tenant, campaign.id, at=scheduled_at)
    return campaign


async def get_campaign(session: AsyncSession, tenant: TenantContext, campaign_id: str) -> Campaign:
    return await get_owned(session, Campaign, campaign_id, tenant, what="campaign")


async def list_campaigns(session: AsyncSession, tenant: TenantContext) -> list[Campaign]:
    rows = await session.scalars(
        tenant_scope(select(Campaign), Campaign, tenant).order_by(Campaign.id.desc())
    )
    return list(rows.all())


async def schedule(
    session: AsyncSession, tenant: TenantContext, campaign_id: str, *, at: datetime | None
) -> Campaign:
    """Send at ``at`` (now when ``None``); a draft or a scheduled campaign may be (re)scheduled."""
    campaign = await get_campaign(session, tenant, campaign_id)
    if campaign.status not in ("draft", "scheduled"):
        raise Conflict(
            f"campaign {campaign.id} is {campaign.status}; it cannot be scheduled",
            code="campaign_started",
        )
    moment = now()
    when = moment if at is None else as_utc(at)
    if when < moment - timedelta(minutes=1):
        raise Invalid("scheduled_at is in the past", field="scheduled_at")
    campaign.status = "scheduled"
    campaign.scheduled_at = when
    campaign.updated_at = moment
    await session.flush()
    return campaign


async def cancel(session: AsyncSession, tenant: TenantContext, campaign_id: str) -> Campaign:
    """Stop a campaign: nobody still pending gets it; what went out stays counted."""
    campaign = await get_campaign(session, tenant, campaign_id)
    if campaign.status in ("sent", "cancelled"):
        return campaign
    moment = now()
    await session.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.campaign_id == campaign.id, CampaignRecipient.status == "pending")
        .values(status="suppressed", reason="campaign_cancelled", next_at=None)
        .execution_options(synchronize_session=False)
    )
    campaign.status = "cancelled"
    campaign.finished_at = moment
    campaign.updated_at = moment
    await session.flush()
    return campaign


# --- the worker stage ------------------------------------------------------------------------


async def run_due(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Start the campaigns whose time has come and send to due recipients; return the sends
    attempted."""
    attempted = 0
    async with sessionmaker() as session, session.begin():
        starting = (
            await session.scalars(
                select(Campaign.id, Campaign.tenant_id)
                .where(Campaign.status == "scheduled", Campaign.scheduled_at <= now())
                .order_by(Campaign.scheduled_at)
            )
        ).all()
    for campaign_id in starting:
        async with sessionmaker() as session, session.begin():
            await _start(session, campaign_id)
    async with sessionmaker() as session:
        sending_ids = list(
            (await session.scalars(select(Campaign.id).where(Campaign.status == "sending"))).all()
        )
    for campaign_id in sending_ids:
        while True:
            async with sessionmaker() as session, session.begin():
                done, count = await _send_batch(session, campaign_id)
            attempted += count
            if done or count < BATCH:
                break
    return attempted


async def _start(session: AsyncSession, campaign_id: str) -> None:
    from hilos.engagement import segments

    statement = select(Campaign).where(Campaign.id == campaign_id, Campaign.status == "scheduled")
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    campaign = (await session.scalars(statement)).one_or_none()
    if campaign is None:
        return
    tenant = TenantContext(id=campaign.tenant_id)
    moment = now()
    after: str | None = None
    total = 0
    while True:
        page = await segments.member_ids(
            session, tenant, campaign.segment_id, after=after, limit=MEMBERS_PAGE
        )
        if not page:
            break
        session.add_all(
            CampaignRecipient(
                campaign_id=campaign.id,
                customer_id=customer_id,
                tenant_id=campaign.tenant_id,
                status="pending",
                next_at=moment,
            )
            for customer_id in page
        )
        await session.flush()
        total += len(page)
        after = page[-1]
        if len(page) < MEMBERS_PAGE:
            break
    campaign.status = "sending"
    campaign.started_at = moment
    campaign.recipients = total
    campaign.updated_at = moment
    await emit(
        session,
        tenant_id=campaign.tenant_id,
        topic="campaign.started",
        payload={"campaign_id": campaign.id, "recipients": total},
    )


async def _sent_this_minute(
    session: AsyncSession, campaign_id: str, moment: datetime
) -> Counter[str]:
    rows = await session.execute(
        select(CampaignRecipient.channel_kind, func.count())
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == "queued",
            CampaignRecipient.sent_at > moment - THROTTLE_WINDOW,
        )
        .group_by(CampaignRecipient.channel_kind)
    )
    return Counter({kind: count for kind, count in rows.all() if kind})


async def _send_batch(session: AsyncSession, campaign_id: str) -> tuple[bool, int]:
    """One batch of a sending campaign; (finished, sends attempted)."""
    from hilos.engagement import sending

    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != "sending":
        return True, 0
    tenant_row = await _tenant(session, campaign.tenant_id)
    moment = now()
    due = (
        select(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.status == "pending",
            CampaignRecipient.next_at <= moment,
        )
        .order_by(CampaignRecipient.customer_id)
        .limit(BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    recipients = list((await session.scalars(due)).all())
    budget = dict(campaign.throttle_per_minute or {})
    used = await _sent_this_minute(session, campaign.id, moment)

    def throttled() -> set[str]:
        return {
            kind
            for kind in CHANNEL_KINDS
            if used[kind] >= int(budget.get(kind, budget.get("*", DEFAULT_THROTTLE)))
        }

    for recipient in recipients:
        try:
            async with session.begin_nested():
                result = await sending.send(
                    session,
                    tenant_row,
                    customer_id=recipient.customer_id,
                    template_id=campaign.template_id,
                    context={},
                    channel_order=list(campaign.channel_order or []),
                    source={"campaign_id": campaign.id},
                    idempotency_key=f"campaign:{campaign.id}:{recipient.customer_id}",
                    throttled=throttled(),
                )
        except (NotFound, Invalid, Conflict) as error:
            recipient.status, recipient.reason, recipient.next_at = "failed", error.code, None
            continue
        recipient.send_id = result.send_id
        recipient.reason = result.reason
        if result.status == "queued":
            recipient.status = "queued"
            recipient.message_id = result.message_id
            recipient.channel_kind = result.channel_kind
            recipient.sent_at = moment
            recipient.next_at = None
            if result.channel_kind:
                used[result.channel_kind] += 1
        elif result.status == "deferred":
            recipient.next_at = result.retry_at or moment + THROTTLE_WINDOW
        else:
            recipient.status = "suppressed"
            recipient.next_at = None
    await session.flush()
    pending = (
        await session.execute(
            select(func.count())
            .select_from(CampaignRecipient)
            .where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.status == "pending",
            )
        )
    ).scalar_one()
    if not pending:
        campaign.status = "sent"
        campaign.finished_at = moment
        campaign.updated_at = moment
        await emit(
            session,
            tenant_id=campaign.tenant_id,
            topic="campaign.sent",
            payload={"campaign_id": campaign.id},
        )
        return True, len(recipients)
    # Recipients wait (throttle, quiet hours): none is due in this round any more.
    return not recipients, len(recipients)


async def _tenant(session: AsyncSession, tenant_id: str) -> TenantContext:
    from hilos.core.tenancy import load_tenant

    return await load_tenant(session, tenant_id)


# --- counts ----------------------------------------------------------------------------------


async def stats(session: AsyncSession, tenant: TenantContext, campaign_id: str) -> dict[str, Any]:
    """Recipients by outcome and channel, and delivered, read, replied and converted counts."""
    from hilos.conversations.models import Message

    campaign = await get_campaign(session, tenant, campaign_id)
    by_status = dict(
        (
            await session.execute(
                select(CampaignRecipient.status, func.count())
                .where(CampaignRecipient.campaign_id == campaign.id)
                .group_by(CampaignRecipient.status)
            )
        ).all()
    )
    by_channel = dict(
        (
            await session.execute(
                select(CampaignRecipient.channel_kind, func.count())
                .where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.status == "queued",
                )
                .group_by(CampaignRecipient.channel_kind)
            )
        ).all()
    )
    reasons = dict(
        (
            await session.execute(
                select(CampaignRecipient.reason, func.count())
                .where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.status == "suppressed",
                )
                .group_by(CampaignRecipient.reason)
            )
        ).all()
    )
    delivered = await _count(
        session,
        campaign.id,
        Message.status.in_(("delivered", "read")),
        joined=True,
    )
    read = await _count(session, campaign.id, Message.status == "read", joined=True)
    # The campaign's message and the customer's answer are two rows of one table.
    sent = aliased(Message)
    answer = aliased(Message)
    replied_message = (
        select(answer.id)
        .join(sent, sent.conversation_id == answer.conversation_id)
        .where(
            sent.id == CampaignRecipient.message_id,
            answer.direction == "inbound",
            answer.sent_at > CampaignRecipient.sent_at,
        )
        .correlate(CampaignRecipient)
        .exists()
    )
    replied = await _count(session, campaign.id, replied_message)
    converted = await _converted(session, tenant, campaign)
    queued = int(by_status.get("queued", 0))
    return {
        "recipients": campaign.recipients,
        "by_status": {str(k): int(v) for k, v in by_status.items()},
        "by_channel": {str(k): int(v) for k, v in by_channel.items()},
        "suppressed_reasons": {str(k): int(v) for k, v in reasons.items()},
        "queued": queued,
        "delivered": delivered,
        "read": read,
        "replied": replied,
        "converted": converted,
        "conversion_rate": round(converted / queued, 4) if queued else None,
        "conversion_days": campaign.conversion_days,
    }


async def _converted(session: AsyncSession, tenant: TenantContext, campaign: Campaign) -> int:
    """Recipients who placed an order (any channel, not cancelled) within ``conversion_days``
    after their message. The window is applied in Python: date arithmetic in SQL differs
    between SQLite and PostgreSQL, and a campaign's recipients are read in pages."""
    from hilos.commerce.order_models import Order

    window = timedelta(days=campaign.conversion_days)
    converted = 0
    after = ""
    while True:
        page = (
            await session.execute(
                select(CampaignRecipient.customer_id, CampaignRecipient.sent_at)
                .where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.status == "queued",
                    CampaignRecipient.customer_id > after,
                )
                .order_by(CampaignRecipient.customer_id)
                .limit(MEMBERS_PAGE)
            )
        ).all()
        if not page:
            return converted
        sent = {customer_id: as_utc(at) for customer_id, at in page if at is not None}
        orders = await session.execute(
            select(Order.customer_id, Order.created_at).where(
                Order.tenant_id == tenant.id,
                Order.customer_id.in_(list(sent)),
                Order.status != "cancelled",
                Order.created_at >= min(sent.values()),
            )
        )
        buyers = {
            customer_id
            for customer_id, created_at in orders.all()
            if sent[customer_id] <= as_utc(created_at) <= sent[customer_id] + window
        }
        converted += len(buyers)
        after = page[-1][0]


async def _count(
    session: AsyncSession, campaign_id: str, condition: Any, *, joined: bool = False
) -> int:
    from hilos.conversations.models import Message

    statement = (
        select(func.count())
        .select_from(CampaignRecipient)
        .where(CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.status == "queued")
    )
    if joined:
        statement = statement.join(Message, Message.id == CampaignRecipient.message_id)
    return int((await session.execute(statement.where(condition))).scalar_one())


async def recipients_of(
    session: AsyncSession,
    tenant: TenantContext,
    campaign_id: str,
    *,
    status: str | None,
    after: str | None,
    limit: int,
) -> list[CampaignRecipient]:
    await get_campaign(session, tenant, campaign_id)
    statement = select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
    if status is not None:
        statement = statement.where(CampaignRecipient.status == status)
    if after is not None:
        statement = statement.where(CampaignRecipient.customer_id > after)
    rows = await session.scalars(
        statement.order_by(CampaignRecipient.customer_id).limit(min(limit, 1000))
    )
    return list(rows.all())

"""HTTP API of campaigns: create, schedule, cancel (supervisors), read with counts and
recipients (every key). Thin: ``campaigns`` does the work."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.engagement import campaigns
from hilos.engagement.campaign_models import Campaign

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    segment_id: str = Field(min_length=1, max_length=32)
    template_id: str = Field(min_length=1, max_length=32)
    channel_order: list[str] = Field(default_factory=list, max_length=7)
    throttle_per_minute: dict[str, int] = Field(
        default_factory=dict, description='messages a minute per channel kind: {"whatsapp": 60}'
    )
    conversion_days: int = 7
    scheduled_at: AwareDatetime | None = Field(default=None, description="empty: a draft")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = Field(default=None, description="empty: now")


class CampaignOut(BaseModel):
    id: str
    name: str
    status: str
    segment_id: str
    template_id: str
    channel_order: list[str]
    throttle_per_minute: dict[str, int]
    conversion_days: int
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stats: dict[str, Any]
    created_at: datetime


class RecipientOut(BaseModel):
    customer_id: str
    status: str
    channel_kind: str | None
    reason: str | None
    next_at: datetime | None
    sent_at: datetime | None
    send_id: str | None
    message_id: str | None


async def _out(session: DbSession, principal: Any, campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        segment_id=campaign.segment_id,
        template_id=campaign.template_id,
        channel_order=list(campaign.channel_order or []),
        throttle_per_minute=dict(campaign.throttle_per_minute or {}),
        conversion_days=campaign.conversion_days,
        scheduled_at=campaign.scheduled_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        stats=await campaigns.stats(session, principal.tenant, campaign.id),
        created_at=campaign.created_at,
    )


@router.post("", response_model=CampaignOut, status_code=201)
async def create_campaign(
    body: CampaignIn, session: DbSession, principal: SupervisorPrincipal
) -> CampaignOut:
    campaign = await campaigns.create_campaign(session, principal.tenant, **body.model_dump())
    return await _out(session, principal, campaign)


@router.get("", response_model=list[CampaignOut])
async def list_campaigns(session: DbSession, principal: CurrentPrincipal) -> list[CampaignOut]:
    found = await campaigns.list_campaigns(session, principal.tenant)
    return [await _out(session, principal, c) for c in found]


@router.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(
    campaign_id: str, session: DbSession, principal: CurrentPrincipal
) -> CampaignOut:
    campaign = await campaigns.get_campaign(session, principal.tenant, campaign_id)
    return await _out(session, principal, campaign)


@router.post("/{campaign_id}/schedule", response_model=CampaignOut)
async def schedule(
    campaign_id: str,
    session: DbSession,
    principal: SupervisorPrincipal,
    body: ScheduleIn | None = None,
) -> CampaignOut:
    campaign = await campaigns.schedule(
        session, principal.tenant, campaign_id, at=body.at if body else None
    )
    return await _out(session, principal, campaign)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel(
    campaign_id: str, session: DbSession, principal: SupervisorPrincipal
) -> CampaignOut:
    campaign = await campaigns.cancel(session, principal.tenant, campaign_id)
    return await _out(session, principal, campaign)


@router.get("/{campaign_id}/recipients", response_model=list[RecipientOut])
async def recipients(
    campaign_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    status: Literal["pending", "queued", "suppressed", "failed"] | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RecipientOut]:
    found = await campaigns.recipients_of(
        session, principal.tenant, campaign_id, status=status, after=after, limit=limit
    )
    return [
        RecipientOut(
            customer_id=r.customer_id,
            status=r.status,
            channel_kind=r.channel_kind,
            reason=r.reason,
            next_at=r.next_at,
            sent_at=r.sent_at,
            send_id=r.send_id,
            message_id=r.message_id,
        )
        for r in found
    ]

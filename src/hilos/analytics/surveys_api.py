"""HTTP API of surveys (thin: ``analytics.surveys`` does the work).

Settings: every key reads them, an admin changes them. Answers: every key records one
(``POST /v1/surveys/responses``, also what a web chat widget or a kiosk calls) and lists them;
invitations are listed for operators. The request and response models live here: they are
this router's alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hilos.analytics import surveys
from hilos.analytics.survey_models import SurveyInvitation
from hilos.channels.kinds import ChannelKind
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession
from hilos.core.errors import Invalid
from hilos.customers import service as customers
from hilos.customers.schemas import IdentityIn

router = APIRouter(prefix="/v1", tags=["surveys"])

Kind = Literal["csat", "nps", "ces"]
Id = Annotated[str, Field(min_length=1, max_length=32)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AfterConversation(Strict):
    enabled: bool = False
    delay_minutes: int = Field(
        default=surveys.DEFAULT_CSAT_DELAY_MINUTES,
        ge=0,
        le=7 * 24 * 60,
        description="minutes after the conversation is resolved",
    )


class NpsSettings(Strict):
    enabled: bool = False
    after_order: bool = Field(
        default=True, description="ask after an order is delivered or collected"
    )
    delay_days: int = Field(default=surveys.DEFAULT_NPS_DELAY_DAYS, ge=0, le=90)
    periodic: bool = Field(
        default=False,
        description="also ask customers after a resolved conversation, once per period",
    )
    period_days: int = Field(
        default=surveys.DEFAULT_NPS_PERIOD_DAYS,
        ge=1,
        le=730,
        description="never two NPS invitations (nor two answers without a subject) within it",
    )


class SettingsIn(Strict):
    csat: AfterConversation = Field(default_factory=AfterConversation)
    ces: AfterConversation = Field(default_factory=AfterConversation)
    nps: NpsSettings = Field(default_factory=NpsSettings)
    answer_window_hours: int = Field(
        default=surveys.DEFAULT_ANSWER_WINDOW_HOURS,
        ge=1,
        le=surveys.MAX_ANSWER_WINDOW_HOURS,
        description="how long after sending a bare number in a message answers the survey",
    )


class SettingsOut(BaseModel):
    csat: AfterConversation
    ces: AfterConversation
    nps: NpsSettings
    answer_window_hours: int
    scales: dict[str, tuple[int, int]]


def _settings_out(view: surveys.SurveySettingsView) -> SettingsOut:
    return SettingsOut(
        csat=AfterConversation(enabled=view.csat_enabled, delay_minutes=view.csat_delay_minutes),
        ces=AfterConversation(enabled=view.ces_enabled, delay_minutes=view.ces_delay_minutes),
        nps=NpsSettings(
            enabled=view.nps_enabled,
            after_order=view.nps_after_order,
            delay_days=view.nps_delay_days,
            periodic=view.nps_periodic,
            period_days=view.nps_period_days,
        ),
        answer_window_hours=view.answer_window_hours,
        scales=surveys.SCALES,
    )


class CustomerRef(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=200)


class ResponseIn(Strict):
    customer: CustomerRef | None = None
    customer_id: Id | None = None
    kind: Kind
    score: int = Field(description="csat 1-5, nps 0-10, ces 1-7")
    channel: ChannelKind = Field(description="the channel kind the answer came by")
    conversation_id: Id | None = None
    comment: str | None = Field(default=None, max_length=surveys.MAX_COMMENT)
    invitation_id: Id | None = None

    @model_validator(mode="after")
    def _one_customer(self) -> ResponseIn:
        if self.customer is not None and self.customer_id is not None:
            raise ValueError("name the customer by customer_id or by customer.identities, not both")
        if self.customer is None and self.customer_id is None and self.invitation_id is None:
            raise ValueError("name the customer by customer_id or by customer.identities")
        return self


class ResponseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    score: int
    comment: str | None
    channel: str
    customer_id: str
    conversation_id: str | None
    order_id: str | None
    agent_id: str | None
    queue_id: str | None
    invitation_id: str | None
    source: str
    answered_at: datetime


class ResponsePage(BaseModel):
    items: list[ResponseOut]
    next_cursor: str | None


class InvitationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    customer_id: str
    subject_key: str
    trigger: str
    conversation_id: str | None
    order_id: str | None
    status: str
    reason: str | None
    due_at: datetime
    channel_id: str | None
    channel_kind: str | None
    message_id: str | None
    language: str | None
    sent_at: datetime | None
    answered_at: datetime | None
    response_id: str | None


class InvitationPage(BaseModel):
    items: list[InvitationOut]


@router.get("/surveys/settings", response_model=SettingsOut)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> SettingsOut:
    return _settings_out(await surveys.get_settings(session, principal.tenant))


@router.put("/surveys/settings", response_model=SettingsOut)
async def put_settings(
    body: SettingsIn, session: DbSession, principal: AdminPrincipal
) -> SettingsOut:
    view = surveys.SurveySettingsView(
        csat_enabled=body.csat.enabled,
        csat_delay_minutes=body.csat.delay_minutes,
        ces_enabled=body.ces.enabled,
        ces_delay_minutes=body.ces.delay_minutes,
        nps_enabled=body.nps.enabled,
        nps_after_order=body.nps.after_order,
        nps_delay_days=body.nps.delay_days,
        nps_periodic=body.nps.periodic,
        nps_period_days=body.nps.period_days,
        answer_window_hours=body.answer_window_hours,
    )
    return _settings_out(await surveys.put_settings(session, principal.tenant, view))


@router.post("/surveys/responses", response_model=ResponseOut, status_code=201)
async def record_response(
    body: ResponseIn, session: DbSession, principal: CurrentPrincipal
) -> object:
    """Record an answer. 422 for a score outside the kind's scale; 409 ``already_answered``
    when the customer answered this survey (the same invitation, the same kind about the same
    conversation, or an NPS without subject within the NPS period)."""
    tenant = principal.tenant
    # Checked first, so a bad score creates no customer from the identities.
    surveys.check_score(body.kind, body.score)
    if body.customer_id is not None:
        customer_id = (await customers.get_customer(session, tenant, body.customer_id)).id
    elif body.customer is not None:
        resolved = await customers.identify(
            session,
            tenant,
            identities=[(i.kind, i.value) for i in body.customer.identities],
            name=body.customer.name,
            reason="survey",
            field_prefix="customer.identities",
        )
        customer_id = resolved.customer_id
    else:
        assert body.invitation_id is not None
        customer_id = (await surveys.invitation_of(session, tenant, body.invitation_id)).customer_id
    return await surveys.record_response(
        session,
        tenant,
        customer_id=customer_id,
        kind=body.kind,
        score=body.score,
        channel=body.channel,
        conversation_id=body.conversation_id,
        comment=body.comment,
        invitation_id=body.invitation_id,
        source="api",
    )


_RESPONSE_FILTERS = frozenset({"kind", "from", "to", "channel", "customer_id", "cursor", "limit"})


@router.get("/surveys/responses", response_model=ResponsePage)
async def list_responses(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    kind: Kind | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    channel: ChannelKind | None = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ResponsePage:
    """Answers, newest first; ``from`` (inclusive) and ``to`` (exclusive) are ISO 8601 times
    with a zone."""
    unknown = sorted(set(request.query_params) - _RESPONSE_FILTERS)
    if unknown:
        raise Invalid(
            f"unknown filter {', '.join(unknown)}; use {', '.join(sorted(_RESPONSE_FILTERS))}",
            field=unknown[0],
            code="unknown_filter",
        )
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise Invalid(
                f"{name} needs a time zone (for example 2026-01-31T00:00:00Z)", field=name
            )
    if start is not None and end is not None and end <= start:
        raise Invalid("the date range is upside down: to must be after from", field="to")
    rows, next_cursor = await surveys.list_responses(
        session,
        principal.tenant,
        kind=kind,
        start=start,
        end=end,
        channel=channel,
        customer_id=customer_id,
        cursor=cursor,
        limit=limit,
    )
    return ResponsePage(
        items=[ResponseOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get("/surveys/invitations", response_model=InvitationPage)
async def list_invitations(
    session: DbSession,
    principal: CurrentPrincipal,
    kind: Kind | None = None,
    status: Literal["pending", "sent", "answered", "skipped"] | None = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    conversation_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> InvitationPage:
    """Invitations, newest first: what was asked, of whom, by which channel, and what became
    of it (``reason`` says why one was skipped)."""
    rows: list[SurveyInvitation] = await surveys.list_invitations(
        session,
        principal.tenant,
        kind=kind,
        status=status,
        customer_id=customer_id,
        conversation_id=conversation_id,
        limit=limit,
    )
    return InvitationPage(items=[InvitationOut.model_validate(row) for row in rows])

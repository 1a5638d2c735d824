"""HTTP API of business hours, SLA policies and staffing figures (thin: ``sla`` does the work).

Reading is open to every key of the tenant; changing hours and policies needs a supervisor.
The request and response models live here too: they are this router's alone (the SLA of a
conversation is part of the conversation's own response, in ``conversations.schemas``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hilos.channels.kinds import ChannelKind
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import Invalid
from hilos.routing import erlang, sla
from hilos.routing.hours import WEEKDAYS, BusinessCalendar, CalendarError, parse_zone
from hilos.routing.sla_models import SlaPolicy

router = APIRouter(prefix="/v1", tags=["sla"])

Priority = Literal["low", "normal", "high", "urgent"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# A target of up to a year.
TargetSeconds = Annotated[int, Field(gt=0, le=31_536_000)]
# ["09:00", "14:00"]: checked as times by ``hours.BusinessCalendar.build``.
IntervalIn = Annotated[list[Annotated[str, Field(max_length=5)]], Field(min_length=2, max_length=2)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BusinessHoursIn(Strict):
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA zone; null follows the tenant's"
    )
    weekly: dict[Weekday, Annotated[list[IntervalIn], Field(max_length=48)]] = Field(
        description='per weekday, intervals ["HH:MM", "HH:MM"] (an end may be "24:00"); '
        "a missing day is closed",
        examples=[{"mon": [["09:00", "14:00"], ["16:00", "19:00"]]}],
    )
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_zone(value)
            except CalendarError as error:
                raise ValueError(str(error)) from error
        return value


class BusinessHoursOut(BaseModel):
    timezone: str
    weekly: dict[str, list[list[str]]]
    holidays: list[str]
    # False: nothing stored, so business hours are around the clock.
    configured: bool


def _hours_out(
    calendar: BusinessCalendar, holidays: list[str], configured: bool
) -> BusinessHoursOut:
    return BusinessHoursOut(
        timezone=calendar.zone.key,
        weekly=calendar.to_weekly(),
        holidays=holidays,
        configured=configured,
    )


@router.get("/business-hours", response_model=BusinessHoursOut)
async def get_business_hours(session: DbSession, principal: CurrentPrincipal) -> BusinessHoursOut:
    row, calendar = await sla.get_business_hours(session, principal.tenant)
    return _hours_out(calendar, list(row.holidays) if row else [], row is not None)


@router.put("/business-hours", response_model=BusinessHoursOut)
async def put_business_hours(
    body: BusinessHoursIn, session: DbSession, principal: SupervisorPrincipal
) -> BusinessHoursOut:
    row, calendar = await sla.set_business_hours(
        session,
        principal.tenant,
        timezone=body.timezone,
        weekly={day: body.weekly[day] for day in WEEKDAYS if day in body.weekly},
        holidays=[day.isoformat() for day in body.holidays],
    )
    return _hours_out(calendar, list(row.holidays), True)


class SlaPolicyIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    channel_kinds: list[ChannelKind] | None = Field(
        default=None, min_length=1, description="null: every channel kind"
    )
    priority: Priority | None = Field(default=None, description="null: any priority")
    first_response_seconds: TargetSeconds | None = None
    next_response_seconds: TargetSeconds | None = None
    resolution_seconds: TargetSeconds | None = None
    business_hours: bool = Field(
        default=False, description="count the tenant's business hours (else around the clock)"
    )
    warning_share: float = Field(default=0.8, gt=0, lt=1)


class SlaPolicyUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    channel_kinds: list[ChannelKind] | None = Field(default=None, min_length=1)
    priority: Priority | None = None
    first_response_seconds: TargetSeconds | None = None
    next_response_seconds: TargetSeconds | None = None
    resolution_seconds: TargetSeconds | None = None
    business_hours: bool | None = None
    warning_share: float | None = Field(default=None, gt=0, lt=1)


class SlaPolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    channel_kinds: list[str] | None
    priority: str | None
    first_response_seconds: int | None
    next_response_seconds: int | None
    resolution_seconds: int | None
    business_hours: bool
    warning_share: float
    created_at: datetime
    updated_at: datetime


class SlaPolicyList(BaseModel):
    items: list[SlaPolicyOut]


def _fields(body: SlaPolicyIn | SlaPolicyUpdate) -> dict[str, object]:
    fields = body.model_dump(exclude_unset=True)
    if fields.get("name") is None and "name" in fields:
        raise Invalid("name cannot be null", field="name")
    if fields.get("channel_kinds") is not None:
        fields["channel_kinds"] = sorted(set(fields["channel_kinds"]))
    return fields


@router.get("/sla-policies", response_model=SlaPolicyList)
async def list_policies(session: DbSession, principal: CurrentPrincipal) -> SlaPolicyList:
    policies = await sla.list_policies(session, principal.tenant)
    return SlaPolicyList(items=[SlaPolicyOut.model_validate(p) for p in policies])


@router.post("/sla-policies", response_model=SlaPolicyOut, status_code=201)
async def create_policy(
    body: SlaPolicyIn, session: DbSession, principal: SupervisorPrincipal
) -> SlaPolicy:
    return await sla.create_policy(session, principal.tenant, **_fields(body))


@router.get("/sla-policies/{policy_id}", response_model=SlaPolicyOut)
async def get_policy(policy_id: str, session: DbSession, principal: CurrentPrincipal) -> SlaPolicy:
    return await sla.get_policy(session, principal.tenant, policy_id)


@router.patch("/sla-policies/{policy_id}", response_model=SlaPolicyOut)
async def update_policy(
    policy_id: str, body: SlaPolicyUpdate, session: DbSession, principal: SupervisorPrincipal
) -> SlaPolicy:
    return await sla.update_policy(session, principal.tenant, policy_id, _fields(body))


@router.delete("/sla-policies/{policy_id}", status_code=204)
async def delete_policy(policy_id: str, session: DbSession, principal: SupervisorPrincipal) -> None:
    await sla.delete_policy(session, principal.tenant, policy_id)


MAX_TRAFFIC = 100_000


class StaffingRow(BaseModel):
    agents: int
    service_level: float
    average_speed_of_answer_seconds: float | None


class StaffingOut(BaseModel):
    traffic_erlangs: float
    agents_needed: int
    rows: list[StaffingRow]


@router.get("/staffing", response_model=StaffingOut)
async def staffing(
    _principal: CurrentPrincipal,
    calls: Annotated[float, Query(ge=0, le=1e7, description="calls (or chats) in the period")],
    period_seconds: Annotated[float, Query(gt=0, le=86_400 * 31)] = 1800,
    aht_seconds: Annotated[float, Query(gt=0, le=86_400)] = 180,
    target_seconds: Annotated[float, Query(ge=0, le=86_400)] = 20,
    target_service_level: Annotated[float, Query(gt=0, lt=1)] = 0.8,
) -> StaffingOut:
    """Erlang C: the agents a load needs for a service level, and the service level of a few
    pool sizes around that number."""
    load = erlang.traffic(calls, period_seconds, aht_seconds)
    if load > MAX_TRAFFIC:
        raise Invalid(
            f"that is {load:.0f} erlangs of traffic; this page sizes pools up to {MAX_TRAFFIC}",
            field="calls",
        )
    needed = erlang.agents_needed(
        calls, period_seconds, aht_seconds, target_seconds, target_service_level
    )
    rows = []
    for agents in range(max(0, needed - 3), needed + 4):
        asa = erlang.average_speed_of_answer(calls, period_seconds, aht_seconds, agents)
        rows.append(
            StaffingRow(
                agents=agents,
                service_level=round(
                    erlang.service_level(
                        calls, period_seconds, aht_seconds, agents, target_seconds
                    ),
                    4,
                ),
                average_speed_of_answer_seconds=None if asa == float("inf") else round(asa, 2),
            )
        )
    return StaffingOut(
        traffic_erlangs=round(load, 4),
        agents_needed=needed,
        rows=rows,
    )

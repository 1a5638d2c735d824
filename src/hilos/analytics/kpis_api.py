"""HTTP API of the KPIs: ``GET /v1/kpis`` (thin: ``kpis`` does the work).

Every key of the tenant may read them. The query takes ``from`` and ``to`` (ISO dates or
date-times, UTC; a date as ``to`` includes that whole day; default: the last 30 days) and the
filters ``channel``, ``store``, ``queue`` and ``agent``. Anything else in the query is refused
with a 422 naming it, so a misspelt filter never comes back as an unfiltered figure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hilos.analytics import kpis
from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.core.errors import Invalid

router = APIRouter(prefix="/v1", tags=["kpis"])

PARAMETERS = ("from", "to", "channel", "store", "queue", "agent")


class BusinessHoursDurations(BaseModel):
    median: float | None
    p90: float | None


class Durations(BaseModel):
    median: float | None = Field(description="seconds; null without any")
    p90: float | None
    count: int
    unanswered: int | None = Field(default=None, description="turns still waiting for a reply")
    business_hours: BusinessHoursDurations


class KpisOut(BaseModel):
    """The figures of the range; ``docs/kpis.md`` gives each one's formula. A figure with
    nothing to count is null. Besides the headline figures, objects named after them
    (``surveys``, ``sla``, ``repeat_contacts``, ``calls``, ``conversion``...) carry the counts
    behind each one; ``unfiltered`` lists the figures a given filter could not apply to."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    filters: dict[str, str]
    nps: int | None = Field(description="-100..100")
    csat: float | None = Field(description="% of CSAT answers 4-5")
    ces: float | None = Field(description="mean CES score, 1-7")
    first_response_seconds: Durations
    next_response_seconds: Durations
    resolution_seconds: Durations
    sla_attainment: float | None
    backlog: int
    conversion_rate: float | None
    multichannel_customer_share: float | None
    repeat_contact_rate: float | None
    average_handle_time_seconds: float | None
    missed_call_rate: float | None
    average_order_value: dict[str, dict[str, int]] | None
    bopis_share: float | None
    retention: list[dict[str, Any]]
    churn_rate: float | None
    clv: dict[str, Any]
    channel_switches_per_conversation: float | None
    price_parity_score: float | None
    stock_out_rate: float | None
    unfiltered: dict[str, list[str]]


def query_filters(request: Request) -> dict[str, str | None]:
    """The query's parameters, each given at most once; an unknown one is a 422 naming it."""
    unknown = sorted(set(request.query_params) - set(PARAMETERS))
    if unknown:
        raise Invalid(
            f"unknown parameter {unknown[0]!r}: the KPIs take {', '.join(PARAMETERS)}",
            field=unknown[0],
            code="unknown_parameter",
        )
    found: dict[str, str | None] = {}
    for name in PARAMETERS:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise Invalid(f"give {name} once", field=name)
        found[name] = (values[0].strip() or None) if values else None
    return found


async def filters_of(session: Any, principal: Any, request: Request) -> kpis.KpiFilters:
    """The range and filters of a KPI request (also used by the dashboard's pages)."""
    given = query_filters(request)
    default_start, end = kpis.default_range()
    if given["to"]:
        end = kpis.parse_moment(given["to"], field="to", end=True)
        default_start = end - timedelta(days=kpis.DEFAULT_RANGE_DAYS)
    start = (
        kpis.parse_moment(given["from"], field="from", end=False)
        if given["from"]
        else default_start
    )
    return await kpis.resolve_filters(
        session,
        principal.tenant,
        start=start,
        end=end,
        channel=given["channel"],
        store=given["store"],
        queue=given["queue"],
        agent=given["agent"],
    )


@router.get("/kpis", response_model=KpisOut, response_model_by_alias=True)
async def get_kpis(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    _from: Annotated[
        str | None,
        Query(alias="from", max_length=40, description="ISO date or date-time (UTC)"),
    ] = None,
    _to: Annotated[
        str | None, Query(alias="to", max_length=40, description="a date includes that day")
    ] = None,
    _channel: Annotated[
        str | None,
        Query(
            alias="channel",
            max_length=64,
            description="a channel id, a channel kind or a sales channel (web, store:MAD01...)",
        ),
    ] = None,
    _store: Annotated[str | None, Query(alias="store", description="a location code")] = None,
    _queue: Annotated[str | None, Query(alias="queue", description="a queue id")] = None,
    _agent: Annotated[str | None, Query(alias="agent", description="a user id")] = None,
) -> Any:
    """Every KPI of a date range, optionally for one channel, store, queue or agent (the
    parameters are read from the query as a whole, so that an unknown one is refused)."""
    filters = await filters_of(session, principal, request)
    result = await kpis.compute(
        session, principal.tenant, filters, sessionmaker=request.app.state.sessionmaker
    )
    return result.as_json()

"""HTTP API of journeys: definitions (supervisors change them, every key reads), where each
customer is, and the abandoned-cart journey ready to use. Thin: ``journeys`` does the work."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.engagement import journey_examples, journeys
from hilos.engagement.journey_models import Journey, JourneyRun

router = APIRouter(prefix="/v1", tags=["journeys"])

Reentry = Literal["never", "after_exit", "always"]


class JourneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    trigger: dict[str, Any] = Field(description='{"event": "cart.abandoned"}')
    definition: dict[str, Any] = Field(description='{"start": "s1", "steps": [...]}')
    exit_on: list[str] = Field(default_factory=list, max_length=20)
    reentry: Reentry = "after_exit"


class JourneyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    trigger: dict[str, Any] | None = None
    definition: dict[str, Any] | None = None
    exit_on: list[str] | None = Field(default=None, max_length=20)
    reentry: Reentry | None = None
    status: Literal["draft", "active", "paused", "archived"] | None = None


class JourneyOut(BaseModel):
    id: str
    name: str
    status: str
    trigger: dict[str, Any]
    definition: dict[str, Any]
    exit_on: list[str]
    reentry: str
    counts: dict[str, int]
    created_at: datetime
    updated_at: datetime


class StepOut(BaseModel):
    step_id: str
    step_type: str
    outcome: str
    detail: dict[str, Any] | None
    at: datetime


class RunOut(BaseModel):
    id: str
    journey_id: str
    customer_id: str
    status: str
    step_id: str | None
    next_at: datetime | None
    steps_taken: int
    exit_reason: str | None
    entered_at: datetime
    ended_at: datetime | None
    context: dict[str, Any]
    steps: list[StepOut] | None = None


class ExampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activate: bool = False
    name: str = Field(default="Carrito abandonado", min_length=1, max_length=200)


async def _out(session: DbSession, principal: Any, journey: Journey) -> JourneyOut:
    counts = await journeys.journey_counts(session, principal.tenant, journey.id)
    return JourneyOut(
        id=journey.id,
        name=journey.name,
        status=journey.status,
        trigger=journey.trigger,
        definition=journey.definition,
        exit_on=list(journey.exit_on or []),
        reentry=journey.reentry,
        counts=counts,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )


def _run_out(run: JourneyRun, steps: list[Any] | None = None) -> RunOut:
    return RunOut(
        id=run.id,
        journey_id=run.journey_id,
        customer_id=run.customer_id,
        status=run.status,
        step_id=run.step_id,
        next_at=run.next_at,
        steps_taken=run.steps_taken,
        exit_reason=run.exit_reason,
        entered_at=run.entered_at,
        ended_at=run.ended_at,
        context=run.context or {},
        steps=None
        if steps is None
        else [
            StepOut(
                step_id=s.step_id,
                step_type=s.step_type,
                outcome=s.outcome,
                detail=s.detail,
                at=s.at,
            )
            for s in steps
        ],
    )


@router.post("/journeys", response_model=JourneyOut, status_code=201)
async def create_journey(
    body: JourneyIn, session: DbSession, principal: SupervisorPrincipal
) -> JourneyOut:
    """A journey, saved as a draft; steps that loop, a wait with no exit, an unknown template
    or segment are refused with 422 naming the step."""
    journey = await journeys.create_journey(session, principal.tenant, **body.model_dump())
    return await _out(session, principal, journey)


@router.get("/journeys", response_model=list[JourneyOut])
async def list_journeys(session: DbSession, principal: CurrentPrincipal) -> list[JourneyOut]:
    return [
        await _out(session, principal, j)
        for j in await journeys.list_journeys(session, principal.tenant)
    ]


@router.get("/journeys/{journey_id}", response_model=JourneyOut)
async def get_journey(
    journey_id: str, session: DbSession, principal: CurrentPrincipal
) -> JourneyOut:
    return await _out(
        session, principal, await journeys.get_journey(session, principal.tenant, journey_id)
    )


@router.patch("/journeys/{journey_id}", response_model=JourneyOut)
async def update_journey(
    journey_id: str, body: JourneyPatch, session: DbSession, principal: SupervisorPrincipal
) -> JourneyOut:
    """Change a journey; ``status: active`` starts it, ``paused`` holds its runs where they
    are, ``archived`` ends them."""
    journey = await journeys.update_journey(
        session, principal.tenant, journey_id, body.model_dump(exclude_unset=True)
    )
    return await _out(session, principal, journey)


@router.get("/journeys/{journey_id}/runs", response_model=list[RunOut])
async def runs_of_journey(
    journey_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    status: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RunOut]:
    runs = await journeys.runs_of_journey(
        session, principal.tenant, journey_id, status=status, after=after, limit=limit
    )
    return [_run_out(run) for run in runs]


@router.get("/journey-runs/{run_id}", response_model=RunOut)
async def get_run(run_id: str, session: DbSession, principal: CurrentPrincipal) -> RunOut:
    from hilos.core.tenancy import get_owned

    run = await get_owned(session, JourneyRun, run_id, principal.tenant, what="journey run")
    return _run_out(run, await journeys.steps_of_run(session, principal.tenant, run.id))


@router.get("/customers/{customer_id}/journeys", response_model=list[RunOut])
async def runs_of_customer(
    customer_id: str, session: DbSession, principal: CurrentPrincipal
) -> list[RunOut]:
    """Every journey the customer is in or went through, and where they are in it."""
    runs = await journeys.runs_of_customer(session, principal.tenant, customer_id)
    return [_run_out(run) for run in runs]


@router.post("/journeys/examples/abandoned-cart", response_model=JourneyOut, status_code=201)
async def abandoned_cart_example(
    session: DbSession, principal: SupervisorPrincipal, body: ExampleIn | None = None
) -> JourneyOut:
    """The abandoned-cart journey, ready to use: its reminder template (es/en, every channel)
    and the journey (remind on the preferred channel, remind again with recommendations a day
    later, exit as soon as the customer buys in any channel)."""
    options = body or ExampleIn()
    journey = await journey_examples.abandoned_cart(
        session, principal.tenant, name=options.name, activate=options.activate
    )
    return await _out(session, principal, journey)

"""HTTP API of loyalty: the program, movements asked for by a till or the call center, and a
customer's points. Thin: validates the shape of requests and calls ``hilos.commerce.loyalty``.

A movement answers 201 when recorded and 200 when its idempotency key was already used for
the same movement (nothing changes). Adjustments need a supervisor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from hilos.commerce import loyalty
from hilos.commerce.loyalty_schemas import (
    CustomerLoyaltyOut,
    MovementIn,
    MovementOut,
    ProgramIn,
    ProgramOut,
    TierOut,
)
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession
from hilos.core.errors import Forbidden, Invalid
from hilos.customers import service as customers

router = APIRouter(tags=["loyalty"])


def _program_out(program: loyalty.Program) -> ProgramOut:
    return ProgramOut(
        earn_rules={
            channel: {currency: float(rate) for currency, rate in rule.items()}
            for channel, rule in program.earn_rules.items()
        },
        default_earn_rule={k: float(v) for k, v in program.default_earn_rule.items()},
        tiers=[TierOut.model_validate(tier) for tier in program.tiers],
        redemption_values=dict(program.redemption_values),
        min_redemption_points=program.min_redemption_points,
        updated_at=program.updated_at,
    )


@router.put("/v1/loyalty/program", response_model=ProgramOut)
async def set_program(body: ProgramIn, session: DbSession, principal: AdminPrincipal) -> ProgramOut:
    program = await loyalty.set_program(
        session,
        principal.tenant,
        earn_rules=body.earn_rules,
        default_earn_rule=body.default_earn_rule,
        tiers=[tier.model_dump() for tier in body.tiers],
        redemption_values=body.redemption_values,
        min_redemption_points=body.min_redemption_points,
    )
    return _program_out(program)


@router.get("/v1/loyalty/program", response_model=ProgramOut)
async def get_program(session: DbSession, principal: CurrentPrincipal) -> ProgramOut:
    return _program_out(await loyalty.require_program(session, principal.tenant))


@router.post("/v1/loyalty/movements", response_model=MovementOut, status_code=201)
async def record_movement(
    body: MovementIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> loyalty.Movement:
    if (body.customer_id is None) == (body.customer is None):
        raise Invalid("give customer_id or customer (identities), one of them", field="customer_id")
    if body.kind == "adjust" and not principal.at_least("supervisor"):
        raise Forbidden(
            f"an adjustment needs the supervisor role; this key has the {principal.role} role"
        )
    customer_id = body.customer_id
    if body.customer is not None:
        resolved = await customers.identify(
            session,
            principal.tenant,
            identities=[(i.kind, i.value) for i in body.customer.identities],
            field_prefix="customer.identities",
        )
        customer_id = resolved.customer_id
    assert customer_id is not None
    movement = await loyalty.record_movement(
        session,
        principal.tenant,
        customer_id=customer_id,
        kind=body.kind,
        idempotency_key=body.idempotency_key,
        points=body.points,
        amount=body.amount,
        currency=body.currency,
        channel=body.channel,
        reference=body.reference,
        reason=body.reason,
    )
    if not movement.created:
        response.status_code = 200
    return movement


@router.get("/v1/customers/{customer_id}/loyalty", response_model=CustomerLoyaltyOut)
async def customer_loyalty(
    customer_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    before: Annotated[
        str | None, Query(max_length=32, description="id of the last movement seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CustomerLoyaltyOut:
    page = await loyalty.customer_loyalty(
        session, principal.tenant, customer_id, before=before, limit=limit
    )
    return CustomerLoyaltyOut.model_validate(
        {**page, "movements": [MovementOut.model_validate(m) for m in page["movements"]]}
    )

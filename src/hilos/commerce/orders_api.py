"""HTTP API of orders and returns. Thin: validates the shape of requests and calls
``hilos.commerce.orders`` and ``hilos.commerce.returns``.

``POST /v1/orders`` answers 201 with the order; a resend with the same ``idempotency_key``
answers 200 with the same order (and header ``Idempotent-Replayed: true``); the same key with
another body is 409 ``idempotency_key_reused``. ``POST /v1/returns`` behaves the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hilos.commerce import orders, returns, sourcing, stock
from hilos.commerce.order_models import Order, Return
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.customers.schemas import IdentityIn

router = APIRouter(tags=["orders"])

Code = Annotated[str, Field(min_length=1, max_length=64)]
Key = Annotated[str, Field(min_length=1, max_length=200)]


class CustomerRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=32)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=10)
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _named(self) -> CustomerRef:
        if self.id is None and not self.identities:
            raise ValueError("name the customer by id or by identities")
        return self


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    quantity: int = Field(gt=0, le=stock.MAX_QUANTITY)
    fulfilment: Literal["ship", "pickup", "in_store"] = "ship"
    location: Code | None = None


class ShipTo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, max_length=500)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: CustomerRef
    channel: Code
    lines: list[LineIn] = Field(min_length=1, max_length=orders.MAX_LINES)
    idempotency_key: Key
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    ship_to: ShipTo | None = None
    loyalty_points: int = Field(default=0, ge=0, le=1_000_000_000)


class LineOut(BaseModel):
    id: str
    sku: str
    name: str
    quantity: int
    unit_price: int
    fulfilment: str
    location: str
    pickup_location: str | None
    ready_by: datetime | None
    status: str
    returned_quantity: int


class HistoryOut(BaseModel):
    status: str
    previous_status: str | None
    at: datetime
    by_user_id: str | None
    note: str | None
    notification: dict[str, Any] | None


class OrderOut(BaseModel):
    id: str
    number: str
    status: str
    customer_id: str
    channel: str
    currency: str
    subtotal: int
    discount: int
    total: int
    loyalty_points_redeemed: int
    idempotency_key: str
    ship_to: dict[str, Any] | None
    sourcing: dict[str, Any]
    lines: list[LineOut]
    history: list[HistoryOut]
    created_at: datetime
    updated_at: datetime


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[
        "allocated",
        "picked",
        "ready_for_pickup",
        "shipped",
        "collected",
        "delivered",
        "cancelled",
    ]
    note: str | None = Field(default=None, max_length=500)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class SettingsIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sourcing_rule: Literal["single_location_first", "fewest_shipments", "nearest"] = (
        sourcing.DEFAULT_RULE  # type: ignore[assignment]
    )
    transfer_lead_hours: int = Field(
        default=orders.DEFAULT_TRANSFER_LEAD_HOURS, ge=0, le=orders.MAX_TRANSFER_LEAD_HOURS
    )
    notify_customer: bool = True


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Code
    fulfilment: Literal["ship", "pickup", "in_store"] = "ship"
    location: Code | None = None
    idempotency_key: Key
    ship_to: ShipTo | None = None
    loyalty_points: int = Field(default=0, ge=0, le=1_000_000_000)


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    quantity: int = Field(gt=0, le=stock.MAX_QUANTITY)
    resellable: bool = True


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=32)
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=orders.MAX_LINES)
    location: Code
    method: Literal["store", "post"] | None = None
    resolution: Literal["refund", "exchange"] = "refund"
    exchange_lines: list[LineIn] | None = Field(default=None, max_length=orders.MAX_LINES)
    reason: str | None = Field(default=None, max_length=500)
    idempotency_key: Key | None = None


class ReturnLineOut(BaseModel):
    sku: str
    quantity: int
    refund_amount: int
    resellable: bool
    restocked: bool


class ReturnOut(BaseModel):
    id: str
    order_id: str
    customer_id: str
    location: str
    method: str
    resolution: str
    currency: str
    refund_amount: int
    loyalty_points_reversed: int
    exchange_order_id: str | None
    reason: str | None
    lines: list[ReturnLineOut]
    created_at: datetime


def _mark_replay(response: Response, *, created: bool) -> None:
    """A resend answers 200 with the first result, and says so."""
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"


async def _order_out(session: DbSession, principal: Any, order: Order) -> OrderOut:
    tenant = principal.tenant
    lines = await orders.lines_of(session, tenant, order.id)
    history = await orders.history_of(session, tenant, order.id)
    return OrderOut(
        id=order.id,
        number=orders.order_number(order.id),
        status=order.status,
        customer_id=order.customer_id,
        channel=order.channel,
        currency=order.currency,
        subtotal=order.subtotal,
        discount=order.discount,
        total=order.total,
        loyalty_points_redeemed=order.loyalty_points_redeemed,
        idempotency_key=order.idempotency_key,
        ship_to=order.ship_to,
        sourcing=order.sourcing,
        lines=[
            LineOut(
                id=line.id,
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                fulfilment=line.fulfilment,
                location=line.source_location,
                pickup_location=line.pickup_location,
                ready_by=line.ready_by,
                status=line.status,
                returned_quantity=line.returned_quantity,
            )
            for line in lines
        ],
        history=[
            HistoryOut(
                status=h.status,
                previous_status=h.previous_status,
                at=h.created_at,
                by_user_id=h.by_user_id,
                note=h.note,
                notification=h.notification,
            )
            for h in history
        ],
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


@router.post("/v1/orders", response_model=OrderOut, status_code=201)
async def place_order(
    body: OrderIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> OrderOut:
    placed = await orders.place_order(
        session,
        principal.tenant,
        channel=body.channel,
        lines=[
            orders.LineRequest(line.sku, line.quantity, line.fulfilment, line.location)
            for line in body.lines
        ],
        idempotency_key=body.idempotency_key,
        customer_id=body.customer.id,
        identities=[(i.kind, i.value) for i in body.customer.identities],
        customer_name=body.customer.name,
        currency=body.currency.upper() if body.currency else None,
        ship_to=body.ship_to.model_dump(exclude_none=True) if body.ship_to else None,
        loyalty_points=body.loyalty_points,
        by_user_id=principal.user_id,
    )
    _mark_replay(response, created=placed.created)
    return await _order_out(session, principal, placed.order)


@router.post("/v1/carts/{cart_id}/checkout", response_model=OrderOut, status_code=201)
async def checkout(
    cart_id: str,
    body: CheckoutIn,
    response: Response,
    session: DbSession,
    principal: CurrentPrincipal,
) -> OrderOut:
    placed = await orders.checkout_cart(
        session,
        principal.tenant,
        cart_id,
        channel=body.channel,
        fulfilment=body.fulfilment,
        location=body.location,
        idempotency_key=body.idempotency_key,
        ship_to=body.ship_to.model_dump(exclude_none=True) if body.ship_to else None,
        loyalty_points=body.loyalty_points,
        by_user_id=principal.user_id,
    )
    _mark_replay(response, created=placed.created)
    return await _order_out(session, principal, placed.order)


@router.get("/v1/orders", response_model=list[OrderOut])
async def list_orders(
    session: DbSession,
    principal: CurrentPrincipal,
    customer_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[OrderOut]:
    found = await orders.list_orders(
        session, principal.tenant, customer_id=customer_id, status=status, after=after, limit=limit
    )
    return [await _order_out(session, principal, order) for order in found]


@router.get("/v1/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: str, session: DbSession, principal: CurrentPrincipal) -> OrderOut:
    order = await orders.get_order(session, principal.tenant, order_id)
    return await _order_out(session, principal, order)


@router.post("/v1/orders/{order_id}/status", response_model=OrderOut)
async def advance(
    order_id: str, body: StatusIn, session: DbSession, principal: CurrentPrincipal
) -> OrderOut:
    order = await orders.advance(
        session,
        principal.tenant,
        order_id,
        status=body.status,
        by_user_id=principal.user_id,
        note=body.note,
    )
    return await _order_out(session, principal, order)


@router.post("/v1/orders/{order_id}/cancel", response_model=OrderOut)
async def cancel(
    order_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    body: CancelIn | None = None,
) -> OrderOut:
    order = await orders.cancel(
        session,
        principal.tenant,
        order_id,
        by_user_id=principal.user_id,
        reason=body.reason if body else None,
    )
    return await _order_out(session, principal, order)


@router.get("/v1/orders-settings", response_model=SettingsIO)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> SettingsIO:
    view = await orders.get_settings(session, principal.tenant)
    return SettingsIO(
        sourcing_rule=view.sourcing_rule,
        transfer_lead_hours=view.transfer_lead_hours,
        notify_customer=view.notify_customer,
    )


@router.put("/v1/orders-settings", response_model=SettingsIO)
async def set_settings(
    body: SettingsIO, session: DbSession, principal: SupervisorPrincipal
) -> SettingsIO:
    await orders.set_settings(session, principal.tenant, **body.model_dump())
    return body


async def _return_out(session: DbSession, principal: Any, ret: Return) -> ReturnOut:
    lines = await returns.lines_of(session, principal.tenant, ret.id)
    return ReturnOut(
        id=ret.id,
        order_id=ret.order_id,
        customer_id=ret.customer_id,
        location=ret.location,
        method=ret.method,
        resolution=ret.resolution,
        currency=ret.currency,
        refund_amount=ret.refund_amount,
        loyalty_points_reversed=ret.loyalty_points_reversed,
        exchange_order_id=ret.exchange_order_id,
        reason=ret.reason,
        lines=[
            ReturnLineOut(
                sku=line.sku,
                quantity=line.quantity,
                refund_amount=line.refund_amount,
                resellable=line.resellable,
                restocked=line.restocked,
            )
            for line in lines
        ],
        created_at=ret.created_at,
    )


@router.post("/v1/returns", response_model=ReturnOut, status_code=201)
async def create_return(
    body: ReturnIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> ReturnOut:
    returned = await returns.create_return(
        session,
        principal.tenant,
        order_id=body.order_id,
        lines=[returns.ReturnLineRequest(x.sku, x.quantity, x.resellable) for x in body.lines],
        location=body.location,
        method=body.method,
        resolution=body.resolution,
        exchange_lines=[
            orders.LineRequest(line.sku, line.quantity, line.fulfilment, line.location)
            for line in body.exchange_lines or []
        ]
        or None,
        reason=body.reason,
        idempotency_key=body.idempotency_key,
        by_user_id=principal.user_id,
    )
    _mark_replay(response, created=returned.created)
    return await _return_out(session, principal, returned.ret)


@router.get("/v1/returns/{return_id}", response_model=ReturnOut)
async def get_return(return_id: str, session: DbSession, principal: CurrentPrincipal) -> ReturnOut:
    return await _return_out(
        session, principal, await returns.get_return(session, principal.tenant, return_id)
    )


@router.get("/v1/orders/{order_id}/returns", response_model=list[ReturnOut])
async def returns_of_order(
    order_id: str, session: DbSession, principal: CurrentPrincipal
) -> list[ReturnOut]:
    await orders.get_order(session, principal.tenant, order_id)
    found = await returns.returns_of_order(session, principal.tenant, order_id)
    return [await _return_out(session, principal, ret) for ret in found]

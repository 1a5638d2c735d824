"""HTTP API of stock: movements (one by one or a CSV), safety stock, levels, availability,
and reservations. Thin: validates the shape of requests and calls ``hilos.commerce.stock``.

Locations and SKUs are named by their codes. Movements, and reservations sent with an
idempotency key, answer 201 when recorded and 200 when the key was already used for the same
request (nothing changes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hilos.commerce import stock
from hilos.commerce.stock_models import Reservation
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import HilosError, Invalid

router = APIRouter(tags=["stock"])

Code = Annotated[str, Field(min_length=1, max_length=64)]
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class UnsupportedMediaType(HilosError):
    status_code = 415
    code = "unsupported_media_type"


class MovementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    location: Code
    quantity: int = Field(description="signed: positive adds to on hand, negative takes away")
    reason: str = Field(description=", ".join(stock.REASONS))
    idempotency_key: str = Field(min_length=1, max_length=200)


class MovementOut(BaseModel):
    id: str
    sku: str
    location: str
    quantity: int
    reason: str
    idempotency_key: str
    on_hand: int
    created_at: datetime


class SafetyStockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    location: Code
    safety_stock: int = Field(ge=0, le=stock.MAX_QUANTITY)


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    location: Code
    quantity: int = Field(gt=0, le=stock.MAX_QUANTITY)
    ttl_seconds: int = Field(gt=0, le=stock.MAX_TTL_SECONDS)
    reference: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=stock.MAX_KEY_LENGTH,
        description="optional; a resend with the same key returns the first reservation",
    )


class ReservationOut(BaseModel):
    id: str
    sku: str
    location: str
    quantity: int
    status: str
    reference: str | None
    idempotency_key: str | None
    expires_at: datetime
    created_at: datetime


def _reservation_out(reservation: Reservation) -> ReservationOut:
    return ReservationOut(
        id=reservation.id,
        sku=reservation.sku,
        location=reservation.location_code,
        quantity=reservation.quantity,
        status=reservation.status,
        reference=reservation.reference,
        idempotency_key=reservation.idempotency_key,
        expires_at=reservation.expires_at,
        created_at=reservation.created_at,
    )


@router.post("/v1/stock/movements", response_model=MovementOut, status_code=201)
async def record_movement(
    body: MovementIn, response: Response, session: DbSession, principal: SupervisorPrincipal
) -> MovementOut:
    result = await stock.record_movement(session, principal.tenant, **body.model_dump())
    if not result.created:
        response.status_code = 200
    return MovementOut(
        id=result.id,
        sku=result.sku,
        location=result.location,
        quantity=result.quantity,
        reason=result.reason,
        idempotency_key=result.idempotency_key,
        on_hand=result.on_hand,
        created_at=result.created_at,
    )


@router.get("/v1/stock/movements")
async def list_movements(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[str, Query(min_length=1, max_length=64)],
    location: Annotated[str, Query(min_length=1, max_length=64)],
    after: Annotated[
        str | None, Query(max_length=32, description="id of the last row seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    items = await stock.movements(
        session, principal.tenant, sku=sku, location=location, after=after, limit=limit
    )
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


@router.post("/v1/stock/import")
async def import_movements(
    request: Request, session: DbSession, principal: SupervisorPrincipal
) -> dict[str, Any]:
    """A CSV (``text/csv``) with the header ``sku,location,quantity,reason,idempotency_key``;
    all rows or none. A bad row answers 422 naming its row (from 1, after the header) and
    column."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("text/csv", "text/plain")):
        raise UnsupportedMediaType("send the rows as text/csv")
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise Invalid("the CSV is larger than 10 MiB; split it", field="body")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the CSV must be UTF-8", field="body") from None
    recorded = await stock.import_movements(session, principal.tenant, text)
    return {"recorded": recorded}


@router.put("/v1/stock/safety")
async def set_safety_stock(
    body: SafetyStockIn, session: DbSession, principal: SupervisorPrincipal
) -> dict[str, Any]:
    return await stock.set_safety_stock(session, principal.tenant, **body.model_dump())


@router.get("/v1/stock/levels")
async def stock_levels(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[str, Query(min_length=1, max_length=64)],
) -> dict[str, Any]:
    return await stock.stock_levels(session, principal.tenant, sku=sku)


@router.get("/v1/availability")
async def availability(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[str, Query(min_length=1, max_length=64)],
    channel: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="web, app, callcenter, marketplace or a store's location code",
        ),
    ],
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
) -> dict[str, Any]:
    return await stock.availability(
        session, principal.tenant, sku=sku, channel=channel, lat=lat, lon=lon
    )


@router.post("/v1/reservations", response_model=ReservationOut, status_code=201)
async def reserve(
    body: ReservationIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> ReservationOut:
    """Hold stock: 201 with the new reservation, or 409 ``out_of_stock`` (nothing kept).

    With ``idempotency_key``, sending the same body again answers **200** with the first
    reservation (same id) as it is now: still ``held`` if nobody released, consumed or let it
    expire since, else its new status. A resend never holds stock again, even when both
    arrive at once. The same key with another SKU, location, quantity, TTL or reference is a
    409 ``idempotency_key_reused``."""
    reserved = await stock.place_reservation(
        session, principal.tenant, whole_transaction=True, **body.model_dump()
    )
    if not reserved.created:
        response.status_code = 200
    return _reservation_out(reserved.reservation)


@router.get("/v1/reservations/{reservation_id}", response_model=ReservationOut)
async def get_reservation(
    reservation_id: str, session: DbSession, principal: CurrentPrincipal
) -> ReservationOut:
    return _reservation_out(await stock.get_reservation(session, principal.tenant, reservation_id))


@router.post("/v1/reservations/{reservation_id}/release", response_model=ReservationOut)
async def release(
    reservation_id: str, session: DbSession, principal: CurrentPrincipal
) -> ReservationOut:
    return _reservation_out(await stock.release(session, principal.tenant, reservation_id))


@router.post("/v1/reservations/{reservation_id}/consume", response_model=ReservationOut)
async def consume(
    reservation_id: str, session: DbSession, principal: CurrentPrincipal
) -> ReservationOut:
    return _reservation_out(await stock.consume(session, principal.tenant, reservation_id))

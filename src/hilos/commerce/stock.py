"""Stock: movements into an append-only ledger, available-to-promise, reservations.

The rule this module enforces: stock is never oversold. Every change of a level is ONE
conditional UPDATE whose WHERE clause states the invariant (``on_hand + q >= reserved`` for a
movement, ``on_hand - reserved - safety_stock >= q`` for a reservation), so two requests racing
for the last unit cannot both pass, on SQLite (one writer) or PostgreSQL (the row lock makes the
second re-check the condition). There is no read-then-write anywhere; the table's CHECK
constraints are the backstop.

A movement claims its idempotency key first (``INSERT … ON CONFLICT DO NOTHING``): a resend with
the same key and body returns the first movement and changes nothing; the same key with another
body is ``idempotency_conflict``. Any failure raises, and the request's transaction rolls back,
so nothing is half-written.

Available to promise at a location is ``on_hand − reserved − safety_stock``, never below zero.
Which locations count depends on the channel: the shared channels (``web``, ``app``,
``callcenter``, ``marketplace``) count every warehouse and store; any other channel is a store's
location code and counts only that store. ``pickup_today`` means the store offers pickup, has
stock now, and is still to be open today in the tenant's time zone (a store without opening
hours counts as open); ``shippable`` is what warehouses and stores that ship can send.

A reservation may carry an idempotency key (a cart or order line's): its row claims the key
before the stock is taken, so a resend (even a concurrent one) returns the first reservation as
it is now and never holds stock twice; the same key for another reservation is
``idempotency_key_reused``.

Reservations expire by a durable timer: the worker claims held reservations past
``expires_at`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and gives their stock back.
Every change emits ``stock.changed`` through the outbox.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.commerce.models import Location, Variant
from hilos.commerce.stock_models import Reservation, StockLevel, StockMovement
from hilos.core.clock import now
from hilos.core.errors import Conflict, HilosError, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.rawsql import numbered
from hilos.core.tenancy import TenantContext
from hilos.customers.service import insert_for

REASONS = ("receipt", "sale", "count", "transfer", "damage", "return", "adjustment")
# Reasons whose sign is fixed by what they mean; the others may go either way.
_POSITIVE_REASONS = ("receipt", "return")
_NEGATIVE_REASONS = ("sale", "damage")
SHARED_CHANNELS = ("web", "app", "callcenter", "marketplace")
MAX_QUANTITY = 1_000_000_000
EXPIRY_BATCH = 200

_LEVELS = cast(Table, StockLevel.__table__)
_MOVEMENTS = cast(Table, StockMovement.__table__)
_RESERVATIONS = cast(Table, Reservation.__table__)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def available(on_hand: int, reserved: int, safety_stock: int) -> int:
    return max(on_hand - reserved - safety_stock, 0)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere of the Earth's mean radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def open_later_today(opening_hours: dict[str, Any] | None, local_now: datetime) -> bool:
    """Whether a store with ``opening_hours`` (``{"mon": [["10:00", "21:00"]]}``, local
    times) is still to be open today; a store that publishes no hours counts as open."""
    if not opening_hours:
        return True
    ranges = opening_hours.get(_WEEKDAYS[local_now.weekday()]) or []
    clock_time = local_now.strftime("%H:%M")
    return any(clock_time < closes for _opens, closes in ranges)


# --- lookups ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """A SKU at a location, by id, as one request names it."""

    variant_id: str
    location_id: str
    sku: str
    location: str


async def resolve(
    session: AsyncSession, tenant: TenantContext, *, sku: str, location: str
) -> Place:
    """The ids of ``sku`` and location ``location`` in one query; 404 names what is unknown."""
    variant_id, location_id = (
        await session.execute(
            select(
                select(Variant.id)
                .where(Variant.tenant_id == tenant.id, Variant.sku == sku)
                .scalar_subquery(),
                select(Location.id)
                .where(Location.tenant_id == tenant.id, Location.code == location)
                .scalar_subquery(),
            )
        )
    ).one()
    if variant_id is None:
        raise NotFound(f"unknown SKU {sku!r}", code="unknown_sku", details={"field": "sku"})
    if location_id is None:
        raise NotFound(
            f"unknown location {location!r}",
            code="unknown_location",
            details={"field": "location"},
        )
    return Place(variant_id=variant_id, location_id=location_id, sku=sku, location=location)


def _level_key(tenant: TenantContext, place: Place) -> Any:
    return and_(
        _LEVELS.c.tenant_id == tenant.id,
        _LEVELS.c.variant_id == place.variant_id,
        _LEVELS.c.location_id == place.location_id,
    )


async def _changed(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    location: str,
    on_hand: int,
    reserved: int,
    safety_stock: int,
) -> None:
    await emit(
        session,
        tenant_id=tenant.id,
        topic="stock.changed",
        payload={
            "sku": sku,
            "location": location,
            "on_hand": on_hand,
            "reserved": reserved,
            "safety_stock": safety_stock,
            "available": available(on_hand, reserved, safety_stock),
        },
    )


# --- movements --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MovementResult:
    id: str
    sku: str
    location: str
    quantity: int
    reason: str
    idempotency_key: str
    on_hand: int
    created_at: datetime
    # False when this was a resend of a movement already recorded.
    created: bool


def check_movement(quantity: int, reason: str) -> None:
    if reason not in REASONS:
        raise Invalid(f"reason must be one of {', '.join(REASONS)}", field="reason")
    if quantity == 0 or abs(quantity) > MAX_QUANTITY:
        raise Invalid("quantity must be a non-zero whole number of units", field="quantity")
    if reason in _POSITIVE_REASONS and quantity < 0:
        raise Invalid(f"a {reason} adds stock: quantity must be positive", field="quantity")
    if reason in _NEGATIVE_REASONS and quantity > 0:
        raise Invalid(f"a {reason} takes stock away: quantity must be negative", field="quantity")


async def record_movement(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    location: str,
    quantity: int,
    reason: str,
    idempotency_key: str,
) -> MovementResult:
    """Apply a signed movement to on hand and write it to the ledger, once per key."""
    check_movement(quantity, reason)
    if not idempotency_key.strip():
        raise Invalid("idempotency_key must not be empty", field="idempotency_key")
    place = await resolve(session, tenant, sku=sku, location=location)
    dialect = _dialect(session)
    moment = now()
    movement_id = new_id()
    claimed = (
        await session.execute(
            insert_for(dialect, _MOVEMENTS)
            .values(
                id=movement_id,
                tenant_id=tenant.id,
                variant_id=place.variant_id,
                location_id=place.location_id,
                quantity=quantity,
                reason=reason,
                idempotency_key=idempotency_key,
                created_at=moment,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(_MOVEMENTS.c.id)
        )
    ).first()
    if claimed is None:
        return await _resend(session, tenant, place, quantity, reason, idempotency_key)

    if quantity > 0:
        # The first movement of a SKU at a location creates its level.
        statement: Any = (
            insert_for(dialect, _LEVELS)
            .values(
                tenant_id=tenant.id,
                variant_id=place.variant_id,
                location_id=place.location_id,
                on_hand=quantity,
                reserved=0,
                safety_stock=0,
                updated_at=moment,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id", "variant_id", "location_id"],
                set_={"on_hand": _LEVELS.c.on_hand + quantity, "updated_at": moment},
            )
        )
    else:
        statement = (
            update(_LEVELS)
            .where(_level_key(tenant, place), _LEVELS.c.on_hand + quantity >= _LEVELS.c.reserved)
            .values(on_hand=_LEVELS.c.on_hand + quantity, updated_at=moment)
        )
    level = (
        await session.execute(
            statement.returning(_LEVELS.c.on_hand, _LEVELS.c.reserved, _LEVELS.c.safety_stock)
        )
    ).first()
    if level is None:
        raise Conflict(
            f"not enough stock of {sku} at {location} for a movement of {quantity} "
            "(on hand may not go below zero or below what is reserved)",
            code="insufficient_stock",
        )
    on_hand, reserved, safety_stock = level
    await session.execute(
        update(_MOVEMENTS).where(_MOVEMENTS.c.id == movement_id).values(on_hand=on_hand)
    )
    await _changed(
        session,
        tenant,
        sku=sku,
        location=location,
        on_hand=on_hand,
        reserved=reserved,
        safety_stock=safety_stock,
    )
    return MovementResult(
        id=movement_id,
        sku=sku,
        location=location,
        quantity=quantity,
        reason=reason,
        idempotency_key=idempotency_key,
        on_hand=on_hand,
        created_at=moment,
        created=True,
    )


async def _resend(
    session: AsyncSession,
    tenant: TenantContext,
    place: Place,
    quantity: int,
    reason: str,
    idempotency_key: str,
) -> MovementResult:
    first = (
        await session.execute(
            select(StockMovement).where(
                StockMovement.tenant_id == tenant.id,
                StockMovement.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one()
    same = (first.variant_id, first.location_id, first.quantity, first.reason) == (
        place.variant_id,
        place.location_id,
        quantity,
        reason,
    )
    if not same:
        raise Conflict(
            f"idempotency key {idempotency_key!r} was already used for a different movement",
            code="idempotency_conflict",
        )
    return MovementResult(
        id=first.id,
        sku=place.sku,
        location=place.location,
        quantity=first.quantity,
        reason=first.reason,
        idempotency_key=first.idempotency_key,
        on_hand=first.on_hand or 0,
        created_at=first.created_at,
        created=False,
    )


IMPORT_COLUMNS = ("sku", "location", "quantity", "reason", "idempotency_key")


class ImportRowError(Invalid):
    """A row of a CSV import that cannot be applied; the whole import is refused."""

    def __init__(self, message: str, *, row: int, column: str | None, code: str) -> None:
        super().__init__(f"row {row}: {message}", field=column, code=code)
        self.details = {"row": row, "column": column, "field": column}


async def import_movements(session: AsyncSession, tenant: TenantContext, text: str) -> int:
    """Apply every row of a CSV of movements, or none. Rows are numbered from 1 after the header.

    Returns how many rows recorded a new movement (resent rows change nothing).
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in IMPORT_COLUMNS if name not in header]
    if missing:
        raise ImportRowError(
            f"the header lacks {', '.join(missing)}", row=0, column=missing[0], code="invalid"
        )
    reader.fieldnames = header
    created = 0
    for number, row in enumerate(reader, start=1):
        values = {name: (row.get(name) or "").strip() for name in IMPORT_COLUMNS}
        for name in ("sku", "location", "reason", "idempotency_key"):
            if not values[name]:
                raise ImportRowError(f"{name} is empty", row=number, column=name, code="invalid")
        try:
            quantity = int(values["quantity"])
        except ValueError:
            raise ImportRowError(
                f"quantity {values['quantity']!r} is not a whole number",
                row=number,
                column="quantity",
                code="invalid",
            ) from None
        try:
            result = await record_movement(
                session,
                tenant,
                sku=values["sku"],
                location=values["location"],
                quantity=quantity,
                reason=values["reason"],
                idempotency_key=values["idempotency_key"],
            )
        except HilosError as error:
            column = _column_of(error)
            raise ImportRowError(
                error.message, row=number, column=column, code=error.code
            ) from None
        created += int(result.created)
    return created


def _column_of(error: HilosError) -> str | None:
    if isinstance(error.details, dict) and error.details.get("field"):
        return str(error.details["field"])
    return {
        "insufficient_stock": "quantity",
        "idempotency_conflict": "idempotency_key",
    }.get(error.code)


# --- levels and availability -------------------------------------------------------------------


async def set_safety_stock(
    session: AsyncSession, tenant: TenantContext, *, sku: str, location: str, safety_stock: int
) -> dict[str, Any]:
    if safety_stock < 0 or safety_stock > MAX_QUANTITY:
        raise Invalid("safety_stock must be zero or more", field="safety_stock")
    place = await resolve(session, tenant, sku=sku, location=location)
    moment = now()
    on_hand, reserved, safety = (
        await session.execute(
            insert_for(_dialect(session), _LEVELS)
            .values(
                tenant_id=tenant.id,
                variant_id=place.variant_id,
                location_id=place.location_id,
                on_hand=0,
                reserved=0,
                safety_stock=safety_stock,
                updated_at=moment,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id", "variant_id", "location_id"],
                set_={"safety_stock": safety_stock, "updated_at": moment},
            )
            .returning(_LEVELS.c.on_hand, _LEVELS.c.reserved, _LEVELS.c.safety_stock)
        )
    ).one()
    await _changed(
        session,
        tenant,
        sku=sku,
        location=location,
        on_hand=on_hand,
        reserved=reserved,
        safety_stock=safety,
    )
    return {
        "sku": sku,
        "location": location,
        "on_hand": on_hand,
        "reserved": reserved,
        "safety_stock": safety,
        "available": available(on_hand, reserved, safety),
    }


async def _levels_of_sku(session: AsyncSession, tenant: TenantContext, sku: str) -> list[Any]:
    """Every location holding ``sku`` with its counters: one query on the levels' primary key.

    A SKU without any level answers one row of NULLs (outer join); an unknown SKU none.
    """
    statement = (
        select(
            Location.code,
            Location.kind,
            Location.lat,
            Location.lon,
            Location.pickup,
            Location.ship_from_store,
            Location.opening_hours,
            _LEVELS.c.on_hand,
            _LEVELS.c.reserved,
            _LEVELS.c.safety_stock,
        )
        .select_from(Variant)
        .outerjoin(
            _LEVELS,
            and_(_LEVELS.c.tenant_id == Variant.tenant_id, _LEVELS.c.variant_id == Variant.id),
        )
        .outerjoin(Location, Location.id == _LEVELS.c.location_id)
        .where(Variant.tenant_id == tenant.id, Variant.sku == sku)
    )
    rows = list((await session.execute(statement)).all())
    if not rows:
        raise NotFound(f"unknown SKU {sku!r}", code="unknown_sku", details={"field": "sku"})
    return [row for row in rows if row.code is not None]


async def stock_levels(session: AsyncSession, tenant: TenantContext, *, sku: str) -> dict[str, Any]:
    rows = await _levels_of_sku(session, tenant, sku)
    levels = [
        {
            "location": row.code,
            "kind": row.kind,
            "on_hand": row.on_hand,
            "reserved": row.reserved,
            "safety_stock": row.safety_stock,
            "available": available(row.on_hand, row.reserved, row.safety_stock),
        }
        for row in sorted(rows, key=lambda r: str(r.code))
    ]
    return {"sku": sku, "levels": levels}


async def availability(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    channel: str,
    lat: float | None = None,
    lon: float | None = None,
) -> dict[str, Any]:
    if (lat is None) != (lon is None):
        raise Invalid("give both lat and lon, or neither", field="lat" if lat is None else "lon")
    rows = await _levels_of_sku(session, tenant, sku)
    if channel not in SHARED_CHANNELS:
        # A store's till: ``store:MAD01`` as in price lists, or the bare location code.
        store = channel.removeprefix("store:")
        rows = [row for row in rows if row.code == store]
        if not rows:
            await _check_store_channel(session, tenant, store)
    local_now = now().astimezone(ZoneInfo(tenant.timezone))
    locations = []
    for row in rows:
        entry: dict[str, Any] = {
            "location": row.code,
            "kind": row.kind,
            "available": available(row.on_hand, row.reserved, row.safety_stock),
        }
        if row.kind == "store":
            entry["pickup_today"] = (
                bool(row.pickup)
                and entry["available"] > 0
                and open_later_today(row.opening_hours, local_now)
            )
        entry["ships"] = row.kind == "warehouse" or bool(row.ship_from_store)
        if lat is not None and lon is not None and row.lat is not None and row.lon is not None:
            entry["distance_km"] = round(haversine_km(lat, lon, row.lat, row.lon), 3)
        locations.append(entry)
    # Nearest first when the customer's position is known (locations without coordinates
    # last); otherwise by code, so the answer is stable.
    locations.sort(key=lambda e: (e.get("distance_km", math.inf), e["location"]))
    nearest_pickup = [e["location"] for e in locations if e.get("pickup_today")]
    return {
        "sku": sku,
        "channel": channel,
        "total": sum(e["available"] for e in locations),
        # What an order of this channel can have shipped: warehouses and stores that ship.
        "shippable": sum(e["available"] for e in locations if e["ships"]),
        "locations": locations,
        "nearest_pickup": nearest_pickup,
    }


async def _check_store_channel(session: AsyncSession, tenant: TenantContext, channel: str) -> None:
    kind = (
        await session.execute(
            select(Location.kind).where(Location.tenant_id == tenant.id, Location.code == channel)
        )
    ).scalar_one_or_none()
    if kind != "store":
        raise Invalid(
            f"unknown channel {channel!r}: use one of {', '.join(SHARED_CHANNELS)} "
            "or a store's location code",
            field="channel",
            code="unknown_channel",
        )


async def movements(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    location: str,
    after: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The ledger of ``sku`` at ``location``, oldest first."""
    place = await resolve(session, tenant, sku=sku, location=location)
    statement = (
        select(StockMovement)
        .where(
            StockMovement.tenant_id == tenant.id,
            StockMovement.variant_id == place.variant_id,
            StockMovement.location_id == place.location_id,
        )
        .order_by(StockMovement.id)
        .limit(limit)
    )
    if after:
        statement = statement.where(StockMovement.id > after)
    rows = (await session.execute(statement)).scalars().all()
    return [
        {
            "id": row.id,
            "sku": sku,
            "location": location,
            "quantity": row.quantity,
            "reason": row.reason,
            "idempotency_key": row.idempotency_key,
            "on_hand": row.on_hand,
            "reservation_id": row.reservation_id,
            "created_at": row.created_at,
        }
        for row in rows
    ]


# --- reservations -------------------------------------------------------------------------------


MAX_TTL_SECONDS = 30 * 86_400
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Reserved:
    """What ``place_reservation`` did: the reservation, and whether this call made it (False:
    its idempotency key had already made it, and nothing changed)."""

    reservation: Reservation
    created: bool


def _check_reservation(quantity: int, ttl_seconds: int, idempotency_key: str | None) -> None:
    if quantity <= 0 or quantity > MAX_QUANTITY:
        raise Invalid("quantity must be a positive whole number", field="quantity")
    if ttl_seconds <= 0 or ttl_seconds > MAX_TTL_SECONDS:
        raise Invalid(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}", field="ttl_seconds")
    if idempotency_key is not None and (
        not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH
    ):
        raise Invalid(
            f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters, not blank",
            field="idempotency_key",
        )


async def reserve(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    location: str,
    quantity: int,
    ttl_seconds: int,
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Reservation:
    """Hold ``quantity`` of ``sku`` at ``location`` for ``ttl_seconds``, or ``out_of_stock``.

    With ``idempotency_key``, a call that repeats an earlier one returns that reservation as
    it is now (see ``place_reservation``)."""
    reserved = await place_reservation(
        session,
        tenant,
        sku=sku,
        location=location,
        quantity=quantity,
        ttl_seconds=ttl_seconds,
        reference=reference,
        idempotency_key=idempotency_key,
    )
    return reserved.reservation


async def place_reservation(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    location: str,
    quantity: int,
    ttl_seconds: int,
    reference: str | None = None,
    idempotency_key: str | None = None,
    whole_transaction: bool = False,
) -> Reserved:
    """Hold stock as ``reserve`` does, and say whether this call made the reservation.

    ``whole_transaction`` says the reservation is all the caller's transaction does (the
    HTTP endpoint): on PostgreSQL its one statement then commits by itself, saving the BEGIN
    and COMMIT round trips. Otherwise it runs inside the caller's transaction, and a rollback
    there undoes it.

    The key is claimed before the stock is taken, in the same transaction: the reservation's
    row is inserted ``ON CONFLICT (tenant_id, idempotency_key) DO NOTHING``, and the level
    changes only when the row went in. A key already used with the same SKU, location,
    quantity, TTL and reference returns its reservation unchanged, whatever its status now
    (held, released, consumed, expired): it never holds stock a second time. The same key
    with anything else is ``idempotency_key_reused``. An ``out_of_stock`` answer keeps
    nothing under the key, so the same request may succeed later.
    """
    _check_reservation(quantity, ttl_seconds, idempotency_key)
    request = _Request(sku, location, quantity, ttl_seconds, reference, idempotency_key)
    if _dialect(session) == "postgresql":
        fast = await _reserve_in_one_statement(
            session, tenant, request, whole_transaction=whole_transaction
        )
        if fast is not None:
            return fast
    place = await resolve(session, tenant, sku=sku, location=location)
    moment = now()
    reservation = Reservation(
        id=new_id(),
        tenant_id=tenant.id,
        variant_id=place.variant_id,
        location_id=place.location_id,
        sku=sku,
        location_code=location,
        quantity=quantity,
        status="held",
        reference=reference,
        idempotency_key=idempotency_key,
        expires_at=moment + timedelta(seconds=ttl_seconds),
        created_at=moment,
        updated_at=moment,
    )
    claimed = (
        await session.execute(
            insert_for(_dialect(session), _RESERVATIONS)
            .values(
                {column.name: getattr(reservation, column.key) for column in _RESERVATIONS.columns}
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(_RESERVATIONS.c.id)
        )
    ).first()
    if claimed is None:
        # Only a row holding the key stops the insert.
        first = await _reservation_with_key(session, tenant, idempotency_key)
        assert first is not None
        return _resent(first, request)
    level = (
        await session.execute(
            update(_LEVELS)
            .where(
                _level_key(tenant, place),
                _LEVELS.c.on_hand - _LEVELS.c.reserved - _LEVELS.c.safety_stock >= quantity,
            )
            .values(reserved=_LEVELS.c.reserved + quantity, updated_at=moment)
            .returning(_LEVELS.c.on_hand, _LEVELS.c.reserved, _LEVELS.c.safety_stock)
        )
    ).first()
    if level is None:
        await _unclaim(session, reservation.id)
        raise _out_of_stock(request)
    await _changed(
        session,
        tenant,
        sku=sku,
        location=location,
        on_hand=level[0],
        reserved=level[1],
        safety_stock=level[2],
    )
    return Reserved(reservation, created=True)


@dataclass(frozen=True, slots=True)
class _Request:
    """What a reservation request asked for: a resend of its key must ask the same."""

    sku: str
    location: str
    quantity: int
    ttl_seconds: int
    reference: str | None
    idempotency_key: str | None


def _out_of_stock(request: _Request) -> Conflict:
    return Conflict(
        f"{request.sku} is out of stock at {request.location} for {request.quantity}",
        code="out_of_stock",
    )


async def _unclaim(session: AsyncSession, reservation_id: str) -> None:
    """Remove a reservation row whose stock could not be taken, so that a caller that goes on
    after ``out_of_stock`` keeps nothing half-written."""
    await session.execute(delete(_RESERVATIONS).where(_RESERVATIONS.c.id == reservation_id))


async def _reservation_with_key(
    session: AsyncSession, tenant: TenantContext, idempotency_key: str | None
) -> Reservation | None:
    if idempotency_key is None:
        return None
    return (
        await session.execute(
            select(Reservation).where(
                Reservation.tenant_id == tenant.id,
                Reservation.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()


def _resent(first: Reservation, request: _Request) -> Reserved:
    """The first reservation of a key, if ``request`` asks what it asked; else a 409."""
    first_ttl = round((first.expires_at - first.created_at).total_seconds())
    same = (first.sku, first.location_code, first.quantity, first_ttl, first.reference) == (
        request.sku,
        request.location,
        request.quantity,
        request.ttl_seconds,
        request.reference,
    )
    if not same:
        raise Conflict(
            f"idempotency key {request.idempotency_key!r} was already used for reservation "
            f"{first.id} of {first.quantity} × {first.sku} at {first.location_code}; "
            "use a new key for a different reservation",
            code="idempotency_key_reused",
            details={"field": "idempotency_key"},
        )
    return Reserved(first, created=False)


# PostgreSQL claims the key, takes the stock, records and announces a reservation in one
# statement: the hot row's lock is then held for that statement and the commit only, not for
# four round trips (measured: 330 reservations/s with 50 clients on 100 hot SKUs through the
# four-statement path). The statement commits on its own when no transaction is open, so it
# must leave nothing to undo: ``level`` locks the stock row after re-checking it (a waiter
# re-checks the newest version), ``claim`` inserts the reservation only then, and ``taken``
# adds to ``reserved`` only for a claimed row, which the lock guarantees to pass. A key already
# used stops ``claim`` (``ON CONFLICT DO NOTHING``; a concurrent resend first waits for the
# other transaction), so a resend never takes stock; the caller then reads the first one.
_RESERVE_PG = numbered(
    """
WITH place AS (
    SELECT v.id AS variant_id, l.id AS location_id
    FROM variants AS v
    JOIN locations AS l ON l.tenant_id = v.tenant_id AND l.code = :location
    WHERE v.tenant_id = :tenant_id AND v.sku = :sku
),
level AS (
    SELECT s.variant_id, s.location_id
    FROM stock_levels AS s
    JOIN place ON s.variant_id = place.variant_id AND s.location_id = place.location_id
    WHERE s.tenant_id = :tenant_id
      AND s.on_hand - s.reserved - s.safety_stock >= :quantity
    FOR UPDATE OF s
),
claim AS (
    INSERT INTO reservations (
        id, tenant_id, variant_id, location_id, sku, location_code, quantity, status,
        reference, idempotency_key, expires_at, created_at, updated_at
    )
    SELECT :reservation_id, CAST(:tenant_id AS varchar), level.variant_id, level.location_id,
        CAST(:sku AS varchar), CAST(:location AS varchar), CAST(:quantity AS integer), 'held',
        :reference, :idempotency_key, :expires_at, :now, :now
    FROM level
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING id, variant_id, location_id
),
taken AS (
    UPDATE stock_levels AS s
    SET reserved = s.reserved + :quantity, updated_at = :now
    FROM claim
    WHERE s.tenant_id = :tenant_id AND s.variant_id = claim.variant_id
      AND s.location_id = claim.location_id
      AND s.on_hand - s.reserved - s.safety_stock >= :quantity
    RETURNING s.on_hand, s.reserved, s.safety_stock
),
event AS (
    INSERT INTO outbox_events (id, tenant_id, topic, payload, created_at)
    SELECT :event_id, CAST(:tenant_id AS varchar), 'stock.changed',
        json_build_object(
            'sku', CAST(:sku AS varchar),
            'location', CAST(:location AS varchar),
            'on_hand', taken.on_hand,
            'reserved', taken.reserved,
            'safety_stock', taken.safety_stock,
            'available', GREATEST(taken.on_hand - taken.reserved - taken.safety_stock, 0)
        ),
        :now
    FROM taken
    RETURNING id
)
SELECT (SELECT count(*) FROM place) AS known, (SELECT id FROM claim) AS claimed,
    (SELECT variant_id FROM claim) AS variant_id, (SELECT location_id FROM claim) AS location_id,
    (SELECT count(*) FROM taken) AS taken
"""
)


async def _reserve_in_one_statement(
    session: AsyncSession, tenant: TenantContext, request: _Request, *, whole_transaction: bool
) -> Reserved | None:
    """The reservation (new or resent), ``out_of_stock``, ``idempotency_key_reused``, or
    ``None`` when the SKU or the location is unknown (the reference path then names which)."""
    moment = now()
    values: dict[str, Any] = {
        "tenant_id": tenant.id,
        "sku": request.sku,
        "location": request.location,
        "quantity": request.quantity,
        "reservation_id": new_id(),
        "reference": request.reference,
        "idempotency_key": request.idempotency_key,
        "expires_at": moment + timedelta(seconds=request.ttl_seconds),
        "event_id": new_id(),
        "now": moment,
    }
    statement, parameters = _RESERVE_PG
    arguments = [values[name] for name in parameters]
    connection = await session.connection()
    row: Any
    if whole_transaction:
        # Straight to asyncpg: outside a transaction SQLAlchemy has begun, the statement
        # commits on its own.
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        row = await driver.fetchrow(statement, *arguments)
    else:
        result = await connection.exec_driver_sql(statement, tuple(arguments))
        row = result.mappings().one_or_none()
    if row is None or not row["known"]:
        return None
    if row["claimed"] is None:
        # Not enough stock, or the key was taken first.
        first = await _reservation_with_key(session, tenant, request.idempotency_key)
        if first is None:
            raise _out_of_stock(request)
        return _resent(first, request)
    # The row lock makes a claimed reservation's stock available (see _RESERVE_PG).
    assert row["taken"] == 1, "a claimed reservation took no stock"
    session.info["outbox_written"] = True
    reservation = Reservation(
        id=row["claimed"],
        tenant_id=tenant.id,
        variant_id=row["variant_id"],
        location_id=row["location_id"],
        sku=request.sku,
        location_code=request.location,
        quantity=request.quantity,
        status="held",
        reference=request.reference,
        idempotency_key=request.idempotency_key,
        expires_at=values["expires_at"],
        created_at=moment,
        updated_at=moment,
    )
    return Reserved(reservation, created=True)


async def get_reservation(
    session: AsyncSession, tenant: TenantContext, reservation_id: str
) -> Reservation:
    row = (
        await session.execute(
            select(Reservation).where(
                Reservation.tenant_id == tenant.id, Reservation.id == reservation_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"reservation {reservation_id} not found")
    return row


async def _end(
    session: AsyncSession,
    tenant: TenantContext,
    reservation_id: str,
    *,
    status: str,
    unexpired_only: bool,
) -> Reservation | None:
    """Move a held reservation to ``status``; None when it was not held (or has expired)."""
    moment = now()
    conditions = [
        Reservation.tenant_id == tenant.id,
        Reservation.id == reservation_id,
        Reservation.status == "held",
    ]
    if unexpired_only:
        conditions.append(Reservation.expires_at > moment)
    ended = (
        await session.execute(
            update(Reservation)
            .where(*conditions)
            .values(status=status, updated_at=moment)
            .returning(Reservation)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    return ended


async def release(session: AsyncSession, tenant: TenantContext, reservation_id: str) -> Reservation:
    """Give a held reservation's stock back. Releasing a released one again changes nothing."""
    reservation = await _end(
        session, tenant, reservation_id, status="released", unexpired_only=False
    )
    if reservation is None:
        current = await get_reservation(session, tenant, reservation_id)
        if current.status in ("released", "expired"):
            return current
        raise Conflict(
            f"reservation {reservation_id} is {current.status}",
            code=f"reservation_{current.status}",
        )
    await _give_back(session, tenant, reservation)
    return reservation


async def _give_back(
    session: AsyncSession, tenant: TenantContext, reservation: Reservation
) -> None:
    moment = now()
    on_hand, reserved, safety_stock = (
        await session.execute(
            update(_LEVELS)
            .where(
                _LEVELS.c.tenant_id == reservation.tenant_id,
                _LEVELS.c.variant_id == reservation.variant_id,
                _LEVELS.c.location_id == reservation.location_id,
            )
            .values(reserved=_LEVELS.c.reserved - reservation.quantity, updated_at=moment)
            .returning(_LEVELS.c.on_hand, _LEVELS.c.reserved, _LEVELS.c.safety_stock)
        )
    ).one()
    await _changed(
        session,
        tenant,
        sku=reservation.sku,
        location=reservation.location_code,
        on_hand=on_hand,
        reserved=reserved,
        safety_stock=safety_stock,
    )


async def consume(session: AsyncSession, tenant: TenantContext, reservation_id: str) -> Reservation:
    """Turn a held reservation into a sale: on hand and reserved both drop, and the ledger
    gets a ``sale`` row keyed by the reservation (so consuming twice cannot sell twice)."""
    reservation = await _end(
        session, tenant, reservation_id, status="consumed", unexpired_only=True
    )
    if reservation is None:
        current = await get_reservation(session, tenant, reservation_id)
        if current.status == "consumed":
            return current
        status = "expired" if current.status == "held" else current.status
        raise Conflict(f"reservation {reservation_id} is {status}", code=f"reservation_{status}")
    moment = now()
    on_hand, reserved, safety_stock = (
        await session.execute(
            update(_LEVELS)
            .where(
                _LEVELS.c.tenant_id == tenant.id,
                _LEVELS.c.variant_id == reservation.variant_id,
                _LEVELS.c.location_id == reservation.location_id,
            )
            .values(
                on_hand=_LEVELS.c.on_hand - reservation.quantity,
                reserved=_LEVELS.c.reserved - reservation.quantity,
                updated_at=moment,
            )
            .returning(_LEVELS.c.on_hand, _LEVELS.c.reserved, _LEVELS.c.safety_stock)
        )
    ).one()
    await session.execute(
        _MOVEMENTS.insert().values(
            id=new_id(),
            tenant_id=tenant.id,
            variant_id=reservation.variant_id,
            location_id=reservation.location_id,
            quantity=-reservation.quantity,
            reason="sale",
            idempotency_key=f"reservation:{reservation.id}",
            on_hand=on_hand,
            reservation_id=reservation.id,
            created_at=moment,
        )
    )
    await _changed(
        session,
        tenant,
        sku=reservation.sku,
        location=reservation.location_code,
        on_hand=on_hand,
        reserved=reserved,
        safety_stock=safety_stock,
    )
    return reservation


async def expire_due(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Release every held reservation past its ``expires_at``; return how many (the worker's
    durable timer). Batches are claimed with ``SKIP LOCKED`` on PostgreSQL."""
    expired = 0
    while True:
        async with sessionmaker() as session, session.begin():
            statement = (
                select(Reservation)
                .where(Reservation.status == "held", Reservation.expires_at <= now())
                .order_by(Reservation.expires_at)
                .limit(EXPIRY_BATCH)
            )
            if _dialect(session) == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            due = (await session.execute(statement)).scalars().all()
            if not due:
                return expired
            await session.execute(
                update(Reservation)
                .where(Reservation.id.in_([r.id for r in due]))
                .values(status="expired", updated_at=now())
                .execution_options(synchronize_session=False)
            )
            for reservation in due:
                await _give_back(session, TenantContext(id=reservation.tenant_id), reservation)
            expired += len(due)
        if len(due) < EXPIRY_BATCH:
            return expired

"""Orders from any channel: placing one (customer, prices, sourcing, stock held), its life
cycle, cancellation, and telling the customer; the tenant's order settings.

Placing an order is all or nothing, in the request's transaction: the customer is identified,
every line is priced from the order channel's price list, the idempotency key is claimed by
inserting the order row (a concurrent resend waits on the unique index, then answers the first
order), the lines are sourced (``sourcing``) and their stock reserved by conditional updates
(``stock.reserve``). If any reservation finds the stock gone — another order took it between
the snapshot and the update — the reservations of this attempt roll back to a savepoint and the
order is sourced again from a fresh snapshot, up to ``SOURCING_ATTEMPTS`` times; then it is
``out_of_stock``. An error anywhere rolls back everything: no order, no reservation, no points.

Fulfilment of a line:

- ``ship``: from a warehouse, or a store that ships (``ship_from_store``), chosen by the
  tenant's sourcing rule unless the line names its ``location``.
- ``pickup`` (BOPIS): at a store that offers pickup. Reserved at that store when it has the
  units; otherwise reserved at the nearest warehouse that has them, and transferred to the
  store (``transfers``) when the order becomes ``ready_for_pickup``; ``ready_by`` is the
  warehouse's reservation time plus the tenant's transfer lead time.
- ``in_store``: handed over at the counter (a POS sale): sold at once.

Life cycle: ``placed → allocated → picked → ready_for_pickup / shipped → collected /
delivered``; a step may be skipped forward (a store may go straight from ``placed`` to
``ready_for_pickup``). ``shipped`` sells the ship lines' stock, ``collected`` the pickup lines'.
``cancelled`` is possible until a line has left (then it is a return), and gives every held
unit back. An order held by reservations keeps them for ``stock.MAX_TTL_SECONDS`` (30 days);
an order still unshipped by then reserves again when it ships.

Each status change is a row of ``order_history``, an ``order.<status>`` event, an entry on the
customer's timeline, and — unless the tenant turned it off — a message to the customer on
their preferred channel through the conversation outbox (``conversations.notify``), in their
language. Loyalty points are earned on the amount paid when the order is placed, and given
back (earned and redeemed alike) when it is cancelled.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from babel.numbers import format_currency, get_currency_precision
from sqlalchemy import Table, and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import pricing, sourcing, stock, transfers
from hilos.commerce.models import Location, Variant
from hilos.commerce.order_models import Order, OrderHistory, OrderLine, OrderSettings
from hilos.commerce.stock_models import StockLevel
from hilos.conversations.notify import notify_customer
from hilos.core.clock import now
from hilos.core.errors import Conflict, HilosError, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.web.i18n import DEFAULT_LANGUAGE, supported_language, translations

STATUSES = (
    "placed",
    "allocated",
    "picked",
    "ready_for_pickup",
    "shipped",
    "collected",
    "delivered",
    "cancelled",
)
FULFILMENTS = ("ship", "pickup", "in_store")
SOURCING_ATTEMPTS = 3
DEFAULT_TRANSFER_LEAD_HOURS = 48
MAX_TRANSFER_LEAD_HOURS = 24 * 60
MAX_LINES = 200
# Statuses from which cancelling is possible: nothing has left a location yet.
CANCELLABLE = ("placed", "allocated", "picked", "ready_for_pickup")
_LEVELS = cast(Table, StockLevel.__table__)


def order_number(order_id: str) -> str:
    """The short number a customer reads: the random tail of the time-ordered id."""
    return order_id[-8:].upper()


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingsView:
    sourcing_rule: str = sourcing.DEFAULT_RULE
    transfer_lead_hours: int = DEFAULT_TRANSFER_LEAD_HOURS
    notify_customer: bool = True


async def get_settings(session: AsyncSession, tenant: TenantContext) -> SettingsView:
    row = await session.get(OrderSettings, tenant.id)
    if row is None:
        return SettingsView()
    return SettingsView(row.sourcing_rule, row.transfer_lead_hours, row.notify_customer)


async def set_settings(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sourcing_rule: str,
    transfer_lead_hours: int,
    notify_customer: bool,
) -> SettingsView:
    if sourcing_rule not in sourcing.RULES:
        raise Invalid(
            f"sourcing_rule must be one of {', '.join(sourcing.RULES)}", field="sourcing_rule"
        )
    if not 0 <= transfer_lead_hours <= MAX_TRANSFER_LEAD_HOURS:
        raise Invalid(
            f"transfer_lead_hours must be between 0 and {MAX_TRANSFER_LEAD_HOURS}",
            field="transfer_lead_hours",
        )
    row = await session.get(OrderSettings, tenant.id)
    if row is None:
        row = OrderSettings(tenant_id=tenant.id)
        session.add(row)
    row.sourcing_rule = sourcing_rule
    row.transfer_lead_hours = transfer_lead_hours
    row.notify_customer = notify_customer
    row.updated_at = now()
    await session.flush()
    return SettingsView(sourcing_rule, transfer_lead_hours, notify_customer)


# --- placing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    quantity: int
    fulfilment: str
    location: str | None = None


@dataclass(slots=True)
class _Line:
    """A requested line with what placing it found out."""

    index: int
    request: LineRequest
    variant: Variant
    unit_price: int
    pickup: Location | None = None
    source: str | None = None
    quantity: int = 0
    ready_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    created: bool


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def _locations(session: AsyncSession, tenant: TenantContext) -> dict[str, Location]:
    rows = await session.scalars(tenant_scope(select(Location), Location, tenant))
    return {location.code: location for location in rows.all()}


def sales_channel(channel: str, locations: dict[str, Location]) -> str:
    """The price-list code of an order's channel: a shared channel as it is, a store (named
    ``store:MAD01`` as in price lists, or by its bare location code) as ``store:MAD01``."""
    if channel in stock.SHARED_CHANNELS:
        return channel
    code = channel.removeprefix("store:")
    if code in locations and locations[code].kind == "store":
        return f"store:{code}"
    raise Invalid(
        f"unknown channel {channel!r}: use one of {', '.join(stock.SHARED_CHANNELS)} "
        "or store:<a store's location code>",
        field="channel",
        code="unknown_channel",
    )


def _line_location(
    line: LineRequest, index: int, channel: str, locations: dict[str, Location]
) -> Location | None:
    """The location a line names (or implies), checked against what it is for."""
    field = f"lines[{index}].location"
    code = line.location
    if code is None and line.fulfilment == "in_store" and channel.startswith("store:"):
        code = channel.removeprefix("store:")
    if code is None:
        if line.fulfilment == "ship":
            return None
        raise Invalid(f"a {line.fulfilment} line needs the store's location code", field=field)
    location = locations.get(code)
    if location is None:
        raise NotFound(
            f"unknown location {code}", code="unknown_location", details={"field": field}
        )
    if line.fulfilment == "pickup" and (location.kind != "store" or not location.pickup):
        raise Invalid(f"{code} does not offer pickup", field=field, code="pickup_not_offered")
    if line.fulfilment == "in_store" and location.kind != "store":
        raise Invalid(f"{code} is not a store", field=field, code="not_a_store")
    if line.fulfilment == "ship" and location.kind == "store" and not location.ship_from_store:
        raise Invalid(f"{code} does not ship", field=field, code="ship_not_offered")
    return location


async def _price_lines(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    channel: str,
    lines: list[LineRequest],
    currency: str | None,
    locations: dict[str, Location],
) -> tuple[list[_Line], str]:
    skus = sorted({line.sku for line in lines})
    variants = {
        v.sku: v
        for v in (
            await session.scalars(
                tenant_scope(select(Variant).where(Variant.sku.in_(skus)), Variant, tenant)
            )
        ).all()
    }
    prices = await pricing.effective_prices(session, tenant, at=now(), skus=skus)
    priced: list[_Line] = []
    currencies: set[str] = set()
    for index, line in enumerate(lines):
        variant = variants.get(line.sku)
        if variant is None:
            raise NotFound(
                f"unknown SKU {line.sku}",
                code="unknown_sku",
                details={"field": f"lines[{index}].sku"},
            )
        price = prices.get(line.sku, {}).get(channel)
        if price is None:
            raise Invalid(
                f"{line.sku} has no price on channel {channel}",
                field=f"lines[{index}].sku",
                code="no_price",
            )
        if currency is not None and price.currency != currency:
            raise Invalid(
                f"{line.sku} is priced in {price.currency} on {channel}, not {currency}",
                field="currency",
                code="currency_mismatch",
            )
        currencies.add(price.currency)
        location = _line_location(line, index, channel, locations)
        priced.append(
            _Line(
                index=index,
                request=line,
                variant=variant,
                unit_price=price.amount,
                pickup=location if line.fulfilment != "ship" else None,
                source=location.code
                if location is not None and line.fulfilment == "ship"
                else None,
            )
        )
    if len(currencies) > 1:
        raise Invalid(
            f"the lines are priced in several currencies ({', '.join(sorted(currencies))})",
            field="lines",
            code="currency_mismatch",
        )
    return priced, currencies.pop()


async def _customer_id(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str | None,
    identities: list[tuple[str, str]],
    name: str | None,
) -> str:
    if customer_id is not None:
        return (await customers.get_customer(session, tenant, customer_id)).id
    result = await customers.identify(
        session, tenant, identities=identities, name=name, field_prefix="customer.identities"
    )
    return result.customer_id


async def place_order(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    channel: str,
    lines: list[LineRequest],
    idempotency_key: str,
    customer_id: str | None = None,
    identities: list[tuple[str, str]] | None = None,
    customer_name: str | None = None,
    currency: str | None = None,
    ship_to: dict[str, Any] | None = None,
    loyalty_points: int = 0,
    by_user_id: str | None = None,
) -> Placed:
    """Place an order, or answer the order already placed with ``idempotency_key``."""
    if not lines:
        raise Invalid("an order needs at least one line", field="lines")
    if len(lines) > MAX_LINES:
        raise Invalid(f"an order has at most {MAX_LINES} lines", field="lines")
    if customer_id is None and not identities:
        raise Invalid("name the customer by customer_id or identities", field="customer")
    digest = _digest(
        {
            "channel": channel,
            "lines": [_slots(line) for line in lines],
            "customer_id": customer_id,
            "identities": identities,
            "currency": currency,
            "ship_to": ship_to,
            "loyalty_points": loyalty_points,
        }
    )
    existing = await _by_key(session, tenant, idempotency_key)
    if existing is not None:
        return _replay(existing, digest)
    locations = await _locations(session, tenant)
    channel = sales_channel(channel, locations)
    if any(line.fulfilment == "ship" for line in lines) and ship_to is not None:
        _check_position(ship_to)
    priced, order_currency = await _price_lines(
        session, tenant, channel=channel, lines=lines, currency=currency, locations=locations
    )
    subtotal = sum(line.unit_price * line.request.quantity for line in priced)
    buyer = await _customer_id(
        session,
        tenant,
        customer_id=customer_id,
        identities=identities or [],
        name=customer_name,
    )
    moment = now()
    order = Order(
        id=new_id(),
        tenant_id=tenant.id,
        customer_id=buyer,
        channel=channel,
        status="placed",
        currency=order_currency,
        subtotal=subtotal,
        discount=0,
        total=subtotal,
        loyalty_points_redeemed=0,
        idempotency_key=idempotency_key,
        request_digest=digest,
        ship_to=ship_to,
        sourcing={},
        placed_by_user_id=by_user_id,
        created_at=moment,
        updated_at=moment,
    )
    # Claim the key first: a concurrent resend waits here for the first one to commit.
    try:
        async with session.begin_nested():
            session.add(order)
            await session.flush()
    except IntegrityError:
        first = await _by_key(session, tenant, idempotency_key)
        if first is None:
            raise
        return _replay(first, digest)

    settings = await get_settings(session, tenant)
    decision = await _source_and_reserve(session, tenant, order, priced, locations, settings)
    order.sourcing = decision
    if loyalty_points:
        order.discount = await _redeem(session, tenant, order, loyalty_points)
        order.loyalty_points_redeemed = loyalty_points
        order.total = order.subtotal - order.discount
    await session.flush()
    await _earn(session, tenant, order)
    in_store_only = all(line.request.fulfilment == "in_store" for line in priced)
    # A sale at the till is placed and handed over at once: one notice (the receipt), not two.
    await _record(
        session,
        tenant,
        order,
        "placed",
        previous=None,
        by_user_id=by_user_id,
        notify=not in_store_only,
    )
    if in_store_only:
        order.status = "delivered"
        await _record(session, tenant, order, "delivered", previous="placed", by_user_id=by_user_id)
    return Placed(order, created=True)


def _slots(line: LineRequest) -> dict[str, Any]:
    return {name: getattr(line, name) for name in LineRequest.__slots__}


def _check_position(ship_to: dict[str, Any]) -> None:
    lat, lon = ship_to.get("lat"), ship_to.get("lon")
    if (lat is None) != (lon is None):
        raise Invalid("give both ship_to.lat and ship_to.lon, or neither", field="ship_to")


def _replay(order: Order, digest: str) -> Placed:
    if order.request_digest != digest:
        raise Conflict(
            f"idempotency_key {order.idempotency_key!r} was used for another order ({order.id})",
            code="idempotency_key_reused",
        )
    return Placed(order, created=False)


async def _by_key(session: AsyncSession, tenant: TenantContext, key: str) -> Order | None:
    return (
        await session.execute(
            select(Order).where(Order.tenant_id == tenant.id, Order.idempotency_key == key)
        )
    ).scalar_one_or_none()


async def _snapshot(
    session: AsyncSession, tenant: TenantContext, variant_ids: list[str]
) -> dict[tuple[str, str], int]:
    """``{(variant_id, location_id): available}`` for the order's SKUs, everywhere."""
    rows = await session.execute(
        select(
            _LEVELS.c.variant_id,
            _LEVELS.c.location_id,
            _LEVELS.c.on_hand - _LEVELS.c.reserved - _LEVELS.c.safety_stock,
        ).where(_LEVELS.c.tenant_id == tenant.id, _LEVELS.c.variant_id.in_(variant_ids))
    )
    return {(row[0], row[1]): max(int(row[2]), 0) for row in rows.all()}


def _distance(a: Location, lat: Any, lon: Any) -> float | None:
    if lat is None or lon is None or a.lat is None or a.lon is None:
        return None
    return stock.haversine_km(float(lat), float(lon), a.lat, a.lon)


class _Gone(Exception):
    """A reservation found the stock taken since the snapshot."""


async def _source_and_reserve(
    session: AsyncSession,
    tenant: TenantContext,
    order: Order,
    lines: list[_Line],
    locations: dict[str, Location],
    settings: SettingsView,
) -> dict[str, Any]:
    for attempt in range(1, SOURCING_ATTEMPTS + 1):
        snapshot = await _snapshot(session, tenant, sorted({line.variant.id for line in lines}))
        plan, decision = _plan(order, lines, locations, settings, snapshot)
        try:
            async with session.begin_nested():
                await _reserve(session, tenant, order, lines, plan, locations)
        except _Gone:
            continue
        decision["attempts"] = attempt
        return decision
    raise _out_of_stock(lines[0].request.sku, "the stock was taken by other orders meanwhile")


def _out_of_stock(sku: str, detail: str) -> Conflict:
    return Conflict(f"{sku} is out of stock: {detail}", code="out_of_stock", details={"sku": sku})


@dataclass(frozen=True, slots=True)
class _Hold:
    line: _Line
    location: str
    quantity: int
    ready_by_hours: int | None = None


def _plan(
    order: Order,
    lines: list[_Line],
    locations: dict[str, Location],
    settings: SettingsView,
    snapshot: dict[tuple[str, str], int],
) -> tuple[list[_Hold], dict[str, Any]]:
    by_id = {location.id: location for location in locations.values()}
    left: dict[tuple[str, str], int] = defaultdict(int)
    for (variant_id, location_id), quantity in snapshot.items():
        left[(variant_id, by_id[location_id].code)] = quantity
    holds: list[_Hold] = []
    decision: dict[str, Any] = {"rule": settings.sourcing_rule, "lines": []}

    def take(line: _Line, code: str) -> bool:
        key = (line.variant.id, code)
        if left[key] < line.request.quantity:
            return False
        left[key] -= line.request.quantity
        return True

    # Lines bound to a place first: what they take is not there for the lines that may travel.
    for line in lines:
        request = line.request
        if request.fulfilment == "in_store":
            assert line.pickup is not None
            if not take(line, line.pickup.code):
                raise _out_of_stock(request.sku, f"not enough at {line.pickup.code}")
            holds.append(_Hold(line, line.pickup.code, request.quantity))
            decision["lines"].append(
                {"line": line.index, "from": line.pickup.code, "why": "sold at the counter"}
            )
        elif request.fulfilment == "ship" and line.source is not None:
            if not take(line, line.source):
                raise _out_of_stock(request.sku, f"not enough at {line.source}")
            holds.append(_Hold(line, line.source, request.quantity))
            decision["lines"].append(
                {"line": line.index, "from": line.source, "why": "the line names it"}
            )
    for line in lines:
        request = line.request
        if request.fulfilment != "pickup":
            continue
        store = line.pickup
        assert store is not None
        if take(line, store.code):
            holds.append(_Hold(line, store.code, request.quantity))
            decision["lines"].append(
                {"line": line.index, "from": store.code, "why": "in stock at the pickup store"}
            )
            continue
        warehouses = sorted(
            (w for w in locations.values() if w.kind == "warehouse"),
            key=lambda w: (_distance(w, store.lat, store.lon) or math.inf, w.code),
        )
        source = next(
            (w for w in warehouses if left[(line.variant.id, w.code)] >= request.quantity), None
        )
        if source is None:
            raise _out_of_stock(
                request.sku, f"not at {store.code} and no warehouse has {request.quantity}"
            )
        take(line, source.code)
        holds.append(_Hold(line, source.code, request.quantity, settings.transfer_lead_hours))
        decision["lines"].append(
            {
                "line": line.index,
                "from": source.code,
                "to": store.code,
                "why": f"not in stock at {store.code}: transfer from the nearest warehouse with it",
            }
        )
    free = [line for line in lines if line.request.fulfilment == "ship" and line.source is None]
    if free:
        ship_to = order.ship_to or {}
        shippers = [
            location
            for location in locations.values()
            if location.kind == "warehouse"
            or (location.kind == "store" and location.ship_from_store)
        ]
        candidates = [
            sourcing.Candidate(
                code=location.code,
                kind=location.kind,
                distance_km=_distance(location, ship_to.get("lat"), ship_to.get("lon")),
                available={
                    line.request.sku: left[(line.variant.id, location.code)] for line in free
                },
            )
            for location in shippers
        ]
        try:
            chosen = sourcing.plan(
                settings.sourcing_rule,
                [(line.request.sku, line.request.quantity) for line in free],
                candidates,
            )
        except sourcing.Unfillable as error:
            raise _out_of_stock(
                error.sku, f"{error.wanted} wanted, {error.available} can be shipped"
            ) from error
        for allocation in chosen.allocations:
            line = free[allocation.line]
            holds.append(_Hold(line, allocation.location, allocation.quantity))
            decision["lines"].append(
                {"line": line.index, "from": allocation.location, "quantity": allocation.quantity}
            )
        decision["shipments"] = chosen.shipments
        decision["reason"] = chosen.reason
        decision["candidates"] = [
            {
                "location": c.code,
                "distance_km": None if c.distance_km is None else round(c.distance_km, 1),
                "available": c.available,
            }
            for c in sorted(candidates, key=lambda c: (c.distance_km or math.inf, c.code))[:20]
        ]
    return holds, decision


async def _reserve(
    session: AsyncSession,
    tenant: TenantContext,
    order: Order,
    lines: list[_Line],
    holds: list[_Hold],
    locations: dict[str, Location],
) -> None:
    moment = now()
    for position, hold in enumerate(holds):
        line = hold.line
        try:
            reservation = await stock.reserve(
                session,
                tenant,
                sku=line.request.sku,
                location=hold.location,
                quantity=hold.quantity,
                ttl_seconds=stock.MAX_TTL_SECONDS,
                reference=f"order:{order.id}",
            )
        except Conflict as error:
            if error.code == "out_of_stock":
                raise _Gone() from error
            raise
        request = line.request
        pickup = line.pickup
        row = OrderLine(
            id=new_id(),
            tenant_id=tenant.id,
            order_id=order.id,
            position=position,
            variant_id=line.variant.id,
            sku=request.sku,
            name=line.variant.name,
            quantity=hold.quantity,
            unit_price=line.unit_price,
            fulfilment=request.fulfilment,
            source_location_id=locations[hold.location].id,
            source_location=hold.location,
            pickup_location_id=pickup.id if pickup is not None else None,
            pickup_location=pickup.code if pickup is not None else None,
            ready_by=(
                moment + timedelta(hours=hold.ready_by_hours)
                if hold.ready_by_hours is not None
                else None
            ),
            reservation_id=reservation.id,
            status="reserved",
            returned_quantity=0,
        )
        if request.fulfilment == "in_store":
            await stock.consume(session, tenant, reservation.id)
            row.status = "delivered"
        session.add(row)
    await session.flush()


# --- loyalty ---------------------------------------------------------------------------------


async def _redeem(session: AsyncSession, tenant: TenantContext, order: Order, points: int) -> int:
    from hilos.commerce import loyalty

    discount = await loyalty.redeem(
        session,
        tenant,
        customer_id=order.customer_id,
        points=points,
        currency=order.currency,
        reference=f"order:{order.id}",
        idempotency_key=f"order:{order.id}:redeem",
    )
    if discount > order.subtotal:
        raise Invalid(
            f"{points} points are worth more than the order ({discount} > {order.subtotal})",
            field="loyalty_points",
            code="discount_exceeds_total",
        )
    return int(discount)


async def _earn(session: AsyncSession, tenant: TenantContext, order: Order) -> None:
    from hilos.commerce import loyalty

    await loyalty.earn_for_purchase(
        session,
        tenant,
        customer_id=order.customer_id,
        channel=order.channel,
        amount=order.total,
        currency=order.currency,
        reference=f"order:{order.id}",
        idempotency_key=f"order:{order.id}:earn",
    )


# --- reading -------------------------------------------------------------------------------


async def get_order(session: AsyncSession, tenant: TenantContext, order_id: str) -> Order:
    return await get_owned(session, Order, order_id, tenant, what="order")


async def lines_of(session: AsyncSession, tenant: TenantContext, order_id: str) -> list[OrderLine]:
    rows = await session.scalars(
        select(OrderLine)
        .where(OrderLine.tenant_id == tenant.id, OrderLine.order_id == order_id)
        .order_by(OrderLine.position)
    )
    return list(rows.all())


async def history_of(
    session: AsyncSession, tenant: TenantContext, order_id: str
) -> list[OrderHistory]:
    rows = await session.scalars(
        select(OrderHistory)
        .where(OrderHistory.tenant_id == tenant.id, OrderHistory.order_id == order_id)
        .order_by(OrderHistory.created_at, OrderHistory.id)
    )
    return list(rows.all())


async def list_orders(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> list[Order]:
    statement = tenant_scope(select(Order), Order, tenant)
    if customer_id is not None:
        statement = statement.where(Order.customer_id == customer_id)
    if status is not None:
        statement = statement.where(Order.status == status)
    if after is not None:
        statement = statement.where(Order.id < after)
    rows = await session.scalars(statement.order_by(Order.id.desc()).limit(min(limit, 200)))
    return list(rows.all())


# --- the life cycle --------------------------------------------------------------------------

_RANK = {
    "placed": 0,
    "allocated": 1,
    "picked": 2,
    "ready_for_pickup": 3,
    "shipped": 3,
    "collected": 4,
    "delivered": 4,
}


class InvalidTransition(HilosError):
    status_code = 409
    code = "invalid_transition"


def _check_transition(order: Order, lines: list[OrderLine], target: str) -> None:
    current = order.status
    waiting = {line.fulfilment for line in lines if line.status == "reserved"}
    statuses = {line.status for line in lines}
    if current == "cancelled":
        allowed = False
    elif target in ("allocated", "picked"):
        allowed = _RANK[target] > _RANK[current]
    elif target == "ready_for_pickup":
        allowed = "pickup" in waiting
    elif target == "shipped":
        allowed = "ship" in waiting
    elif target == "collected":
        allowed = "ready" in statuses
    elif target == "delivered":
        allowed = "shipped" in statuses
    else:
        allowed = False
    if not allowed:
        raise InvalidTransition(
            f"order {order.id} is {current}; it cannot become {target}"
            + _transition_hint(target, lines),
            details={"status": current, "requested": target},
        )


def _transition_hint(target: str, lines: list[OrderLine]) -> str:
    kinds = {line.fulfilment for line in lines}
    if target in ("ready_for_pickup", "collected") and "pickup" not in kinds:
        return " (it has no pickup line)"
    if target in ("shipped", "delivered") and "ship" not in kinds:
        return " (it has no ship line)"
    return ""


async def advance(
    session: AsyncSession,
    tenant: TenantContext,
    order_id: str,
    *,
    status: str,
    by_user_id: str | None = None,
    note: str | None = None,
) -> Order:
    """Move an order forward in its life cycle; asking for the status it has changes nothing."""
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    if status == "cancelled":
        return await cancel(session, tenant, order_id, by_user_id=by_user_id, reason=note)
    order = await _locked(session, tenant, order_id)
    if order.status == status:
        return order
    lines = await lines_of(session, tenant, order.id)
    _check_transition(order, lines, status)
    if status == "ready_for_pickup":
        for line in lines:
            if line.fulfilment == "pickup" and line.status == "reserved":
                assert line.pickup_location is not None
                assert line.reservation_id is not None
                if line.source_location != line.pickup_location:
                    await transfers.transfer_reservation(
                        session, tenant, line.reservation_id, to_location=line.pickup_location
                    )
                    line.source_location = line.pickup_location
                    line.source_location_id = cast(str, line.pickup_location_id)
                line.status = "ready"
    elif status == "shipped":
        await _sell(
            session,
            tenant,
            [x for x in lines if x.fulfilment == "ship" and x.status == "reserved"],
            "shipped",
        )
    elif status == "collected":
        await _sell(
            session,
            tenant,
            [x for x in lines if x.fulfilment == "pickup" and x.status in ("ready", "reserved")],
            "collected",
        )
    elif status == "delivered":
        for line in lines:
            if line.status == "shipped":
                line.status = "delivered"
    previous = order.status
    order.status = status
    order.updated_at = now()
    await session.flush()
    await _record(
        session, tenant, order, status, previous=previous, by_user_id=by_user_id, note=note
    )
    return order


async def _locked(session: AsyncSession, tenant: TenantContext, order_id: str) -> Order:
    """The order, locked for this transaction on PostgreSQL so two status changes queue up."""
    statement = tenant_scope(select(Order).where(Order.id == order_id), Order, tenant)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    order = (
        await session.execute(statement.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order


async def _sell(
    session: AsyncSession, tenant: TenantContext, lines: list[OrderLine], status: str
) -> None:
    """Turn the lines' reservations into sales; one that lapsed reserves again first."""
    for line in lines:
        assert line.reservation_id is not None
        try:
            await stock.consume(session, tenant, line.reservation_id)
        except Conflict as error:
            if error.code != "reservation_expired":
                raise
            again = await stock.reserve(
                session,
                tenant,
                sku=line.sku,
                location=line.source_location,
                quantity=line.quantity,
                ttl_seconds=60,
                reference=f"order:{line.order_id}",
            )
            line.reservation_id = again.id
            await stock.consume(session, tenant, again.id)
        line.status = status


async def cancel(
    session: AsyncSession,
    tenant: TenantContext,
    order_id: str,
    *,
    by_user_id: str | None = None,
    reason: str | None = None,
) -> Order:
    """Cancel an order none of whose units has left; every held unit goes back to stock and the
    customer's points come back. Cancelling a cancelled order changes nothing."""
    order = await _locked(session, tenant, order_id)
    if order.status == "cancelled":
        return order
    lines = await lines_of(session, tenant, order.id)
    gone = [line for line in lines if line.status in ("shipped", "collected", "delivered")]
    if order.status not in CANCELLABLE or gone:
        raise Conflict(
            f"order {order.id} is {order.status} and has units that left"
            f" ({', '.join(sorted({line.sku for line in gone})) or order.status}): return them "
            "instead",
            code="order_not_cancellable",
        )
    for line in lines:
        if line.reservation_id is not None and line.status in ("reserved", "ready"):
            await stock.release(session, tenant, line.reservation_id)
        line.status = "cancelled"
    from hilos.commerce import loyalty

    reference = f"order:{order.id}"
    await loyalty.refund_redemption(
        session,
        tenant,
        customer_id=order.customer_id,
        reference=reference,
        idempotency_key=f"{reference}:redeem:refund",
    )
    await loyalty.reverse_for_return(
        session,
        tenant,
        customer_id=order.customer_id,
        reference=reference,
        returned_amount=order.total,
        order_amount=order.total,
        idempotency_key=f"{reference}:earn:cancel",
    )
    previous = order.status
    order.status = "cancelled"
    order.updated_at = now()
    await session.flush()
    await _record(
        session, tenant, order, "cancelled", previous=previous, by_user_id=by_user_id, note=reason
    )
    return order


# --- history, events, timeline, the customer's message -------------------------------------


def money(amount: int, currency: str, language: str) -> str:
    """``amount`` minor units of ``currency`` as the customer reads it."""
    exponent = get_currency_precision(currency)
    return format_currency(amount / 10**exponent, currency, locale=language)


def _notice(order: Order, status: str, language: str, lines: list[OrderLine]) -> str:
    gettext = translations(language).gettext
    number = order_number(order.id)
    stores = sorted({line.pickup_location for line in lines if line.pickup_location})
    values: dict[str, str] = {
        "number": number,
        "total": money(order.total, order.currency, language),
        "store": ", ".join(stores),
    }
    texts = {
        "placed": gettext("We have received your order %(number)s. Total: %(total)s."),
        "allocated": gettext("Your order %(number)s is being prepared."),
        "picked": gettext("Your order %(number)s is packed."),
        "ready_for_pickup": gettext("Your order %(number)s is ready for pickup at %(store)s."),
        "shipped": gettext("Your order %(number)s is on its way."),
        "collected": gettext("You have collected your order %(number)s. Thank you!"),
        "delivered": gettext("Your order %(number)s has been delivered."),
        "cancelled": gettext("Your order %(number)s has been cancelled."),
    }
    text = texts[status] % values
    ready_by = [line.ready_by for line in lines if line.ready_by is not None]
    if status == "placed" and ready_by:
        day = max(ready_by).date().isoformat()
        text += " " + gettext("It will be ready for pickup at %(store)s from %(day)s.") % {
            **values,
            "day": day,
        }
    return text


async def customer_language(session: AsyncSession, tenant: TenantContext, customer_id: str) -> str:
    customer = await customers.get_customer(session, tenant, customer_id)
    return (
        supported_language(customer.language)
        or supported_language(tenant.locale)
        or DEFAULT_LANGUAGE
    )


def order_payload(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "number": order_number(order.id),
        "customer_id": order.customer_id,
        "channel": order.channel,
        "status": order.status,
        "currency": order.currency,
        "total": order.total,
    }


async def _record(
    session: AsyncSession,
    tenant: TenantContext,
    order: Order,
    status: str,
    *,
    previous: str | None,
    by_user_id: str | None,
    note: str | None = None,
    notify: bool = True,
) -> None:
    moment = now()
    lines = await lines_of(session, tenant, order.id)
    notification: dict[str, Any] | None = None
    if notify and (await get_settings(session, tenant)).notify_customer:
        language = await customer_language(session, tenant, order.customer_id)
        notified = await notify_customer(
            session,
            tenant,
            customer_id=order.customer_id,
            text=_notice(order, status, language, lines),
            about={"order_id": order.id, "status": status},
        )
        notification = notified.as_dict()
    session.add(
        OrderHistory(
            id=new_id(),
            tenant_id=tenant.id,
            order_id=order.id,
            status=status,
            previous_status=previous,
            by_user_id=by_user_id,
            note=note,
            notification=notification,
            created_at=moment,
        )
    )
    payload = {**order_payload(order), "status": status, "previous_status": previous}
    if status == "placed":
        payload["lines"] = [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "fulfilment": line.fulfilment,
                "location": line.source_location,
                "pickup_location": line.pickup_location,
            }
            for line in lines
        ]
    await emit(session, tenant_id=tenant.id, topic=f"order.{status}", payload=payload)
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=order.customer_id,
        type="order",
        name=status,
        properties={
            **order_payload(order),
            "status": status,
            "previous_status": previous,
            "notified_on": (notification or {}).get("channel_kind"),
        },
        context={},
        occurred_at=moment,
        source_message_id=None,
    )
    await session.flush()


async def returnable(
    session: AsyncSession, tenant: TenantContext, order_id: str
) -> dict[str, list[OrderLine]]:
    """The order's lines that have been handed over, by SKU (what a return may take back)."""
    found: dict[str, list[OrderLine]] = defaultdict(list)
    for line in await lines_of(session, tenant, order_id):
        if line.status in ("shipped", "collected", "delivered"):
            found[line.sku].append(line)
    return found


async def mark_returned(session: AsyncSession, line: OrderLine, quantity: int) -> bool:
    """Count ``quantity`` more units of ``line`` as returned, unless that exceeds what was
    bought (a conditional update, so two returns racing cannot both take the last unit)."""
    result = await session.execute(
        update(OrderLine)
        .where(
            and_(
                OrderLine.id == line.id,
                OrderLine.returned_quantity + quantity <= OrderLine.quantity,
            )
        )
        .values(returned_quantity=OrderLine.returned_quantity + quantity)
        .returning(OrderLine.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


# --- checkout of a shared cart -----------------------------------------------------------------


async def checkout_cart(
    session: AsyncSession,
    tenant: TenantContext,
    cart_id: str,
    *,
    channel: str,
    fulfilment: str,
    location: str | None,
    idempotency_key: str,
    ship_to: dict[str, Any] | None = None,
    loyalty_points: int = 0,
    by_user_id: str | None = None,
) -> Placed:
    """Place an order of a cart's lines, from whichever channel finishes it (the app, an agent
    on the phone, a clerk at the till), and mark the cart converted.

    Lines are priced again from the checkout channel's price list: the cart shows what each
    channel quoted when the line was set, the order charges what the channel selling it asks.
    A resend with the same key answers the first order.
    """
    from hilos.commerce import carts

    cart = await carts.get_cart(session, tenant, cart_id)
    existing = await _by_key(session, tenant, idempotency_key)
    if existing is not None and cart.order_id == existing.id:
        return Placed(existing, created=False)
    if not cart.lines:
        raise Conflict(f"cart {cart_id} is empty", code="cart_empty")
    placed = await place_order(
        session,
        tenant,
        channel=channel,
        lines=[LineRequest(line.sku, line.quantity, fulfilment, location) for line in cart.lines],
        idempotency_key=idempotency_key,
        customer_id=cart.customer_id,
        ship_to=ship_to,
        loyalty_points=loyalty_points,
        by_user_id=by_user_id,
    )
    if placed.created:
        await carts.mark_converted(session, tenant, cart_id=cart.id, order_id=placed.order.id)
    return placed

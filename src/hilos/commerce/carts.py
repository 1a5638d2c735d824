"""Shared carts: one open cart per customer that every channel reads and edits.

Rules this module enforces:

- **One open cart per customer.** A cart is open while ``active`` or ``abandoned``; a partial
  unique index allows one per customer, so the app, the contact-center agent and the store
  clerk all edit the same cart. The first line creates it (``INSERT … ON CONFLICT``, so two
  channels adding at once still make one cart). ``converted`` (an order was placed from it),
  ``closed`` (emptied on purpose) and ``merged`` (folded into another customer's cart) carts
  are history; the customer's next line starts a new cart.
- **Setting a line** (``set_line``) states the quantity of one SKU: 0 removes the line. Each
  change takes the cart's row lock first (the upsert above, or ``FOR UPDATE`` on PostgreSQL;
  SQLite has one writer), so two channels changing one cart are serialised: different SKUs
  both land, the same SKU ends with the last quantity set. A line is **priced by the price list
  of the channel that sets it**, at that moment (``commerce.pricing``); a SKU without a price
  there is ``422 no_price``. **One currency per cart**: a line in another currency than the
  cart's other lines is ``422 currency_mismatch``. Setting a line to what it already is changes
  nothing (no new version, no event), so a resent request is harmless. A client may send the
  ``expected_version`` it saw; another version is ``409 version_conflict``.
- **Abandonment.** An active, non-empty cart whose last change is older than the tenant's
  threshold (``abandon_after_minutes``, default 60) becomes ``abandoned``: the worker's
  ``abandon_idle`` claims such carts (``SKIP LOCKED`` on PostgreSQL; the cart row is the timer)
  and emits ``cart.abandoned`` and a timeline entry once per abandonment. The next change makes
  the cart active again, and a new idle period abandons it again.
- **Merges.** When customers merge, the merged customer's open cart moves to the survivor, or
  its lines are added to the survivor's open cart (quantities of one SKU add up). Carts in two
  currencies cannot be folded: the merged customer's cart is then set aside (``merged``) with
  its lines. Unmerging gives back exactly what was moved or added.

Every change emits ``cart.updated`` through the outbox; ``mark_converted`` emits
``cart.converted``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from babel.numbers import format_currency, get_currency_precision
from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.commerce.cart_models import OPEN_PREDICATE, Cart, CartLine, CartSettings
from hilos.commerce.catalog import variant_by_sku
from hilos.commerce.pricing import effective_prices
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.service import insert_for

OPEN_STATUSES = ("active", "abandoned")
MAX_LINE_QUANTITY = 9_999
MAX_LINES = 100
DEFAULT_ABANDON_AFTER_MINUTES = 60
MIN_ABANDON_AFTER_MINUTES = 1
MAX_ABANDON_AFTER_MINUTES = 30 * 24 * 60
ABANDON_BATCH = 200

_CARTS = cast(Table, Cart.__table__)
_LINES = cast(Table, CartLine.__table__)
_SETTINGS = cast(Table, CartSettings.__table__)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# --- views ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineView:
    sku: str
    variant_id: str
    name: str
    quantity: int
    unit_price: int
    currency: str
    # The sales channel whose price list priced this line.
    channel: str
    updated_at: datetime

    @property
    def total(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class CartView:
    id: str
    customer_id: str
    status: str
    # The sales channel that changed the cart last.
    channel: str
    version: int
    lines: tuple[LineView, ...]
    created_at: datetime
    updated_at: datetime
    abandoned_at: datetime | None
    converted_at: datetime | None
    closed_at: datetime | None
    order_id: str | None

    @property
    def currency(self) -> str | None:
        """The currency of every line; ``None`` while the cart is empty."""
        return self.lines[0].currency if self.lines else None

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)


@dataclass(frozen=True, slots=True)
class CartSettingsView:
    abandon_after_minutes: int


def _line(row: RowMapping, prefix: str = "") -> LineView:
    return LineView(
        sku=row[f"{prefix}sku"],
        variant_id=row[f"{prefix}variant_id"],
        name=row[f"{prefix}name"],
        quantity=row[f"{prefix}quantity"],
        unit_price=row[f"{prefix}unit_price"],
        currency=row[f"{prefix}currency"],
        channel=row[f"{prefix}channel"],
        updated_at=row[f"{prefix}updated_at"],
    )


def _view(row: RowMapping, lines: Sequence[LineView]) -> CartView:
    return CartView(
        id=row["id"],
        customer_id=row["customer_id"],
        status=row["status"],
        channel=row["channel"],
        version=row["version"],
        lines=tuple(lines),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        abandoned_at=row["abandoned_at"],
        converted_at=row["converted_at"],
        closed_at=row["closed_at"],
        order_id=row["order_id"],
    )


def _lines_payload(view: CartView) -> list[dict[str, Any]]:
    return [{"sku": line.sku, "quantity": line.quantity} for line in view.lines]


def format_money(amount: int, currency: str, *, language: str) -> str:
    """``amount`` minor units of ``currency`` written the reader's way (``19,99 €``)."""
    major = Decimal(amount).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=language)


# --- reading ----------------------------------------------------------------------------------

_LINE_COLUMNS = (
    "sku",
    "variant_id",
    "name",
    "quantity",
    "unit_price",
    "currency",
    "channel",
    "updated_at",
)
# A cart and its lines in one round trip (the 360° view reads it on every visit).
_CART_WITH_LINES = (
    select(*_CARTS.c, *(_LINES.c[name].label(f"line_{name}") for name in _LINE_COLUMNS))
    .select_from(_CARTS.outerjoin(_LINES, _LINES.c.cart_id == _CARTS.c.id))
    .order_by(_LINES.c.created_at, _LINES.c.sku)
)


async def _load(session: AsyncSession, *conditions: Any) -> CartView | None:
    rows = (await session.execute(_CART_WITH_LINES.where(*conditions))).mappings().all()
    if not rows:
        return None
    lines = [_line(row, "line_") for row in rows if row["line_sku"] is not None]
    return _view(rows[0], lines)


async def _lines_of(session: AsyncSession, cart_ids: Sequence[str]) -> dict[str, list[LineView]]:
    found: dict[str, list[LineView]] = defaultdict(list)
    if not cart_ids:
        return found
    rows = await session.execute(
        select(_LINES)
        .where(_LINES.c.cart_id.in_(cart_ids))
        .order_by(_LINES.c.created_at, _LINES.c.sku)
    )
    for row in rows.mappings():
        found[row["cart_id"]].append(_line(row))
    return found


async def get_cart(session: AsyncSession, tenant: TenantContext, cart_id: str) -> CartView:
    """Any cart of the tenant by id, whatever its status; another tenant's is a 404."""
    view = await _load(session, _CARTS.c.tenant_id == tenant.id, _CARTS.c.id == cart_id)
    if view is None:
        raise NotFound(f"cart {cart_id} not found")
    return view


async def active_cart(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> CartView | None:
    """The customer's open cart (active or abandoned) with its lines, or ``None``; one query.

    ``customer_id`` is taken as given: pass a live customer (merges move carts to the
    survivor). Each line has ``sku``, ``quantity``, ``unit_price`` and ``currency``.
    """
    return await _load(
        session,
        _CARTS.c.tenant_id == tenant.id,
        _CARTS.c.customer_id == customer_id,
        _CARTS.c.status.in_(OPEN_STATUSES),
    )


async def customer_cart(session: AsyncSession, tenant: TenantContext, customer_id: str) -> CartView:
    """The open cart of a customer (or of the survivor they were merged into); 404 if none."""
    customer = await customers.live_customer(session, tenant, customer_id)
    view = await active_cart(session, tenant, customer.id)
    if view is None:
        raise NotFound(f"customer {customer_id} has no open cart", code="no_cart")
    return view


# --- the customer -----------------------------------------------------------------------------


async def resolve_customer(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str | None = None,
    identities: Sequence[tuple[str, str]] | None = None,
    name: str | None = None,
) -> str:
    """The live customer named by id, or found (or created) by identities as ``identify``
    does: the app knows a device id, the agent a phone number, the clerk a loyalty card."""
    if (customer_id is None) == (not identities):
        raise Invalid("name the customer by customer_id or by identities", field="customer")
    if customer_id is not None:
        return (await customers.live_customer(session, tenant, customer_id)).id
    result = await customers.identify(
        session,
        tenant,
        identities=list(identities or ()),
        name=name,
        reason="cart",
        field_prefix="customer.identities",
    )
    if result.created and not result.linked and result.ignored:
        # identify would give a fresh profile to every request naming only blocked values (a
        # shop's own phone); a cart needs a customer it can find again.
        raise Invalid(
            "every identity given is blocked for this shop: name the customer by another",
            field="customer.identities",
            code="blocked_identity",
        )
    return result.customer_id


# --- changing lines ---------------------------------------------------------------------------


async def _lock_open_cart(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    *,
    create: bool,
    channel: str,
) -> RowMapping | None:
    """The customer's open cart, locked for this transaction; created if ``create``."""
    dialect = _dialect(session)
    if create:
        moment = now()
        statement: Any = (
            insert_for(dialect, _CARTS)
            .values(
                id=new_id(),
                tenant_id=tenant.id,
                customer_id=customer_id,
                status="active",
                channel=channel,
                line_count=0,
                version=0,
                created_at=moment,
                updated_at=moment,
            )
            # An update that changes nothing, for its row lock and its RETURNING.
            .on_conflict_do_update(
                index_elements=["tenant_id", "customer_id"],
                index_where=text(OPEN_PREDICATE),
                set_={"status": _CARTS.c.status},
            )
            .returning(*_CARTS.c)
        )
    else:
        statement = select(_CARTS).where(
            _CARTS.c.tenant_id == tenant.id,
            _CARTS.c.customer_id == customer_id,
            _CARTS.c.status.in_(OPEN_STATUSES),
        )
        if dialect == "postgresql":
            statement = statement.with_for_update()
    return (await session.execute(statement)).mappings().first()


def check_quantity(quantity: int) -> None:
    if isinstance(quantity, bool) or not 0 <= quantity <= MAX_LINE_QUANTITY:
        raise Invalid(
            f"quantity must be a whole number from 0 (remove the line) to {MAX_LINE_QUANTITY}",
            field="quantity",
        )


async def set_line(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    channel: str,
    sku: str,
    quantity: int,
    expected_version: int | None = None,
) -> CartView:
    """Set the quantity of ``sku`` in the customer's open cart from ``channel`` (0 removes it).

    The first line creates the cart. Refusals (unknown SKU, no price on the channel, another
    currency, a stale ``expected_version``) raise before anything is written.
    """
    check_quantity(quantity)
    variant = await variant_by_sku(session, tenant, sku)
    price = None
    if quantity > 0:
        price = (
            (await effective_prices(session, tenant, at=now(), sku=sku)).get(sku, {}).get(channel)
        )
        if price is None:
            raise Invalid(f"{sku} has no price on channel {channel}", field="sku", code="no_price")
    locked = await _lock_open_cart(
        session, tenant, customer_id, create=quantity > 0, channel=channel
    )
    if locked is None:
        raise NotFound(f"customer {customer_id} has no open cart", code="no_cart")
    if expected_version is not None and locked["version"] != expected_version:
        raise Conflict(
            f"cart {locked['id']} is at version {locked['version']}, not {expected_version}: "
            "it changed meanwhile; read it again",
            code="version_conflict",
        )
    cart = await get_cart(session, tenant, locked["id"])
    current = {line.sku: line for line in cart.lines}
    moment = now()
    if price is not None:
        currencies = {line.currency for line in cart.lines if line.sku != sku}
        if currencies and price.currency not in currencies:
            raise Invalid(
                f"the cart is in {min(currencies)}; {sku} costs {price.currency} on channel "
                f"{channel}",
                field="sku",
                code="currency_mismatch",
            )
        if sku not in current and len(current) >= MAX_LINES:
            raise Invalid(
                f"a cart holds at most {MAX_LINES} different SKUs",
                field="sku",
                code="too_many_lines",
            )
        existing = current.get(sku)
        unchanged = existing is not None and (
            existing.quantity,
            existing.unit_price,
            existing.currency,
            existing.channel,
        ) == (quantity, price.amount, price.currency, channel)
        if unchanged:
            return cart
        values = {
            "tenant_id": tenant.id,
            "variant_id": variant.id,
            "name": variant.name,
            "quantity": quantity,
            "unit_price": price.amount,
            "currency": price.currency,
            "channel": channel,
            "updated_at": moment,
        }
        await session.execute(
            insert_for(_dialect(session), _LINES)
            .values(cart_id=cart.id, sku=sku, created_at=moment, **values)
            .on_conflict_do_update(index_elements=["cart_id", "sku"], set_=values)
        )
        current[sku] = LineView(
            sku=sku,
            variant_id=variant.id,
            name=variant.name,
            quantity=quantity,
            unit_price=price.amount,
            currency=price.currency,
            channel=channel,
            updated_at=moment,
        )
    else:
        if sku not in current:
            return cart
        await session.execute(
            delete(_LINES).where(_LINES.c.cart_id == cart.id, _LINES.c.sku == sku)
        )
        del current[sku]
    # Lines keep the order they were first added in.
    order = {line.sku: index for index, line in enumerate(cart.lines)}
    lines = sorted(current.values(), key=lambda line: order.get(line.sku, len(order)))
    row = (
        (
            await session.execute(
                update(_CARTS)
                .where(_CARTS.c.id == cart.id)
                .values(
                    status="active",
                    channel=channel,
                    line_count=len(lines),
                    version=_CARTS.c.version + 1,
                    updated_at=moment,
                )
                .returning(*_CARTS.c)
            )
        )
        .mappings()
        .one()
    )
    view = _view(row, lines)
    await _updated(session, tenant, view, change={"sku": sku, "quantity": quantity})
    return view


async def _updated(
    session: AsyncSession,
    tenant: TenantContext,
    view: CartView,
    *,
    change: dict[str, Any] | None = None,
) -> None:
    await emit(
        session,
        tenant_id=tenant.id,
        topic="cart.updated",
        payload={
            "cart_id": view.id,
            "customer_id": view.customer_id,
            "status": view.status,
            "channel": view.channel,
            "version": view.version,
            "total": view.total,
            "currency": view.currency,
            "lines": _lines_payload(view),
            "change": change,
        },
    )


async def close_cart(session: AsyncSession, tenant: TenantContext, cart_id: str) -> CartView:
    """Close an open cart (the customer emptied it); its lines stay as a record. Closing a
    closed cart changes nothing; a converted or merged cart cannot be closed."""
    row = await _end(session, tenant, cart_id, status="closed", closed_at=now())
    if row is None:
        cart = await get_cart(session, tenant, cart_id)
        if cart.status == "closed":
            return cart
        raise Conflict(f"cart {cart_id} is {cart.status}", code=f"cart_{cart.status}")
    view = _view(row, (await _lines_of(session, [cart_id]))[cart_id])
    await _updated(session, tenant, view)
    return view


async def _end(
    session: AsyncSession, tenant: TenantContext, cart_id: str, *, status: str, **values: Any
) -> RowMapping | None:
    """Move an open cart to ``status`` in one conditional UPDATE; ``None`` if it was not open
    (or is empty, for a conversion)."""
    conditions = [
        _CARTS.c.tenant_id == tenant.id,
        _CARTS.c.id == cart_id,
        _CARTS.c.status.in_(OPEN_STATUSES),
    ]
    if status == "converted":
        conditions.append(_CARTS.c.line_count > 0)
    result = await session.execute(
        update(_CARTS)
        .where(*conditions)
        .values(status=status, version=_CARTS.c.version + 1, **values)
        .returning(*_CARTS.c)
    )
    return result.mappings().first()


async def mark_converted(
    session: AsyncSession, tenant: TenantContext, *, cart_id: str, order_id: str
) -> None:
    """Record that order ``order_id`` was placed from the open cart ``cart_id``.

    For the orders code's checkout. Marking it again with the same order changes nothing;
    another order, a closed, merged or empty cart is a 409; another tenant's cart a 404.
    """
    moment = now()
    row = await _end(
        session, tenant, cart_id, status="converted", order_id=order_id, converted_at=moment
    )
    if row is None:
        cart = await get_cart(session, tenant, cart_id)
        if cart.status == "converted" and cart.order_id == order_id:
            return
        if cart.status == "converted":
            raise Conflict(
                f"cart {cart_id} was already converted into order {cart.order_id}",
                code="cart_converted",
            )
        if cart.status in OPEN_STATUSES:
            raise Conflict(f"cart {cart_id} is empty", code="cart_empty")
        raise Conflict(f"cart {cart_id} is {cart.status}", code=f"cart_{cart.status}")
    view = _view(row, (await _lines_of(session, [cart_id]))[cart_id])
    await emit(
        session,
        tenant_id=tenant.id,
        topic="cart.converted",
        payload={
            "cart_id": view.id,
            "customer_id": view.customer_id,
            "order_id": order_id,
            "channel": view.channel,
            "total": view.total,
            "currency": view.currency,
            "lines": _lines_payload(view),
        },
    )
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=view.customer_id,
        type="cart",
        name="converted",
        properties=_timeline_properties(view) | {"order_id": order_id},
        context={},
        occurred_at=moment,
        source_message_id=f"cart:{view.id}:converted",
    )


def _timeline_properties(view: CartView) -> dict[str, Any]:
    return {
        "cart_id": view.id,
        "channel": view.channel,
        "total": view.total,
        "currency": view.currency,
        "items": sum(line.quantity for line in view.lines),
    }


# --- settings ---------------------------------------------------------------------------------


async def get_settings(session: AsyncSession, tenant: TenantContext) -> CartSettingsView:
    minutes = (
        await session.execute(
            select(_SETTINGS.c.abandon_after_minutes).where(_SETTINGS.c.tenant_id == tenant.id)
        )
    ).scalar_one_or_none()
    return CartSettingsView(abandon_after_minutes=minutes or DEFAULT_ABANDON_AFTER_MINUTES)


async def set_settings(
    session: AsyncSession, tenant: TenantContext, *, abandon_after_minutes: int
) -> CartSettingsView:
    """Set after how many minutes without a change an active cart is abandoned."""
    if not MIN_ABANDON_AFTER_MINUTES <= abandon_after_minutes <= MAX_ABANDON_AFTER_MINUTES:
        raise Invalid(
            f"abandon_after_minutes must be from {MIN_ABANDON_AFTER_MINUTES} to "
            f"{MAX_ABANDON_AFTER_MINUTES} (30 days)",
            field="abandon_after_minutes",
        )
    values = {"abandon_after_minutes": abandon_after_minutes, "updated_at": now()}
    await session.execute(
        insert_for(_dialect(session), _SETTINGS)
        .values(tenant_id=tenant.id, **values)
        .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
    )
    return CartSettingsView(abandon_after_minutes=abandon_after_minutes)


# --- abandonment ------------------------------------------------------------------------------


async def abandon_idle(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Abandon every active, non-empty cart idle for longer than its tenant's threshold; return
    how many (the worker's durable timer).

    Tenants share a handful of thresholds, so each threshold is one indexed range scan of
    ``(status, updated_at)`` with a cut-off computed here: no date arithmetic in SQL, which
    SQLite and PostgreSQL write differently.
    """
    async with sessionmaker() as session:
        thresholds = set(
            (await session.scalars(select(_SETTINGS.c.abandon_after_minutes).distinct())).all()
        )
    abandoned = 0
    for minutes in sorted(thresholds | {DEFAULT_ABANDON_AFTER_MINUTES}):
        abandoned += await _abandon_after(sessionmaker, minutes)
    return abandoned


async def _abandon_after(sessionmaker: async_sessionmaker[AsyncSession], minutes: int) -> int:
    threshold = func.coalesce(
        select(_SETTINGS.c.abandon_after_minutes)
        .where(_SETTINGS.c.tenant_id == _CARTS.c.tenant_id)
        .scalar_subquery(),
        DEFAULT_ABANDON_AFTER_MINUTES,
    )
    abandoned = 0
    while True:
        async with sessionmaker() as session, session.begin():
            moment = now()
            cutoff = moment - timedelta(minutes=minutes)
            idle = (
                _CARTS.c.status == "active",
                _CARTS.c.line_count > 0,
                _CARTS.c.updated_at <= cutoff,
            )
            statement = (
                select(_CARTS.c.id)
                .where(*idle, threshold == minutes)
                .order_by(_CARTS.c.updated_at)
                .limit(ABANDON_BATCH)
            )
            if _dialect(session) == "postgresql":
                statement = statement.with_for_update(skip_locked=True, of=_CARTS)
            due = list((await session.scalars(statement)).all())
            if not due:
                return abandoned
            rows = (
                (
                    await session.execute(
                        update(_CARTS)
                        .where(_CARTS.c.id.in_(due), *idle)
                        .values(status="abandoned", abandoned_at=moment)
                        .returning(*_CARTS.c)
                    )
                )
                .mappings()
                .all()
            )
            lines = await _lines_of(session, [row["id"] for row in rows])
            for row in rows:
                await _abandoned(session, _view(row, lines[row["id"]]), row["tenant_id"], moment)
            abandoned += len(rows)
        if len(due) < ABANDON_BATCH:
            return abandoned


async def _abandoned(
    session: AsyncSession, view: CartView, tenant_id: str, moment: datetime
) -> None:
    await emit(
        session,
        tenant_id=tenant_id,
        topic="cart.abandoned",
        payload={
            "cart_id": view.id,
            "customer_id": view.customer_id,
            "channel": view.channel,
            "total": view.total,
            "currency": view.currency,
            "lines": _lines_payload(view),
        },
    )
    # Keyed by the version abandoned: the same idle period can never be told twice.
    await customers.add_timeline_event(
        session,
        TenantContext(id=tenant_id),
        customer_id=view.customer_id,
        type="cart",
        name="abandoned",
        properties=_timeline_properties(view),
        context={},
        occurred_at=moment,
        source_message_id=f"cart:{view.id}:abandoned:{view.version}",
    )


# --- merges -----------------------------------------------------------------------------------


class CartsMergeParticipant:
    """Carts follow their customer through merges (see the module docstring)."""

    name = "carts"

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        statement = select(_CARTS).where(
            _CARTS.c.tenant_id == tenant.id,
            _CARTS.c.customer_id.in_((survivor_id, merged_id)),
            _CARTS.c.status.in_(OPEN_STATUSES),
        )
        if _dialect(session) == "postgresql":
            statement = statement.with_for_update()
        open_carts = {
            row["customer_id"]: row for row in (await session.execute(statement)).mappings()
        }
        folded, kept = open_carts.get(merged_id), open_carts.get(survivor_id)
        if folded is None:
            return {}
        if kept is None:
            await session.execute(
                update(_CARTS).where(_CARTS.c.id == folded["id"]).values(customer_id=survivor_id)
            )
            view = await get_cart(session, tenant, folded["id"])
            await _updated(session, tenant, view)
            return {"moved": folded["id"]}
        lines = await _lines_of(session, [folded["id"], kept["id"]])
        kept_currencies = {line.currency for line in lines[kept["id"]]}
        folded_currencies = {line.currency for line in lines[folded["id"]]}
        foldable = (
            not kept_currencies or not folded_currencies or kept_currencies == folded_currencies
        )
        record: dict[str, Any] = {
            "from": folded["id"],
            "into": kept["id"],
            "status": folded["status"],
            "lines": [],
        }
        if not foldable:
            record["skipped"] = "currency_mismatch"
        else:
            record["lines"] = await self._fold(
                session, tenant, lines[folded["id"]], into=kept["id"]
            )
        await session.execute(
            update(_CARTS)
            .where(_CARTS.c.id == folded["id"])
            .values(status="merged", merged_into_id=kept["id"])
        )
        if record["lines"]:
            status = "active" if "active" in (kept["status"], folded["status"]) else "abandoned"
            await self._recount(
                session,
                kept["id"],
                status=status,
                updated_at=max(kept["updated_at"], folded["updated_at"]),
            )
            await _updated(session, tenant, await get_cart(session, tenant, kept["id"]))
        return {"folded": record}

    async def _fold(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        lines: Sequence[LineView],
        *,
        into: str,
    ) -> list[dict[str, Any]]:
        """Add ``lines`` to cart ``into``; return what was added, to take it away again."""
        moment = now()
        for line in lines:
            await session.execute(
                insert_for(_dialect(session), _LINES)
                .values(
                    cart_id=into,
                    sku=line.sku,
                    tenant_id=tenant.id,
                    variant_id=line.variant_id,
                    name=line.name,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    currency=line.currency,
                    channel=line.channel,
                    created_at=moment,
                    updated_at=moment,
                )
                .on_conflict_do_update(
                    index_elements=["cart_id", "sku"],
                    set_={"quantity": _LINES.c.quantity + line.quantity, "updated_at": moment},
                )
            )
        return [{"sku": line.sku, "quantity": line.quantity} for line in lines]

    async def _recount(
        self,
        session: AsyncSession,
        cart_id: str,
        *,
        status: str | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        count = select(func.count()).where(_LINES.c.cart_id == cart_id).scalar_subquery()
        values: dict[str, Any] = {"line_count": count, "version": _CARTS.c.version + 1}
        if status is not None:
            values["status"] = status
        if updated_at is not None:
            values["updated_at"] = updated_at
        await session.execute(update(_CARTS).where(_CARTS.c.id == cart_id).values(**values))

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        if record.get("moved"):
            await session.execute(
                update(_CARTS)
                .where(_CARTS.c.id == record["moved"], _CARTS.c.customer_id == survivor_id)
                .values(customer_id=merged_id)
            )
            await _updated(session, tenant, await get_cart(session, tenant, record["moved"]))
        folded = record.get("folded")
        if not folded:
            return
        into = await get_cart(session, tenant, folded["into"])
        if folded["lines"] and into.status in OPEN_STATUSES:
            # Take away what the merge added, even if the survivor changed the line since.
            for line in folded["lines"]:
                condition = (_LINES.c.cart_id == into.id, _LINES.c.sku == line["sku"])
                await session.execute(
                    delete(_LINES).where(*condition, _LINES.c.quantity <= line["quantity"])
                )
                await session.execute(
                    update(_LINES)
                    .where(*condition)
                    .values(quantity=_LINES.c.quantity - line["quantity"])
                )
            await self._recount(session, into.id)
            await _updated(session, tenant, await get_cart(session, tenant, into.id))
        await session.execute(
            update(_CARTS)
            .where(_CARTS.c.id == folded["from"], _CARTS.c.status == "merged")
            .values(status=folded["status"], merged_into_id=None)
        )
        await _updated(session, tenant, await get_cart(session, tenant, folded["from"]))


customers.register_merge_participant(CartsMergeParticipant())

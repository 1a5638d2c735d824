"""Loyalty: the tenant's program, each customer's points ledger and balance, and tiers.

What it owns: ``loyalty_programs``, ``loyalty_balances`` and ``loyalty_movements``, and the
customer trait ``tier`` (which routing turns into priority). The rules it enforces:

- **Earning.** A purchase of ``amount`` minor units in ``currency`` through sales channel
  ``channel`` earns ``floor(amount / 10**e * rate)`` points, where ``e`` is the currency's
  minor-unit exponent (Babel's currency data: 2 for EUR, 0 for JPY and CLP, 3 for KWD) and
  ``rate`` is the points per whole unit of the channel's rule, or of the default rule when the
  program does not name the channel. A channel's rule replaces the default entirely: a rule
  without the currency earns nothing. No program, no rule or zero points: no ledger row.
- **The ledger** is append-only and idempotent: every movement first claims its idempotency key
  (``INSERT … ON CONFLICT DO NOTHING``); a resend returns the first movement and changes
  nothing; the same key for another customer, kind or reference is ``idempotency_conflict``.
  A customer's ledger sums to their balance, and each row keeps the balance right after it.
- **Spending** (a redemption, a negative adjustment) is ONE conditional UPDATE,
  ``available = available - p WHERE available >= p``: two redemptions racing for the same
  points cannot both pass (SQLite has one writer; PostgreSQL's row lock makes the second
  re-check the condition). The CHECK ``available >= 0`` is the backstop.
- **A reversal after the points were spent** (an item returned after its points paid for
  something else) takes back the full share all the same: what ``available`` cannot cover
  becomes ``owed``, and the balance shown is ``available - owed``, negative while something is
  owed. Later earnings pay ``owed`` first; nothing can be redeemed while owing. Taking back only
  what is left would let a customer keep the value of points for goods they returned, and a
  signed balance column would lose the CHECK that guards spending; two columns keep both.
- **Tiers** are reached on ``lifetime_earned`` (points earned minus earnings reversed;
  redemptions and adjustments do not count). A change of tier sets the customer's ``tier``
  trait, emits ``loyalty.tier_changed`` and lands on the timeline. Saving the program writes
  each tier's ``routing_priority`` into routing's tier table, so routing gives that tier's
  customers those priority points. Tiers are re-evaluated at a customer's next movement, not
  when the program changes.
- Every movement emits ``loyalty.points_changed`` and lands on the customer's timeline (type
  ``loyalty``). Each one runs in a savepoint: a refused movement (``insufficient_points``)
  leaves the caller's transaction as it was, so an order can go on without the discount.
- **Merges.** The merged customer's movements move to the survivor and both balances are
  recounted from their ledgers (the survivor's becomes the sum of both); an unmerge moves back
  exactly those movements and recounts again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import cache
from typing import Any, cast

from babel.numbers import get_currency_precision
from sqlalchemy import Table, and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce.loyalty_models import LoyaltyBalance, LoyaltyMovement, LoyaltyProgram
from hilos.commerce.pricing import check_currency
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.routing import service as routing

KINDS = ("earn", "redeem", "reverse", "adjust")
MAX_POINTS = 10**12
MAX_AMOUNT = 10**15
MAX_RATE = Decimal(1000)
MAX_REDEMPTION_VALUE = 1_000_000
MAX_TIERS = 20
MAX_CHANNELS = 200
TIER_CODE_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,31}$"
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
TRAIT = "tier"

_BALANCES = cast(Table, LoyaltyBalance.__table__)
_MOVEMENTS = cast(Table, LoyaltyMovement.__table__)
_PROGRAMS = cast(Table, LoyaltyProgram.__table__)


@cache
def currency_exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency``'s minor unit (EUR 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(currency))


# --- the program ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    name: str
    threshold_points: int
    routing_priority: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "threshold_points": self.threshold_points,
            "routing_priority": self.routing_priority,
        }


@dataclass(frozen=True, slots=True)
class Program:
    earn_rules: dict[str, dict[str, Decimal]]
    default_earn_rule: dict[str, Decimal]
    tiers: tuple[Tier, ...]
    redemption_values: dict[str, int]
    min_redemption_points: int | None
    updated_at: datetime

    @classmethod
    def of(cls, row: LoyaltyProgram) -> Program:
        return cls(
            earn_rules={
                channel: {currency: Decimal(rate) for currency, rate in rule.items()}
                for channel, rule in (row.earn_rules or {}).items()
            },
            default_earn_rule={
                currency: Decimal(rate) for currency, rate in (row.default_earn_rule or {}).items()
            },
            tiers=_tiers_of(row.tiers or []),
            redemption_values={k: int(v) for k, v in (row.redemption_values or {}).items()},
            min_redemption_points=row.min_redemption_points,
            updated_at=row.updated_at,
        )

    def rate(self, channel: str, currency: str) -> Decimal | None:
        """Points per whole unit of ``currency`` in ``channel``; None when nothing is earned."""
        return self.earn_rules.get(channel, self.default_earn_rule).get(currency)

    def points_for(self, *, channel: str, amount: int, currency: str) -> int:
        rate = self.rate(channel, currency)
        if not rate or amount <= 0:
            return 0
        units = Decimal(amount).scaleb(-currency_exponent(currency))
        return int((units * rate).to_integral_value(rounding=ROUND_FLOOR))

    def tier_for(self, lifetime_earned: int) -> Tier | None:
        reached = None
        for tier in self.tiers:
            if tier.threshold_points <= lifetime_earned:
                reached = tier
        return reached


def _tiers_of(raw: Sequence[Mapping[str, Any]]) -> tuple[Tier, ...]:
    return tuple(
        Tier(
            code=str(t["code"]),
            name=str(t["name"]),
            threshold_points=int(t["threshold_points"]),
            routing_priority=int(t.get("routing_priority", 0)),
        )
        for t in raw
    )


def _rate(value: Any, field: str) -> Decimal:
    if isinstance(value, bool):
        raise Invalid("a rate is a number of points per currency unit", field=field)
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise Invalid("a rate is a number of points per currency unit", field=field) from None
    if not rate.is_finite() or rate < 0 or rate > MAX_RATE:
        raise Invalid(f"a rate must be between 0 and {MAX_RATE} points per unit", field=field)
    if rate != rate.quantize(Decimal("0.0001"), rounding=ROUND_FLOOR):
        raise Invalid("a rate may have at most 4 decimal places", field=field)
    return rate


def _currency(value: str, field: str) -> str:
    try:
        return check_currency(value)
    except ValueError as error:
        raise Invalid(str(error), field=field, code="unknown_currency") from None


def _earn_rule(rule: Mapping[str, Any], field: str) -> dict[str, Decimal]:
    return {
        _currency(currency, f"{field}.{currency}"): _rate(rate, f"{field}.{currency}")
        for currency, rate in rule.items()
    }


def check_program(
    *,
    earn_rules: Mapping[str, Mapping[str, Any]],
    default_earn_rule: Mapping[str, Any],
    tiers: Sequence[Mapping[str, Any]],
    redemption_values: Mapping[str, int],
    min_redemption_points: int | None,
) -> Program:
    """The program these settings describe, or ``Invalid`` naming the first field at fault."""
    if len(earn_rules) > MAX_CHANNELS:
        raise Invalid(f"at most {MAX_CHANNELS} channels may have a rule", field="earn_rules")
    rules: dict[str, dict[str, Decimal]] = {}
    for channel, rule in earn_rules.items():
        if not re.fullmatch(CHANNEL_PATTERN, channel):
            raise Invalid(
                f"{channel!r} is not a sales channel code (web, app, a store's code)",
                field=f"earn_rules.{channel}",
            )
        rules[channel] = _earn_rule(rule, f"earn_rules.{channel}")
    default = _earn_rule(default_earn_rule, "default_earn_rule")
    if len(tiers) > MAX_TIERS:
        raise Invalid(f"at most {MAX_TIERS} tiers", field="tiers")
    checked: list[Tier] = []
    for index, raw in enumerate(tiers):
        field = f"tiers.{index}"
        code = str(raw.get("code", ""))
        if not re.fullmatch(TIER_CODE_PATTERN, code):
            raise Invalid(
                "a tier code is lower-case letters, digits and _ . -, up to 32",
                field=f"{field}.code",
            )
        if any(t.code == code for t in checked):
            raise Invalid(f"tier code {code!r} is used twice", field=f"{field}.code")
        name = str(raw.get("name") or "").strip()
        if not name or len(name) > 100:
            raise Invalid("a tier needs a name of up to 100 characters", field=f"{field}.name")
        threshold = raw.get("threshold_points")
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise Invalid(
                "threshold_points must be a whole number", field=f"{field}.threshold_points"
            )
        if threshold < 0 or threshold > MAX_POINTS:
            raise Invalid(
                "threshold_points must be zero or more", field=f"{field}.threshold_points"
            )
        if checked and threshold <= checked[-1].threshold_points:
            raise Invalid(
                f"tiers go by increasing threshold_points: {threshold} does not exceed "
                f"{checked[-1].code}'s {checked[-1].threshold_points}",
                field=f"{field}.threshold_points",
            )
        priority = raw.get("routing_priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 10:
            raise Invalid(
                "routing_priority must be a whole number from 0 to 10",
                field=f"{field}.routing_priority",
            )
        checked.append(
            Tier(code=code, name=name, threshold_points=threshold, routing_priority=priority)
        )
    values: dict[str, int] = {}
    for currency, value in redemption_values.items():
        field = f"redemption_values.{currency}"
        _currency(currency, field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("a point's value is a whole number of minor units", field=field)
        if not 1 <= value <= MAX_REDEMPTION_VALUE:
            raise Invalid(
                f"a point's value must be between 1 and {MAX_REDEMPTION_VALUE} minor units",
                field=field,
            )
        values[currency] = value
    if min_redemption_points is not None and not 1 <= min_redemption_points <= MAX_POINTS:
        raise Invalid(
            "min_redemption_points must be 1 or more (or empty)", field="min_redemption_points"
        )
    return Program(
        earn_rules=rules,
        default_earn_rule=default,
        tiers=tuple(checked),
        redemption_values=values,
        min_redemption_points=min_redemption_points,
        updated_at=now(),
    )


def _decimal_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


async def get_program(session: AsyncSession, tenant: TenantContext) -> Program | None:
    row = (
        await session.execute(
            select(LoyaltyProgram)
            .where(LoyaltyProgram.tenant_id == tenant.id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    return None if row is None else Program.of(row)


async def require_program(session: AsyncSession, tenant: TenantContext) -> Program:
    program = await get_program(session, tenant)
    if program is None:
        raise NotFound("this tenant has no loyalty program yet", code="no_loyalty_program")
    return program


async def set_program(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    earn_rules: Mapping[str, Mapping[str, Any]],
    default_earn_rule: Mapping[str, Any] | None = None,
    tiers: Sequence[Mapping[str, Any]] = (),
    redemption_values: Mapping[str, int] | None = None,
    min_redemption_points: int | None = None,
) -> Program:
    """Replace the tenant's program, and give routing its tiers' priorities."""
    program = check_program(
        earn_rules=earn_rules,
        default_earn_rule=default_earn_rule or {},
        tiers=tiers,
        redemption_values=redemption_values or {},
        min_redemption_points=min_redemption_points,
    )
    values: dict[str, Any] = {
        "earn_rules": {
            channel: {currency: _decimal_text(rate) for currency, rate in rule.items()}
            for channel, rule in program.earn_rules.items()
        },
        "default_earn_rule": {
            currency: _decimal_text(rate) for currency, rate in program.default_earn_rule.items()
        },
        "tiers": [tier.as_dict() for tier in program.tiers],
        "redemption_values": dict(program.redemption_values),
        "min_redemption_points": program.min_redemption_points,
        "updated_at": program.updated_at,
    }
    await session.execute(
        customers.dialect_insert(session, _PROGRAMS)
        .values(tenant_id=tenant.id, created_at=program.updated_at, **values)
        .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
    )
    if program.tiers:
        settings = await routing.routing_settings(session, tenant)
        table = dict(settings.tier_priorities or {})
        wanted = {**table, **{tier.code: tier.routing_priority for tier in program.tiers}}
        if wanted != table:
            await routing.update_routing_settings(
                session, tenant, changes={"tier_priorities": wanted}
            )
    return program


# --- movements --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Movement:
    id: str
    customer_id: str
    kind: str
    points: int
    balance_after: int
    reference: str | None
    reason: str | None
    channel: str | None
    amount: int | None
    currency: str | None
    idempotency_key: str
    created_at: datetime
    # False when this was a resend of a movement already recorded.
    created: bool = True

    @classmethod
    def of(cls, row: LoyaltyMovement, *, created: bool) -> Movement:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            kind=row.kind,
            points=row.points,
            balance_after=row.balance_after or 0,
            reference=row.reference,
            reason=row.reason,
            channel=row.channel,
            amount=row.amount,
            currency=row.currency,
            idempotency_key=row.idempotency_key,
            created_at=row.created_at,
            created=created,
        )


@dataclass(frozen=True, slots=True)
class _Change:
    """What one movement asks of a customer's balance."""

    kind: str
    # Signed change of the balance.
    points: int
    # Change of lifetime_earned.
    lifetime: int = 0
    # Take from ``available`` only if it holds enough (redemptions, negative adjustments).
    spend: bool = False
    reference: str | None = None
    reason: str | None = None
    channel: str | None = None
    amount: int | None = None
    currency: str | None = None
    # False when the points were worked out from the program, which may have changed since
    # the first delivery; a resend is then recognised without them.
    exact: bool = True


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key.strip() or len(idempotency_key) > 200:
        raise Invalid("idempotency_key must be 1 to 200 characters", field="idempotency_key")


def _check_text(value: str | None, field: str, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise Invalid(f"{field} may have at most {limit} characters", field=field)


def _balance_key(tenant: TenantContext, customer_id: str) -> Any:
    return and_(_BALANCES.c.tenant_id == tenant.id, _BALANCES.c.customer_id == customer_id)


_STATE = (_BALANCES.c.available, _BALANCES.c.owed, _BALANCES.c.lifetime_earned, _BALANCES.c.tier)


async def _existing(
    session: AsyncSession, tenant: TenantContext, idempotency_key: str
) -> LoyaltyMovement | None:
    return (
        await session.execute(
            select(LoyaltyMovement).where(
                LoyaltyMovement.tenant_id == tenant.id,
                LoyaltyMovement.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()


def _check_resend(
    first: LoyaltyMovement,
    *,
    customer_id: str,
    kind: str,
    reference: str | None,
    points: int | None = None,
) -> Movement:
    same = (first.customer_id, first.kind, first.reference) == (customer_id, kind, reference)
    if not same or (points is not None and first.points != points):
        raise Conflict(
            f"idempotency key {first.idempotency_key!r} was already used for a different movement",
            code="idempotency_conflict",
        )
    return Movement.of(first, created=False)


async def _apply(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    change: _Change,
    moment: datetime,
) -> Any:
    """Change a balance by a signed amount that needs no cover: earnings pay what is owed
    first, and a take-back larger than what is available leaves the rest owed."""
    points = change.points
    net = _BALANCES.c.available - _BALANCES.c.owed + points
    statement = (
        customers.dialect_insert(session, _BALANCES)
        .values(
            tenant_id=tenant.id,
            customer_id=customer_id,
            available=max(points, 0),
            owed=max(-points, 0),
            lifetime_earned=max(change.lifetime, 0),
            tier=None,
            updated_at=moment,
        )
        .on_conflict_do_update(
            index_elements=["tenant_id", "customer_id"],
            set_={
                "available": case((net >= 0, net), else_=0),
                "owed": case((net >= 0, 0), else_=-net),
                "lifetime_earned": _BALANCES.c.lifetime_earned + change.lifetime,
                "updated_at": moment,
            },
        )
        .returning(*_STATE)
    )
    return (await session.execute(statement)).one()


async def _spend(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    change: _Change,
    moment: datetime,
) -> Any:
    asked = -change.points
    state = (
        await session.execute(
            update(_BALANCES)
            .where(_balance_key(tenant, customer_id), _BALANCES.c.available >= asked)
            .values(available=_BALANCES.c.available - asked, updated_at=moment)
            .returning(*_STATE)
        )
    ).first()
    if state is None:
        balance = await _balance_of(session, tenant, customer_id)
        raise Conflict(
            f"customer {customer_id} has a balance of {balance} points; {asked} were asked",
            code="insufficient_points",
            details={"field": "points", "balance": balance, "asked": asked},
        )
    return state


async def _balance_of(session: AsyncSession, tenant: TenantContext, customer_id: str) -> int:
    row = (
        await session.execute(
            select(_BALANCES.c.available - _BALANCES.c.owed).where(
                _balance_key(tenant, customer_id)
            )
        )
    ).first()
    return int(row[0]) if row else 0


async def _move(
    session: AsyncSession,
    tenant: TenantContext,
    program: Program | None,
    *,
    customer_id: str,
    change: _Change,
    idempotency_key: str,
) -> Movement:
    """Record ``change`` once per key and apply it to the balance, in a savepoint."""
    async with session.begin_nested():
        moment = now()
        movement_id = new_id()
        claimed = (
            await session.execute(
                customers.dialect_insert(session, _MOVEMENTS)
                .values(
                    id=movement_id,
                    tenant_id=tenant.id,
                    customer_id=customer_id,
                    kind=change.kind,
                    points=change.points,
                    reference=change.reference,
                    reason=change.reason,
                    channel=change.channel,
                    amount=change.amount,
                    currency=change.currency,
                    idempotency_key=idempotency_key,
                    created_at=moment,
                )
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(_MOVEMENTS.c.id)
            )
        ).first()
        if claimed is None:
            first = await _existing(session, tenant, idempotency_key)
            assert first is not None
            return _check_resend(
                first,
                customer_id=customer_id,
                kind=change.kind,
                reference=change.reference,
                points=change.points if change.exact else None,
            )
        if change.spend:
            state = await _spend(session, tenant, customer_id, change, moment)
        else:
            state = await _apply(session, tenant, customer_id, change, moment)
        available, owed, lifetime, tier = state
        balance = int(available - owed)
        await session.execute(
            update(_MOVEMENTS).where(_MOVEMENTS.c.id == movement_id).values(balance_after=balance)
        )
        movement = Movement(
            id=movement_id,
            customer_id=customer_id,
            kind=change.kind,
            points=change.points,
            balance_after=balance,
            reference=change.reference,
            reason=change.reason,
            channel=change.channel,
            amount=change.amount,
            currency=change.currency,
            idempotency_key=idempotency_key,
            created_at=moment,
        )
        await _announce(session, tenant, movement)
        await _settle_tier(session, tenant, program, customer_id, int(lifetime), tier, moment)
        return movement


async def _announce(session: AsyncSession, tenant: TenantContext, movement: Movement) -> None:
    await emit(
        session,
        tenant_id=tenant.id,
        topic="loyalty.points_changed",
        payload={
            "customer_id": movement.customer_id,
            "points": movement.points,
            "balance": movement.balance_after,
            "kind": movement.kind,
            "reference": movement.reference,
            "movement_id": movement.id,
        },
    )
    properties = {
        "points": movement.points,
        "balance": movement.balance_after,
        "reference": movement.reference,
        "reason": movement.reason,
        "channel": movement.channel,
        "amount": movement.amount,
        "currency": movement.currency,
    }
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=movement.customer_id,
        type="loyalty",
        name=movement.kind,
        properties={k: v for k, v in properties.items() if v is not None},
        context={},
        occurred_at=movement.created_at,
        source_message_id=None,
    )


async def _settle_tier(
    session: AsyncSession,
    tenant: TenantContext,
    program: Program | None,
    customer_id: str,
    lifetime_earned: int,
    current: str | None,
    moment: datetime,
) -> None:
    """Move the customer to the tier their lifetime points reach, if that is another one."""
    reached = program.tier_for(lifetime_earned) if program else None
    code = reached.code if reached else None
    if code == current:
        return
    await session.execute(
        update(_BALANCES).where(_balance_key(tenant, customer_id)).values(tier=code)
    )
    await customers.set_trait(session, tenant, customer_id=customer_id, key=TRAIT, value=code)
    await emit(
        session,
        tenant_id=tenant.id,
        topic="loyalty.tier_changed",
        payload={"customer_id": customer_id, "tier": code, "previous_tier": current},
    )
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=customer_id,
        type="loyalty",
        name="tier_changed",
        properties={"tier": code, "previous_tier": current, "lifetime_earned": lifetime_earned},
        context={},
        occurred_at=moment,
        source_message_id=None,
    )


async def _lock_balance(session: AsyncSession, tenant: TenantContext, customer_id: str) -> None:
    """Serialise this customer's movements for a read-then-write (PostgreSQL; SQLite's write
    lock already does)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            select(_BALANCES.c.customer_id)
            .where(_balance_key(tenant, customer_id))
            .with_for_update()
        )


async def _totals_of_reference(
    session: AsyncSession, tenant: TenantContext, customer_id: str, reference: str
) -> tuple[int, int, int, int]:
    """Points earned, earnings reversed, redeemed and redemptions refunded under ``reference``."""
    kind, points = _MOVEMENTS.c.kind, _MOVEMENTS.c.points

    def total(condition: Any, value: Any) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    row = (
        await session.execute(
            select(
                total(kind == "earn", points),
                total(and_(kind == "reverse", points < 0), -points),
                total(kind == "redeem", -points),
                total(and_(kind == "reverse", points > 0), points),
            ).where(
                _MOVEMENTS.c.tenant_id == tenant.id,
                _MOVEMENTS.c.customer_id == customer_id,
                _MOVEMENTS.c.reference == reference,
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def earn_for_purchase(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    channel: str,
    amount: int,
    currency: str,
    reference: str,
    idempotency_key: str,
) -> int:
    """Points earned by a purchase of ``amount`` minor units of ``currency`` in ``channel``;
    0 (and no ledger row) when there is no program or no rule for that channel and currency."""
    _check_key(idempotency_key)
    _check_text(reference, "reference", 200)
    _check_text(channel, "channel", 64)
    _currency(currency, "currency")
    if amount < 0 or amount > MAX_AMOUNT:
        raise Invalid("amount must be zero or more minor units", field="amount")
    customer = await customers.live_customer(session, tenant, customer_id)
    program = await get_program(session, tenant)
    points = program.points_for(channel=channel, amount=amount, currency=currency) if program else 0
    if points == 0:
        first = await _existing(session, tenant, idempotency_key)
        if first is None:
            return 0
        return _check_resend(
            first, customer_id=customer.id, kind="earn", reference=reference
        ).points
    movement = await _move(
        session,
        tenant,
        program,
        customer_id=customer.id,
        change=_Change(
            kind="earn",
            points=min(points, MAX_POINTS),
            lifetime=min(points, MAX_POINTS),
            reference=reference,
            channel=channel,
            amount=amount,
            currency=currency,
            exact=False,
        ),
        idempotency_key=idempotency_key,
    )
    return movement.points


def _redemption(program: Program | None, points: int, currency: str | None) -> int | None:
    """The value of one point in ``currency`` (None without a currency), or
    ``points_not_redeemable``."""
    if points <= 0:
        raise Invalid(
            "points to redeem must be more than zero", field="points", code="points_not_redeemable"
        )
    if program is None:
        raise Invalid(
            "this tenant has no loyalty program", field="points", code="points_not_redeemable"
        )
    minimum = program.min_redemption_points
    if minimum is not None and points < minimum:
        raise Invalid(
            f"at least {minimum} points must be redeemed at once; {points} were asked",
            field="points",
            code="points_not_redeemable",
        )
    if currency is None:
        return None
    value = program.redemption_values.get(currency)
    if value is None:
        raise Invalid(
            f"points cannot be redeemed in {currency}: the program gives them no value in it",
            field="currency",
            code="points_not_redeemable",
        )
    return value


async def redeem(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    points: int,
    currency: str,
    reference: str,
    idempotency_key: str,
) -> int:
    """Spend ``points``; return the discount they are worth in minor units of ``currency``.

    ``insufficient_points`` (409) when the balance is short, ``points_not_redeemable`` (422)
    when the program gives points no value in ``currency`` or ``points`` is not enough.
    """
    _check_key(idempotency_key)
    _check_text(reference, "reference", 200)
    if points > MAX_POINTS:
        raise Invalid("too many points for one movement", field="points")
    customer = await customers.live_customer(session, tenant, customer_id)
    program = await get_program(session, tenant)
    value = _redemption(program, points, currency)
    assert value is not None
    movement = await _move(
        session,
        tenant,
        program,
        customer_id=customer.id,
        change=_Change(
            kind="redeem",
            points=-points,
            spend=True,
            reference=reference,
            amount=points * value,
            currency=currency,
        ),
        idempotency_key=idempotency_key,
    )
    return movement.amount or 0


async def reverse_for_return(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    reference: str,
    returned_amount: int,
    order_amount: int,
    idempotency_key: str,
) -> int:
    """Take back the returned share (``returned_amount / order_amount``, rounded down, at most
    the whole) of the points earned under ``reference``; never more than is left of them.
    Returns the points taken back (a reversal may leave the customer owing points they had
    spent); 0 for a return of nothing or of a free order."""
    _check_key(idempotency_key)
    _check_text(reference, "reference", 200)
    if order_amount < 0 or order_amount > MAX_AMOUNT:
        raise Invalid("order_amount must be zero or more minor units", field="order_amount")
    if returned_amount < 0 or returned_amount > MAX_AMOUNT:
        raise Invalid("returned_amount must be zero or more minor units", field="returned_amount")
    customer = await customers.live_customer(session, tenant, customer_id)
    if returned_amount == 0 or order_amount == 0:
        # A free order earned nothing; a return of nothing takes nothing back.
        return 0
    first = await _existing(session, tenant, idempotency_key)
    if first is not None:
        return -_check_resend(
            first, customer_id=customer.id, kind="reverse", reference=reference
        ).points
    await _lock_balance(session, tenant, customer.id)
    earned, reversed_, _, _ = await _totals_of_reference(session, tenant, customer.id, reference)
    # A refund above the order's total (its lines at full price on an order paid partly with
    # points) returns the whole order, not more.
    share = earned * min(returned_amount, order_amount) // order_amount
    points = min(share, earned - reversed_)
    if points <= 0:
        return 0
    movement = await _move(
        session,
        tenant,
        await get_program(session, tenant),
        customer_id=customer.id,
        change=_Change(
            kind="reverse",
            points=-points,
            lifetime=-points,
            reference=reference,
            reason="return",
            amount=returned_amount,
        ),
        idempotency_key=idempotency_key,
    )
    return -movement.points


async def refund_redemption(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    reference: str,
    idempotency_key: str,
) -> int:
    """Give back the points redeemed under ``reference`` (an order cancelled before it was
    fulfilled) that were not given back already; return how many."""
    _check_key(idempotency_key)
    _check_text(reference, "reference", 200)
    customer = await customers.live_customer(session, tenant, customer_id)
    first = await _existing(session, tenant, idempotency_key)
    if first is not None:
        return _check_resend(
            first, customer_id=customer.id, kind="reverse", reference=reference
        ).points
    await _lock_balance(session, tenant, customer.id)
    _, _, redeemed, refunded = await _totals_of_reference(session, tenant, customer.id, reference)
    points = redeemed - refunded
    if points <= 0:
        return 0
    movement = await _move(
        session,
        tenant,
        await get_program(session, tenant),
        customer_id=customer.id,
        change=_Change(
            kind="reverse", points=points, reference=reference, reason="redemption refunded"
        ),
        idempotency_key=idempotency_key,
    )
    return movement.points


async def record_movement(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    kind: str,
    idempotency_key: str,
    points: int | None = None,
    amount: int | None = None,
    currency: str | None = None,
    channel: str | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> Movement:
    """A movement asked for directly (a store's till, the call center): ``earn`` (``points``,
    or the ``amount``, ``currency`` and ``channel`` of a purchase), ``redeem`` (``points``; with
    ``currency`` the movement carries the discount they are worth) or ``adjust`` (signed
    ``points`` and a ``reason``; a negative one needs the points to be there)."""
    _check_key(idempotency_key)
    _check_text(reference, "reference", 200)
    _check_text(reason, "reason", 200)
    _check_text(channel, "channel", 64)
    if currency is not None:
        _currency(currency, "currency")
    if points is not None and abs(points) > MAX_POINTS:
        raise Invalid("too many points for one movement", field="points")
    customer = await customers.live_customer(session, tenant, customer_id)
    program = await get_program(session, tenant)
    if program is None:
        raise Conflict(
            "this tenant has no loyalty program yet: PUT /v1/loyalty/program first",
            code="no_loyalty_program",
        )
    if kind == "earn":
        change = _earning(program, points, amount, currency, channel, reference, reason)
        if change.points == 0:
            first = await _existing(session, tenant, idempotency_key)
            if first is not None:
                return _check_resend(first, customer_id=customer.id, kind=kind, reference=reference)
            raise Invalid(
                f"a purchase of {amount} {currency} in channel {channel} earns no points",
                field="amount",
                code="no_points_earned",
            )
    elif kind == "redeem":
        if points is None:
            raise Invalid("say how many points to redeem", field="points")
        value = _redemption(program, points, currency)
        change = _Change(
            kind="redeem",
            points=-points,
            spend=True,
            reference=reference,
            reason=reason,
            channel=channel,
            amount=points * value if value is not None else None,
            currency=currency if value is not None else None,
        )
    elif kind == "adjust":
        if not points:
            raise Invalid("an adjustment needs a non-zero number of points", field="points")
        if not (reason or "").strip():
            raise Invalid("an adjustment needs a reason", field="reason")
        change = _Change(
            kind="adjust",
            points=points,
            spend=points < 0,
            reference=reference,
            reason=reason,
            channel=channel,
        )
    else:
        raise Invalid("kind must be earn, redeem or adjust", field="kind")
    return await _move(
        session,
        tenant,
        program,
        customer_id=customer.id,
        change=change,
        idempotency_key=idempotency_key,
    )


def _earning(
    program: Program,
    points: int | None,
    amount: int | None,
    currency: str | None,
    channel: str | None,
    reference: str | None,
    reason: str | None,
) -> _Change:
    if points is not None:
        if amount is not None:
            raise Invalid("give points or the purchase's amount, not both", field="points")
        if points <= 0:
            raise Invalid("points earned must be more than zero", field="points")
        earned, exact = points, True
    else:
        if amount is None:
            raise Invalid(
                "an earning needs points, or the amount, currency and channel of the purchase",
                field="points",
            )
        if amount < 0 or amount > MAX_AMOUNT:
            raise Invalid("amount must be zero or more minor units", field="amount")
        if currency is None:
            raise Invalid("give the currency of the amount", field="currency")
        if channel is None:
            raise Invalid("give the sales channel the purchase was made in", field="channel")
        earned = program.points_for(channel=channel, amount=amount, currency=currency)
        earned, exact = min(earned, MAX_POINTS), False
    return _Change(
        kind="earn",
        points=earned,
        lifetime=earned,
        reference=reference,
        reason=reason,
        channel=channel,
        amount=amount,
        currency=currency if amount is not None else None,
        exact=exact,
    )


# --- reading ----------------------------------------------------------------------------------


def _describe(
    tiers: Sequence[Tier], *, balance: int, lifetime_earned: int, tier: str | None
) -> dict[str, Any]:
    current = next((t for t in tiers if t.code == tier), None)
    following = next((t for t in tiers if t.threshold_points > lifetime_earned), None)
    return {
        "balance": balance,
        "lifetime_earned": lifetime_earned,
        "tier": tier,
        "tier_name": current.name if current else tier,
        "next_tier": following.code if following else None,
        "next_tier_name": following.name if following else None,
        "points_to_next_tier": (
            following.threshold_points - lifetime_earned if following else None
        ),
    }


async def summary(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> dict[str, Any] | None:
    """Balance, lifetime points, tier and the next tier of a customer, in one query; None when
    the tenant has no program. For the customer 360."""
    row = (
        await session.execute(
            select(
                _PROGRAMS.c.tiers,
                _BALANCES.c.available,
                _BALANCES.c.owed,
                _BALANCES.c.lifetime_earned,
                _BALANCES.c.tier,
            )
            .select_from(
                _PROGRAMS.outerjoin(
                    _BALANCES,
                    and_(
                        _BALANCES.c.tenant_id == _PROGRAMS.c.tenant_id,
                        _BALANCES.c.customer_id == customer_id,
                    ),
                )
            )
            .where(_PROGRAMS.c.tenant_id == tenant.id)
        )
    ).first()
    if row is None:
        return None
    tiers, available, owed, lifetime, tier = row
    return _describe(
        _tiers_of(tiers or []),
        balance=int((available or 0) - (owed or 0)),
        lifetime_earned=int(lifetime or 0),
        tier=tier,
    )


async def customer_loyalty(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    *,
    before: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """A customer's balance and tier, and a page of their ledger, newest first."""
    customer = await customers.live_customer(session, tenant, customer_id)
    program = await get_program(session, tenant)
    state = (
        await session.execute(select(*_STATE).where(_balance_key(tenant, customer.id)))
    ).first()
    available, owed, lifetime, tier = state if state else (0, 0, 0, None)
    statement = (
        select(LoyaltyMovement)
        .where(LoyaltyMovement.tenant_id == tenant.id, LoyaltyMovement.customer_id == customer.id)
        .order_by(LoyaltyMovement.id.desc())
        .limit(limit)
    )
    if before:
        statement = statement.where(LoyaltyMovement.id < before)
    rows = (await session.execute(statement)).scalars().all()
    return {
        "customer_id": customer.id,
        **_describe(
            program.tiers if program else (),
            balance=int(available - owed),
            lifetime_earned=int(lifetime),
            tier=tier,
        ),
        "movements": [Movement.of(row, created=True) for row in rows],
        "next_before": rows[-1].id if len(rows) == limit else None,
    }


# --- merges -----------------------------------------------------------------------------------


async def _recount(
    session: AsyncSession, tenant: TenantContext, customer_id: str, why: str
) -> None:
    """Set a customer's balance from their ledger (after movements moved in or out)."""
    kind, points = _MOVEMENTS.c.kind, _MOVEMENTS.c.points
    counted = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(points), 0),
                func.coalesce(
                    func.sum(
                        case(
                            (or_(kind == "earn", and_(kind == "reverse", points < 0)), points),
                            else_=0,
                        )
                    ),
                    0,
                ),
            ).where(_MOVEMENTS.c.tenant_id == tenant.id, _MOVEMENTS.c.customer_id == customer_id)
        )
    ).one()
    movements, net, lifetime = int(counted[0]), int(counted[1]), max(int(counted[2]), 0)
    before = (
        await session.execute(select(*_STATE).where(_balance_key(tenant, customer_id)))
    ).first()
    old_balance = int(before[0] - before[1]) if before else 0
    old_tier = before[3] if before else None
    moment = now()
    if movements == 0:
        await session.execute(delete(_BALANCES).where(_balance_key(tenant, customer_id)))
    else:
        values = {
            "available": max(net, 0),
            "owed": max(-net, 0),
            "lifetime_earned": lifetime,
            "updated_at": moment,
        }
        await session.execute(
            customers.dialect_insert(session, _BALANCES)
            .values(tenant_id=tenant.id, customer_id=customer_id, tier=old_tier, **values)
            .on_conflict_do_update(index_elements=["tenant_id", "customer_id"], set_=values)
        )
    if net != old_balance:
        await emit(
            session,
            tenant_id=tenant.id,
            topic="loyalty.points_changed",
            payload={
                "customer_id": customer_id,
                "points": net - old_balance,
                "balance": net,
                "kind": why,
                "reference": None,
                "movement_id": None,
            },
        )
    if movements == 0:
        # No balance row is left to hold a tier.
        if old_tier is not None:
            await customers.set_trait(
                session, tenant, customer_id=customer_id, key=TRAIT, value=None
            )
        return
    program = await get_program(session, tenant)
    await _settle_tier(session, tenant, program, customer_id, lifetime, old_tier, moment)


class LoyaltyMergeParticipant:
    """Moves the merged customer's ledger to the survivor and recounts both balances; the
    unmerge moves exactly those movements back and recounts again."""

    name = "loyalty"

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        moved = await customers.move_customer_rows(
            session,
            LoyaltyMovement,
            from_id=merged_id,
            to_id=survivor_id,
            where=LoyaltyMovement.tenant_id == tenant.id,
        )
        if moved:
            await _recount(session, tenant, survivor_id, "merge")
            await _recount(session, tenant, merged_id, "merge")
        return {"moved": moved}

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        moved = await customers.move_customer_rows(
            session,
            LoyaltyMovement,
            from_id=survivor_id,
            to_id=merged_id,
            ids=list(record.get("moved") or []),
        )
        if moved:
            await _recount(session, tenant, survivor_id, "unmerge")
            await _recount(session, tenant, merged_id, "unmerge")


customers.register_merge_participant(LoyaltyMergeParticipant())

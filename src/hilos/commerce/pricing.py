"""Prices per sales channel and the price-parity report.

Rules this module enforces:

- A price is an integer amount of minor units in an ISO 4217 currency (Babel's list of codes).
  ``PUT /v1/prices`` upserts one row per tenant, SKU, channel and ``valid_from``; sending it
  again with the same start replaces the amount, currency, compare-at price and end.
- **One currency per channel.** Every price of a channel's list is in the same currency; a price
  in another currency is refused (422 ``currency_mismatch``, field ``currency``) unless it
  replaces the channel's only row. A tenant selling in two currencies uses two channels
  (``web-es``, ``web-us``).
- **Effective price** of a SKU in a channel at a moment: among the rows valid then
  (``valid_from <= t < valid_until``), the one with the latest ``valid_from``. A channel with no
  valid row has no price for the SKU.
- **Parity.** For each SKU, the effective prices of its channels in one currency are compared
  with the **lowest** of them (the reference). A channel's gap is ``(amount - lowest) / lowest``
  in percent; it may be at most the policy's allowance for that channel, or ``max_gap_percent``
  (default 0) for channels without one. The report lists the SKUs where some channel exceeds its
  allowance. Prices in different currencies are never compared (there are no exchange rates);
  a SKU priced in one channel only has nothing to compare and is not listed; the channels that
  price other SKUs but not this one are named in ``missing_channels``. A reference of 0 (a free
  item) makes any positive price exceed, with ``gap_percent`` null.

The currency rule reads then writes, so two concurrent first prices of a new channel in
different currencies could both pass; price lists are edited by people and ERPs, not raced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from babel.numbers import list_currencies
from sqlalchemy import and_, delete, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce.catalog import variant_by_sku
from hilos.commerce.models import Variant
from hilos.commerce.pricing_models import ALWAYS, Price, PriceParityPolicy
from hilos.core.clock import now
from hilos.core.errors import Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, tenant_scope
from hilos.customers.service import insert_for


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def check_currency(value: str) -> str:
    """``value`` if it is an ISO 4217 code Babel knows (upper case), else ValueError."""
    if value not in _currencies():
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


@dataclass(frozen=True, slots=True)
class PriceView:
    id: str
    sku: str
    channel: str
    amount: int
    currency: str
    compare_at_amount: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, price: Price, sku: str) -> PriceView:
        return cls(
            id=price.id,
            sku=sku,
            channel=price.channel,
            amount=price.amount,
            currency=price.currency,
            compare_at_amount=price.compare_at_amount,
            valid_from=None if price.valid_from == ALWAYS else price.valid_from,
            valid_until=price.valid_until,
            updated_at=price.updated_at,
        )


async def set_price(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str,
    channel: str,
    amount: int,
    currency: str,
    compare_at_amount: int | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> PriceView:
    """Insert or replace the price of ``sku`` in ``channel`` starting at ``valid_from``."""
    variant = await variant_by_sku(session, tenant, sku)
    start = valid_from or ALWAYS
    if valid_until is not None and valid_until <= start:
        raise Invalid("valid_until must be after valid_from", field="valid_until")
    other_currency = (
        await session.scalars(
            tenant_scope(select(Price.currency), Price, tenant)
            .where(
                Price.channel == channel,
                Price.currency != currency,
                not_(and_(Price.variant_id == variant.id, Price.valid_from == start)),
            )
            .limit(1)
        )
    ).first()
    if other_currency is not None:
        raise Invalid(
            f"channel {channel} prices in {other_currency}; a price in {currency} does not fit"
            " its price list",
            field="currency",
            code="currency_mismatch",
        )
    moment = now()
    values: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "compare_at_amount": compare_at_amount,
        "valid_until": valid_until,
        "updated_at": moment,
    }
    insert = insert_for(session.get_bind().dialect.name, Price.__table__)
    statement = (
        insert.values(
            id=new_id(),
            tenant_id=tenant.id,
            variant_id=variant.id,
            channel=channel,
            valid_from=start,
            created_at=moment,
            **values,
        )
        .on_conflict_do_update(
            index_elements=["tenant_id", "variant_id", "channel", "valid_from"], set_=values
        )
        .returning(*Price.__table__.c)
    )
    row = (await session.execute(statement)).one()
    price = Price(**row._mapping)
    return PriceView.of(price, variant.sku)


async def list_prices(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str | None = None,
    channel: str | None = None,
    limit: int = 500,
) -> list[PriceView]:
    """Price rows (every window, valid or not) by SKU, channel and start."""
    statement = (
        tenant_scope(select(Price), Price, tenant)
        .add_columns(Variant.sku)
        .join(Variant, Variant.id == Price.variant_id)
        .order_by(Variant.sku, Price.channel, Price.valid_from)
        .limit(min(limit, 5000))
    )
    if sku is not None:
        statement = statement.where(Variant.sku == sku)
    if channel is not None:
        statement = statement.where(Price.channel == channel)
    rows = (await session.execute(statement)).all()
    return [PriceView.of(price, variant_sku) for price, variant_sku in rows]


async def delete_price(session: AsyncSession, tenant: TenantContext, price_id: str) -> None:
    result = await session.execute(
        delete(Price).where(Price.tenant_id == tenant.id, Price.id == price_id)
    )
    if getattr(result, "rowcount", 0) == 0:
        raise NotFound(f"price {price_id} not found")


async def effective_prices(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    at: datetime,
    sku: str | None = None,
    skus: Sequence[str] | None = None,
) -> dict[str, dict[str, PriceView]]:
    """``{sku: {channel: price}}``: each channel's effective price at ``at``, of one ``sku``,
    of ``skus``, or of every SKU."""
    statement = (
        tenant_scope(select(Price), Price, tenant)
        .add_columns(Variant.sku)
        .join(Variant, Variant.id == Price.variant_id)
        .where(
            Price.valid_from <= at,
            or_(Price.valid_until.is_(None), Price.valid_until > at),
        )
        # The latest start first, so the first row seen per (SKU, channel) is the effective one.
        .order_by(Variant.sku, Price.channel, Price.valid_from.desc())
    )
    if sku is not None:
        statement = statement.where(Variant.sku == sku)
    if skus is not None:
        statement = statement.where(Variant.sku.in_(list(skus)))
    found: dict[str, dict[str, PriceView]] = defaultdict(dict)
    for price, variant_sku in (await session.execute(statement)).all():
        found[variant_sku].setdefault(price.channel, PriceView.of(price, variant_sku))
    return dict(found)


async def listed_channels(
    session: AsyncSession, tenant: TenantContext, variant_ids: Sequence[str], *, at: datetime
) -> dict[str, list[str]]:
    """``{variant_id: [channel, ...]}``: the sales channels each variant is listed on at ``at``.

    A SKU is listed on a channel when it has a price there valid at that moment: a channel
    cannot sell what it has no price for (orders and carts refuse it with ``no_price``), and
    one table then says both where a product is sold and for how much.
    """
    found: dict[str, set[str]] = {variant_id: set() for variant_id in variant_ids}
    if not variant_ids:
        return {}
    rows = await session.execute(
        select(Price.variant_id, Price.channel).where(
            Price.tenant_id == tenant.id,
            Price.variant_id.in_(list(variant_ids)),
            Price.valid_from <= at,
            or_(Price.valid_until.is_(None), Price.valid_until > at),
        )
    )
    for variant_id, channel in rows.all():
        found[variant_id].add(channel)
    return {variant_id: sorted(channels) for variant_id, channels in found.items()}


def listed_on(tenant: TenantContext, channel: str, at: datetime) -> Any:
    """A subquery of the ids of the tenant's variants listed on ``channel`` at ``at``."""
    return select(Price.variant_id).where(
        Price.tenant_id == tenant.id,
        Price.channel == channel,
        Price.valid_from <= at,
        or_(Price.valid_until.is_(None), Price.valid_until > at),
    )


# --- parity ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParityPolicyView:
    max_gap_percent: float
    allowances: dict[str, float]

    def allowed(self, channel: str) -> float:
        return self.allowances.get(channel, self.max_gap_percent)


async def get_policy(session: AsyncSession, tenant: TenantContext) -> ParityPolicyView:
    policy = await session.get(PriceParityPolicy, tenant.id)
    if policy is None:
        return ParityPolicyView(max_gap_percent=0.0, allowances={})
    return ParityPolicyView(
        max_gap_percent=float(policy.max_gap_percent),
        allowances={k: float(v) for k, v in (policy.allowances or {}).items()},
    )


async def set_policy(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    max_gap_percent: float,
    allowances: dict[str, float],
) -> ParityPolicyView:
    """Replace the tenant's parity policy (allowances not given are dropped)."""
    values = {
        "max_gap_percent": max_gap_percent,
        "allowances": dict(allowances),
        "updated_at": now(),
    }
    insert = insert_for(session.get_bind().dialect.name, PriceParityPolicy.__table__)
    await session.execute(
        insert.values(tenant_id=tenant.id, **values).on_conflict_do_update(
            index_elements=["tenant_id"], set_=values
        )
    )
    return ParityPolicyView(max_gap_percent=max_gap_percent, allowances=dict(allowances))


@dataclass(frozen=True, slots=True)
class ParityPrice:
    channel: str
    amount: int
    currency: str
    gap_percent: float | None
    allowed_percent: float
    exceeds: bool


@dataclass(frozen=True, slots=True)
class ParityItem:
    sku: str
    currency: str
    reference_amount: int
    prices: list[ParityPrice]
    gap_percent: float | None
    exceeds: bool
    missing_channels: list[str]


def _gap(amount: int, reference: int) -> float | None:
    if amount == reference:
        return 0.0
    if reference == 0:
        return None
    return round((amount - reference) * 100 / reference, 2)


def _exceeds(amount: int, reference: int, allowed: float) -> bool:
    # Exact arithmetic: 5 % of 1 000 is 50 exactly, so 1 050 is within a 5 % allowance.
    return (amount - reference) * 100 > Decimal(str(allowed)) * reference


def compare(
    prices: dict[str, dict[str, PriceView]],
    policy: ParityPolicyView,
    *,
    include_within_policy: bool = False,
) -> list[ParityItem]:
    """The parity items of ``{sku: {channel: price}}`` (see the module docstring)."""
    every_channel = {channel for by_channel in prices.values() for channel in by_channel}
    items: list[ParityItem] = []
    for sku in sorted(prices):
        by_currency: dict[str, list[PriceView]] = defaultdict(list)
        for price in prices[sku].values():
            by_currency[price.currency].append(price)
        missing = sorted(every_channel - set(prices[sku]))
        for currency in sorted(by_currency):
            group = sorted(by_currency[currency], key=lambda p: (p.amount, p.channel))
            if len(group) < 2:
                continue
            reference = group[0].amount
            compared = [
                ParityPrice(
                    channel=p.channel,
                    amount=p.amount,
                    currency=currency,
                    gap_percent=_gap(p.amount, reference),
                    allowed_percent=policy.allowed(p.channel),
                    exceeds=_exceeds(p.amount, reference, policy.allowed(p.channel)),
                )
                for p in group
            ]
            exceeds = any(p.exceeds for p in compared)
            differs = group[-1].amount != reference
            if not (exceeds or (include_within_policy and differs)):
                continue
            gaps = [p.gap_percent for p in compared]
            items.append(
                ParityItem(
                    sku=sku,
                    currency=currency,
                    reference_amount=reference,
                    prices=compared,
                    gap_percent=None if None in gaps else max(g for g in gaps if g is not None),
                    exceeds=exceeds,
                    missing_channels=missing,
                )
            )
    return items


async def parity_report(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    at: datetime | None = None,
    include_within_policy: bool = False,
) -> tuple[datetime, ParityPolicyView, Sequence[ParityItem]]:
    moment = at or now()
    policy = await get_policy(session, tenant)
    prices = await effective_prices(session, tenant, at=moment)
    items = compare(prices, policy, include_within_policy=include_within_policy)
    return moment, policy, items

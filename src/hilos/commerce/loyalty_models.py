"""Tables of the loyalty program: the tenant's program, each customer's balance, the ledger.

``loyalty_movements`` is the append-only ledger: every change of a customer's points is one row,
idempotent on ``(tenant_id, idempotency_key)``, so a customer's ledger sums to their balance.
``loyalty_balances`` holds the counters every movement changes with one conditional UPDATE.
The balance a person sees is ``available - owed``: ``available`` is what can be spent, and its
CHECK is the last line of defence against overspending (the service's UPDATE condition is the
first); ``owed`` is what a reversal could not take back because it had been spent already (see
``hilos.commerce.loyalty``). At most one of the two is above zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class LoyaltyProgram(Base):
    """A tenant's one program: how points are earned, what they are worth, the tiers."""

    __tablename__ = "loyalty_programs"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # {"web": {"EUR": "1"}, "MAD01": {"EUR": "2"}}: points per whole currency unit, per sales
    # channel and currency, as decimal strings (exact).
    earn_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The rule of every channel that ``earn_rules`` does not name ({} = they earn nothing).
    default_earn_rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # [{"code", "name", "threshold_points", "routing_priority"}], by increasing threshold.
    tiers: Mapped[list[Any]] = mapped_column(default=list)
    # {"EUR": 1}: minor units of the currency one point is worth when redeemed.
    redemption_values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    min_redemption_points: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class LoyaltyBalance(Base):
    """A customer's points now: spendable, owed back, earned over their lifetime, and tier."""

    __tablename__ = "loyalty_balances"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("owed >= 0", name="owed_not_negative"),
        CheckConstraint("available = 0 OR owed = 0", name="available_or_owed"),
        CheckConstraint("lifetime_earned >= 0", name="lifetime_earned_not_negative"),
    )

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    owed: Mapped[int] = mapped_column(BigInteger, default=0)
    # Points earned minus points of earnings reversed; tiers are reached on it.
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    # The code of the tier reached, as of the customer's last movement.
    tier: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = created_column()


class LoyaltyMovement(Base):
    """One change of a customer's points; rows are only ever inserted."""

    __tablename__ = "loyalty_movements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_loyalty_movements_customer", "customer_id", "id"),
        Index("ix_loyalty_movements_reference", "tenant_id", "reference"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    # earn, redeem, reverse, adjust
    kind: Mapped[str] = mapped_column(String(16))
    # Signed: an earning adds, a redemption takes away.
    points: Mapped[int] = mapped_column(BigInteger)
    # What it is about: "order:<id>", a ticket number.
    reference: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(200))
    # The sales channel it happened in (web, app, a store's code).
    channel: Mapped[str | None] = mapped_column(String(64))
    # Minor units of ``currency``: the purchase of an earning, the discount of a redemption,
    # the amount returned of a reversal.
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # The customer's balance (available - owed) right after; set in the same transaction.
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_column()

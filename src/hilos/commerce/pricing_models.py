"""Tables of prices: one price list per sales channel, and the tenant's price-parity policy.

A price is the amount of one variant (SKU) in one sales channel from ``valid_from`` until
``valid_until`` (open-ended when empty). Several rows of one SKU and channel make a schedule; the
effective price at a moment is the valid row with the latest ``valid_from``. A price without a
start is stored with ``ALWAYS`` (the epoch) as its start, so the unique key needs no NULLs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, UtcDateTime, created_column, id_column

# The start of a price that has always been valid.
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


class Price(Base):
    """The amount of one SKU in one sales channel over a validity window."""

    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "variant_id", "channel", "valid_from"),
        # The parity report and the one-currency-per-channel rule read a channel's list.
        Index("ix_prices_tenant_id_channel", "tenant_id", "channel"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"))
    # A sales channel's code: web, app, marketplace, callcenter, store:MAD01 ...
    channel: Mapped[str] = mapped_column(String(64))
    # Integer minor units of ``currency`` (ISO 4217).
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The "was" price shown struck through; greater than ``amount`` when set.
    compare_at_amount: Mapped[int | None] = mapped_column(BigInteger)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class PriceParityPolicy(Base):
    """How far a tenant lets a channel's price sit above the cheapest channel's."""

    __tablename__ = "price_parity_policies"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The gap every channel may have, in percent of the lowest price.
    max_gap_percent: Mapped[float] = mapped_column(Float, default=0.0)
    # {"marketplace": 5}: a channel's own allowance, replacing ``max_gap_percent`` for it.
    allowances: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = created_column()

"""Tables of carts: the customer's one open cart, its lines, and each tenant's cart settings.

A cart is open while it is ``active`` or ``abandoned``; a partial unique index keeps one open
cart per customer, which every channel reads and edits. The row is its own abandonment timer:
the worker looks for active, non-empty carts whose ``updated_at`` is older than the tenant's
threshold (``ix_carts_idle``), so no separate timer row can drift from the cart.

A line is one SKU of a cart, priced in minor units of its currency by the price list of the
channel that last set it. ``sku`` and ``name`` are kept as they were set, so showing a cart
needs no catalog lookup.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, UtcDateTime, created_column, id_column

OPEN_PREDICATE = "status IN ('active', 'abandoned')"
IDLE_PREDICATE = "line_count > 0"


class Cart(Base):
    __tablename__ = "carts"
    __table_args__ = (
        Index(
            "uq_carts_open_customer",
            "tenant_id",
            "customer_id",
            unique=True,
            postgresql_where=text(OPEN_PREDICATE),
            sqlite_where=text(OPEN_PREDICATE),
        ),
        # The abandonment timer: active non-empty carts by their last change.
        Index(
            "ix_carts_idle",
            "status",
            "updated_at",
            postgresql_where=text(IDLE_PREDICATE),
            sqlite_where=text(IDLE_PREDICATE),
        ),
        CheckConstraint("line_count >= 0", name="line_count_not_negative"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    # active, abandoned, converted, closed, merged
    status: Mapped[str] = mapped_column(String(16))
    # The sales channel that changed the cart last: web, app, callcenter, store:MAD01 ...
    channel: Mapped[str] = mapped_column(String(64))
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    # Counts changes of the lines; a client may send the version it saw to refuse lost updates.
    version: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(String(32))
    # The survivor's cart this one was folded into when its customer was merged.
    merged_into_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    # The last change of the lines: the start of the inactivity that abandons the cart.
    updated_at: Mapped[datetime] = created_column()
    abandoned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    converted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CartLine(Base):
    """One SKU of a cart; the key (cart, SKU) makes setting a line one upsert."""

    __tablename__ = "cart_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
    )

    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    variant_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    # Integer minor units of ``currency``, from the price list of ``channel``.
    unit_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class CartSettings(Base):
    """A tenant's cart rules; a tenant without a row uses the defaults."""

    __tablename__ = "cart_settings"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    abandon_after_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = created_column()

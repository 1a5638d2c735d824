"""Tables of stock: the level per SKU and location, its append-only ledger, and reservations.

``stock_levels`` holds the counters that every sale path changes with one conditional UPDATE;
its CHECK constraints are the last line of defence against overselling (the service's UPDATE
conditions are the first). ``stock_movements`` is the ledger: every change of ``on_hand`` is one
row, idempotent on ``(tenant_id, idempotency_key)``, so the ledger of a SKU at a location sums
to its ``on_hand``. Reservations hold stock (``reserved``) until consumed, released or expired.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class StockLevel(Base):
    """On hand, reserved and safety stock of one SKU (variant) at one location."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint("safety_stock >= 0", name="safety_stock_not_negative"),
    )

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    location_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety_stock: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = created_column()


class StockMovement(Base):
    """One change of ``on_hand``; rows are only ever inserted."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_stock_movements_variant_location", "tenant_id", "variant_id", "location_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    variant_id: Mapped[str] = mapped_column(String(32))
    location_id: Mapped[str] = mapped_column(String(32))
    # Signed: a receipt adds, a sale takes away.
    quantity: Mapped[int] = mapped_column(Integer)
    # receipt, sale, count, transfer, damage, return, adjustment
    reason: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # ``on_hand`` right after this movement; set in the same transaction as the row.
    on_hand: Mapped[int | None] = mapped_column(Integer)
    reservation_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()


class Reservation(Base):
    """Stock held for a cart, an order or a customer in a store until ``expires_at``.

    ``sku`` and ``location_code`` are kept as they were when reserved, so releasing and
    expiring need no lookup to name what changed.
    """

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_reservations_due", "status", "expires_at"),
        # A resend with the same key finds the first reservation; NULL keys never collide.
        Index(
            "uq_reservations_tenant_idempotency_key", "tenant_id", "idempotency_key", unique=True
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    variant_id: Mapped[str] = mapped_column(String(32))
    location_id: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(String(64))
    location_code: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    # held, released, consumed, expired
    status: Mapped[str] = mapped_column(String(16), default="held")
    reference: Mapped[str | None] = mapped_column(String(200))
    # The caller's key for this reservation (a cart line, an order line): optional.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()

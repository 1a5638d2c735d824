"""Tables of orders and returns: the order, its lines, its status history, the tenant's order
settings (sourcing rule, transfer lead time), and returns with their lines.

An order line names where its stock comes from (``source_location_id``) and, for a pickup,
where the customer collects it (``pickup_location_id``); when they differ the stock travels
from one to the other (a transfer) and ``ready_by`` says when it is expected. A line holds its
stock through a reservation (``reservation_id``) until the line is shipped or collected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_orders_tenant_id_customer_id", "tenant_id", "customer_id"),
        CheckConstraint("total >= 0", name="total_not_negative"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    # The sales channel: web, app, callcenter, marketplace, or a store's location code (POS).
    channel: Mapped[str] = mapped_column(String(64))
    # placed, allocated, picked, ready_for_pickup, shipped, collected, delivered, cancelled
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    # Integer minor units of ``currency``.
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)
    loyalty_points_redeemed: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # A digest of the request, so a key reused for another order is told apart from a resend.
    request_digest: Mapped[str] = mapped_column(String(64))
    # Where ship lines go: {"lat", "lon", "address"} as given.
    ship_to: Mapped[dict[str, Any] | None]
    # The sourcing decision: the rule, the candidates weighed and the shipments chosen.
    sourcing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    placed_by_user_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    position: Mapped[int] = mapped_column(Integer)
    variant_id: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    # ship, pickup, in_store (handed over at the counter when the order is placed)
    fulfilment: Mapped[str] = mapped_column(String(16))
    source_location_id: Mapped[str] = mapped_column(String(32))
    source_location: Mapped[str] = mapped_column(String(64))
    pickup_location_id: Mapped[str | None] = mapped_column(String(32))
    pickup_location: Mapped[str | None] = mapped_column(String(64))
    # When a transferred pickup is expected at the store.
    ready_by: Mapped[datetime | None]
    reservation_id: Mapped[str | None] = mapped_column(String(32))
    # reserved, ready (at the pickup store), shipped, collected, delivered, cancelled
    status: Mapped[str] = mapped_column(String(16))
    returned_quantity: Mapped[int] = mapped_column(Integer, default=0)


class OrderHistory(Base):
    """One row per status change of an order: who, when, from what."""

    __tablename__ = "order_history"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(20))
    previous_status: Mapped[str | None] = mapped_column(String(20))
    by_user_id: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(500))
    # Whether the customer was notified, and on which channel (or why not).
    notification: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = created_column()


class OrderSettings(Base):
    """A tenant's order rules; a tenant without a row uses the defaults in ``orders``."""

    __tablename__ = "order_settings"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # single_location_first, nearest, fewest_shipments
    sourcing_rule: Mapped[str] = mapped_column(String(32))
    # Hours a transfer from a warehouse to a pickup store takes.
    transfer_lead_hours: Mapped[int] = mapped_column(Integer)
    notify_customer: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = created_column()


class Return(Base):
    __tablename__ = "returns"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    location_id: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(64))
    # store (handed in at a store's counter) or post (received at a location by parcel)
    method: Mapped[str] = mapped_column(String(8))
    # refund, exchange
    resolution: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    refund_amount: Mapped[int] = mapped_column(BigInteger)
    loyalty_points_reversed: Mapped[int] = mapped_column(Integer, default=0)
    exchange_order_id: Mapped[str | None] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_digest: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_column()


class ReturnLine(Base):
    __tablename__ = "return_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    return_id: Mapped[str] = mapped_column(String(32), index=True)
    order_line_id: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    refund_amount: Mapped[int] = mapped_column(BigInteger)
    resellable: Mapped[bool] = mapped_column(default=True)
    restocked: Mapped[bool] = mapped_column(default=False)

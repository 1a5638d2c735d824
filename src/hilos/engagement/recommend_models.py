"""Tables of recommendations: product aliases, purchase baskets and their co-occurrence counts.

``product_aliases`` holds the other names customers use for a product ("zapas blancas",
"white trainers"), which mentions in conversations are matched against.

``purchase_baskets`` keeps one row per order of any channel (its products, not its SKUs:
the sizes of one product are one product), filled from the ``order.placed`` events and marked
``cancelled`` by ``order.cancelled``. ``product_basket_counts`` (baskets holding a product) and
``product_pair_counts`` (baskets holding both products, stored in both directions so one
product's neighbours are one index range) are kept in step with it, so a recommendation reads
counts instead of scanning orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column


class ProductAliases(Base):
    """The other names of one product, as the tenant wrote them."""

    __tablename__ = "product_aliases"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = created_column()


class PurchaseBasket(Base):
    """The products of one order (``id`` is the order's id), whatever its channel."""

    __tablename__ = "purchase_baskets"
    __table_args__ = (
        Index("ix_purchase_baskets_tenant_id_customer_id", "tenant_id", "customer_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(64))
    # Product ids, each once, in the order of the order's lines.
    products: Mapped[list[Any]] = mapped_column(default=list)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    placed_at: Mapped[datetime] = created_column()


class ProductBasketCount(Base):
    """How many baskets (orders not cancelled) hold the product."""

    __tablename__ = "product_basket_counts"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    baskets: Mapped[int] = mapped_column(Integer, default=0)


class ProductPairCount(Base):
    """How many baskets hold both ``product_id`` and ``other_id`` (each pair stored twice)."""

    __tablename__ = "product_pair_counts"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    other_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    baskets: Mapped[int] = mapped_column(Integer, default=0)

"""Tables every part of commerce shares: products and their variants (SKUs), and locations.

Prices (``pricing_models``) and stock (``stock_models``) keep their own tables; they refer to
variants and locations by id, and the API refers to both by their codes (SKU, location code).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(String(5000))
    # Image URLs, in display order.
    images: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class Variant(Base):
    """What is sold and stocked: one SKU of a product (a size, a colour)."""

    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("tenant_id", "sku"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    gtin: Mapped[str | None] = mapped_column(String(14))
    name: Mapped[str] = mapped_column(String(300))
    # {"size": "42", "colour": "azul"}
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = created_column()


class Location(Base):
    """A warehouse or a store: where stock is, and where customers pick up or return."""

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # warehouse, store
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # {"mon": [["10:00", "21:00"]], ...} in the tenant's time zone.
    opening_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pickup: Mapped[bool] = mapped_column(Boolean, default=False)
    ship_from_store: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_column()

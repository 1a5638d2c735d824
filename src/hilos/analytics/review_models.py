"""Tables of reviews and social mentions: what customers say about the business elsewhere,
each stored once per source (or network) and external id, with its sentiment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column


class Review(Base):
    """A product or shop review from the web shop, Google, Trustpilot..."""

    __tablename__ = "reviews"
    __table_args__ = (
        # A source's retry is the same review.
        UniqueConstraint("tenant_id", "source", "external_id"),
        Index("ix_reviews_tenant_created", "tenant_id", "created_at"),
        Index("ix_reviews_tenant_sku", "tenant_id", "sku"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    # web, google, trustpilot... (lower case).
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    # The reviewed product (a SKU of the tenant's catalog), none for a review of the shop.
    sku: Mapped[str | None] = mapped_column(String(64))
    product_id: Mapped[str | None] = mapped_column(String(32))
    # 1 to 5 stars, when the source has stars.
    rating: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # As given, else as the words tell (es, en); none when they do not.
    language: Mapped[str | None] = mapped_column(String(8))
    author: Mapped[str | None] = mapped_column(String(200))
    # The known customer who wrote it, when identities came with it.
    customer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # From -1 to 1, and negative / neutral / positive (``analytics.sentiment``).
    score: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(8))
    # When the review was written (the source's time), and when Hilos received it.
    created_at: Mapped[datetime] = created_column()
    received_at: Mapped[datetime] = created_column()


class Mention(Base):
    """A post or comment about the business on a social network."""

    __tablename__ = "mentions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "network", "external_id"),
        Index("ix_mentions_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    # instagram, x, facebook, tiktok... (lower case).
    network: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    # The author's handle or name on the network.
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000))
    language: Mapped[str | None] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = created_column()
    received_at: Mapped[datetime] = created_column()

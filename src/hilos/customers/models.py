"""Tables of the customers domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (Index("ix_customers_tenant_search", "tenant_id", "search_name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str | None] = mapped_column(String(200))
    # The name lower-cased without accents, with a leading space, for word-prefix search.
    search_name: Mapped[str | None] = mapped_column(String(210))
    language: Mapped[str | None] = mapped_column(String(8))
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    # Set when this profile was merged into another; the id then redirects to the survivor.
    merged_into_id: Mapped[str | None] = mapped_column(String(32))


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = created_column()


class BlockedValue(Base):
    __tablename__ = "blocked_values"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class Consent(Base):
    """One recorded decision; the current state is the latest row per purpose and channel kind."""

    __tablename__ = "consents"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    channel_kind: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = created_column()


class TimelineEvent(Base):
    """Something the customer did or that happened to them (Segment calls, merges, consents)."""

    __tablename__ = "timeline_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source_message_id"),
        Index("ix_timeline_events_customer_time", "customer_id", "occurred_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = created_column()
    received_at: Mapped[datetime] = created_column()
    # The sender's idempotency key (Segment's messageId); a resend with it changes nothing.
    source_message_id: Mapped[str | None] = mapped_column(String(200))


class Merge(Base):
    """A merge of ``merged_id`` into ``survivor_id`` and exactly what it moved, to undo it."""

    __tablename__ = "merges"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    survivor_id: Mapped[str] = mapped_column(String(32), index=True)
    merged_id: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = created_column()
    undone_at: Mapped[datetime | None]

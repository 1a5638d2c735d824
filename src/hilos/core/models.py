"""Tables owned by the core: tenants, their users and API keys, and the event outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column

DEFAULT_IDENTITY_LIMITS: dict[str, int] = {"external": 1, "*": 5}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    # ISO 3166 region used to read phone numbers written without a country code.
    default_region: Mapped[str] = mapped_column(String(2), default="ES")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Madrid")
    locale: Mapped[str] = mapped_column(String(8), default="es")
    # A resolved conversation reopens when the customer writes within this many seconds.
    reopen_window_seconds: Mapped[int] = mapped_column(default=86_400)
    # Most identities of one kind a customer may hold ("*" for kinds not named).
    identity_limits: Mapped[dict[str, Any]] = mapped_column(
        default=lambda: dict(DEFAULT_IDENTITY_LIMITS)
    )
    created_at: Mapped[datetime] = created_column()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = created_column()
    deactivated_at: Mapped[datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # The first characters of the key, shown in listings so a person can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A key a person uses (an agent's own tools) acts as that user: it sees what they see.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None]


class OutboxEvent(Base):
    """An event written in the same transaction as the change it describes.

    The worker relays unpublished rows to the bus, so listeners never see a change that was
    rolled back, and a crash between commit and publish loses nothing.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_events_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    topic: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_column()
    published_at: Mapped[datetime | None]

"""Tables of outbound webhooks: the endpoints a tenant subscribed, and one delivery per
(event, endpoint).

A delivery is a durable timer: ``next_attempt_at`` is when it is due while ``pending``, and
when its claim lapses while ``sending``. It keeps its own copy of the body, so what is signed
and sent on every attempt is byte for byte the same, whatever happens to the outbox later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.clock import now
from hilos.core.db import Base, UtcDateTime, created_column, id_column, tenant_column


class WebhookEndpoint(Base):
    """A URL that receives the tenant's events of some topics, signed with its secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    # Exact topics ("stock.changed"), families ("order.*") or "*".
    topics: Mapped[list[Any]]
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why Hilos disabled it by itself (the receiver answered 410, or failed for days).
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    # Standard Webhooks secrets ("whsec_" + base64); Hilos needs them in clear to sign.
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret signs too, until it expires, so receivers can switch.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    # First failed attempt since the last delivered one; None while the endpoint is healthy.
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now, onupdate=now)


class WebhookDelivery(Base):
    """One event to be sent to one endpoint, with the outcome of its last attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The fan-out inserts with ON CONFLICT DO NOTHING on this: one delivery per pair.
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The outbox event's id: the payload's "id" and the "webhook-id" header, on every attempt.
    event_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    # pending (due at next_attempt_at), sending (claimed), delivered, failed.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_response: Mapped[str | None] = mapped_column(String(1000))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now, onupdate=now)

"""Tables of the sending rules: each tenant's quiet hours and frequency cap, and the log of
every send (queued, deferred or suppressed, with the reason), which is also the idempotency
record and what the frequency cap counts (see ``sending``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, UtcDateTime, created_column, id_column


class EngagementSettings(Base):
    """A tenant's sending rules; a tenant without a row has the defaults of ``sending``."""

    __tablename__ = "engagement_settings"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # "HH:MM" in the customer's time zone; both null when the tenant has no quiet hours.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    # At most cap_messages marketing messages per customer in any cap_days days; null: no cap.
    cap_messages: Mapped[int | None] = mapped_column(Integer)
    cap_days: Mapped[int | None] = mapped_column(Integer)
    # The shop's address of a cart, with {cart_id} and {customer_id}: ``cart.url`` in templates.
    cart_url: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = created_column()


class Send(Base):
    """One request to send a template to a customer, and what became of it."""

    __tablename__ = "sends"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        # The frequency cap: a customer's queued marketing messages in the last days.
        Index("ix_sends_customer_queued", "tenant_id", "customer_id", "queued_at"),
        Index("ix_sends_tenant_status", "tenant_id", "status", "id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    template_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(16))
    # queued, deferred, suppressed
    status: Mapped[str] = mapped_column(String(16))
    # Why it was deferred or suppressed (quiet_hours, no_consent, frequency_cap ...).
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(16))
    # The channels passed over on the way to the chosen one: [{kind, channel_id, reason}].
    tried: Mapped[list[Any]] = mapped_column(default=list)
    # Who asked: {"journey_id", "run_id", "step_id"} or {"campaign_id"}.
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(32))
    conversation_id: Mapped[str | None] = mapped_column(String(32))
    # Earlier outcomes of the same key (a deferral before the send went out).
    history: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # The secret of the send's unsubscribe link (``unsubscribe_url``).
    unsubscribe_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

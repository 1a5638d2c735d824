"""Tables of campaigns: a broadcast of one template to one segment, and each recipient's send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    segment_id: Mapped[str] = mapped_column(String(32))
    template_id: Mapped[str] = mapped_column(String(32))
    # Fallback channel kinds after the customer's preferred one.
    channel_order: Mapped[list[Any]] = mapped_column(default=list)
    # Most messages a minute per channel kind: {"whatsapp": 60, "email": 600, "*": 120}.
    throttle_per_minute: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # An order within this many days after a recipient's message counts as a conversion.
    conversion_days: Mapped[int] = mapped_column(Integer, default=7)
    # draft, scheduled, sending, sent, cancelled
    status: Mapped[str] = mapped_column(String(16))
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class CampaignRecipient(Base):
    """One customer of the segment when the campaign started, and what became of their send."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (Index("ix_campaign_recipients_due", "campaign_id", "status", "next_at"),)

    campaign_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    # pending (next_at says when), queued, suppressed, failed
    status: Mapped[str] = mapped_column(String(16))
    next_at: Mapped[datetime | None]
    send_id: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(32))
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None]

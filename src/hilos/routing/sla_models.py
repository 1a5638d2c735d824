"""Tables of SLA policies: the tenant's business hours, its policies, and each conversation's
SLA clock (the durable timers the worker fires)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class BusinessHours(Base):
    """A tenant's opening hours: one row per tenant (none means around the clock)."""

    __tablename__ = "business_hours"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # An IANA zone; None follows the tenant's own time zone.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # {"mon": [["09:00", "14:00"], ["16:00", "19:00"]], ...}; a missing day is closed.
    weekly: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # ["2026-12-25", ...]: local dates, closed all day.
    holidays: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = created_column()


class SlaPolicy(Base):
    """Response and resolution targets for the conversations a policy matches."""

    __tablename__ = "sla_policies"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Channel kinds it applies to; None for every kind.
    channel_kinds: Mapped[list[Any] | None]
    # low, normal, high, urgent; None for any priority.
    priority: Mapped[str | None] = mapped_column(String(16))
    first_response_seconds: Mapped[int | None] = mapped_column(Integer)
    next_response_seconds: Mapped[int | None] = mapped_column(Integer)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer)
    # Count only the tenant's business hours (else around the clock).
    business_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    # Share of a target after which a warning goes out.
    warning_share: Mapped[float] = mapped_column(Float, default=0.8)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class ConversationSla(Base):
    """One conversation's SLA clock for its current cycle (since it started or reopened).

    The policy's targets are copied in when the cycle starts, so editing or deleting a policy
    changes only the cycles that start afterwards. ``next_check_at`` is the earliest warning or
    due moment not yet fired (None while paused or when nothing is left to fire): the worker
    claims rows by it, which is what makes the timers survive a restart.
    """

    __tablename__ = "conversation_slas"
    __table_args__ = (Index("ix_conversation_slas_next_check", "next_check_at"),)

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    policy_id: Mapped[str | None] = mapped_column(String(32))
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    # The policy as it was when the cycle started.
    first_response_seconds: Mapped[int | None] = mapped_column(Integer)
    next_response_seconds: Mapped[int | None] = mapped_column(Integer)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer)
    business_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    warning_share: Mapped[float] = mapped_column(Float, default=0.8)

    started_at: Mapped[datetime]
    first_response_due_at: Mapped[datetime | None]
    first_response_warn_at: Mapped[datetime | None]
    first_responded_at: Mapped[datetime | None]
    # Set when the customer writes after an agent's reply; cleared by the next reply.
    next_response_due_at: Mapped[datetime | None]
    next_response_warn_at: Mapped[datetime | None]
    last_responded_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    resolution_warn_at: Mapped[datetime | None]
    # The customer wrote last: an agent's reply is owed.
    awaiting_reply: Mapped[bool] = mapped_column(Boolean, default=True)
    # Pending (waiting on the customer) since; the targets move on by the pause on resuming.
    paused_at: Mapped[datetime | None]
    # Seconds spent paused in this cycle (business seconds under a business-hours policy).
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    first_response_warned: Mapped[bool] = mapped_column(Boolean, default=False)
    first_response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    # Per next-response target: reset when a new one starts.
    next_response_warned: Mapped[bool] = mapped_column(Boolean, default=False)
    next_response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolution_warned: Mapped[bool] = mapped_column(Boolean, default=False)
    resolution_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    # Any target of this cycle breached, the next-response ones included.
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    next_check_at: Mapped[datetime | None]
    # Resolved (the cycle is over), or stopped because the conversation was merged away.
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_column()

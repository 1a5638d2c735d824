"""Tables of routing: queues and their members, agents' profiles, the conversations being
routed (their durable timers), offers, the routing log, and each tenant's routing settings.

Agents are users: an agent's id is their user id, the same id ``conversations.assignee_id``
holds. SLA policies and timers live in ``sla_models``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column

DEFAULT_STICKY_WINDOW_SECONDS = 7 * 86_400
DEFAULT_AGEING_SECONDS = 120
DEFAULT_TIER_PRIORITIES: dict[str, int] = {"vip": 3, "platinum": 3, "gold": 2, "silver": 1}
DEFAULT_NEGATIVE_SENTIMENT_POINTS = 2


class RoutingQueue(Base):
    __tablename__ = "routing_queues"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Required skill → minimum level.
    skills: Mapped[dict[str, Any]] = mapped_column(default=dict)
    channel_kinds: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    offer_timeout_seconds: Mapped[int] = mapped_column(Integer, default=30)
    # Assign the chosen agent at once instead of offering (no accept step).
    auto_assign: Mapped[bool] = mapped_column(Boolean, default=True)
    # [{"after_seconds": n, "skills": {skill: level}}], ascending.
    rings: Mapped[list[Any]] = mapped_column(default=list)
    overflow_queue_id: Mapped[str | None] = mapped_column(ForeignKey("routing_queues.id"))
    overflow_after_seconds: Mapped[int | None] = mapped_column(Integer)
    secondary_after_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class RoutingAgent(Base):
    """A user's agent profile: skills, capacity and presence."""

    __tablename__ = "routing_agents"
    __table_args__ = (
        Index("ix_routing_agents_tenant_presence", "tenant_id", "presence"),
        Index("ix_routing_agents_freed", "freed_at"),
    )

    id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    # Skill → level (1–10); secondary skills serve a queue only after its secondary delay.
    skills: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secondary_skills: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Channel kind → conversations held at once (the defaults filled in).
    capacity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # online, away, offline.
    presence: Mapped[str] = mapped_column(String(16), default="offline")
    presence_at: Mapped[datetime] = created_column()
    # The last time the agent came online, was offered something or finished something.
    idle_since: Mapped[datetime] = created_column()
    # Set when one of their conversations stopped taking a slot (resolved, pending, snoozed):
    # the worker offers them what waits and clears it.
    freed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()


class QueueMember(Base):
    """An agent added to a queue by hand (agents also belong to queues by their skills)."""

    __tablename__ = "routing_queue_members"

    queue_id: Mapped[str] = mapped_column(ForeignKey("routing_queues.id"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("routing_agents.id"), primary_key=True)
    tenant_id: Mapped[str] = tenant_column()
    created_at: Mapped[datetime] = created_column()


class RoutedConversation(Base):
    """Where routing stands with one conversation, and its durable timer.

    ``state``: arrived (needs routing: written by the outbox consumer, routed by the worker),
    waiting (in line), offered (an offer is out), assigned, done (resolved, or no queue serves
    it). ``due_at`` is when the worker must look at it again (arrival, an offer lapsing, a ring,
    the secondary delay, overflow, a pass running out); the worker claims due rows with
    ``FOR UPDATE SKIP LOCKED``.
    """

    __tablename__ = "routing_conversations"
    __table_args__ = (
        Index("ix_routing_conversations_tenant_state", "tenant_id", "state"),
        Index("ix_routing_conversations_queue_state", "queue_id", "state"),
        Index("ix_routing_conversations_due", "due_at"),
    )

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    queue_id: Mapped[str | None] = mapped_column(ForeignKey("routing_queues.id"))
    state: Mapped[str] = mapped_column(String(16))
    # What put it in line: new, reopened, transferred, handed off.
    cause: Mapped[str | None] = mapped_column(String(32))
    channel_kind: Mapped[str] = mapped_column(String(16), default="")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # The place in line (see routing.engine): lower goes first.
    rank_at: Mapped[datetime] = created_column()
    # When the customer started waiting for a human (this time), and entered this queue.
    waiting_since: Mapped[datetime] = created_column()
    queued_at: Mapped[datetime] = created_column()
    sticky_agent_id: Mapped[str | None] = mapped_column(String(32))
    # Agent id → epoch seconds before which they are not offered it again.
    passed: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The agent offered it (state offered) or holding it (assigned).
    agent_id: Mapped[str | None] = mapped_column(String(32))
    offer_id: Mapped[str | None] = mapped_column(String(32))
    due_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_column()


class RoutingOffer(Base):
    __tablename__ = "routing_offers"
    __table_args__ = (
        Index("ix_routing_offers_agent_status", "agent_id", "status"),
        Index("ix_routing_offers_conversation", "conversation_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    queue_id: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[str] = mapped_column(String(32))
    # offered, accepted, rejected, expired, withdrawn.
    status: Mapped[str] = mapped_column(String(16))
    offered_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime] = created_column()
    answered_at: Mapped[datetime | None]


class RoutingDecision(Base):
    """One line of a conversation's routing log: what routing did and why."""

    __tablename__ = "routing_decisions"
    __table_args__ = (Index("ix_routing_decisions_conversation", "conversation_id", "id"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str] = mapped_column(String(32))
    # queued, offered, accepted, rejected, expired, withdrawn, assigned, overflowed,
    # transferred, waiting, unrouted, left.
    action: Mapped[str] = mapped_column(String(16))
    queue_id: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = created_column()


class RoutingSettings(Base):
    __tablename__ = "routing_settings"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # The last agent who served a customer within this many seconds gets them first.
    sticky_window_seconds: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_STICKY_WINDOW_SECONDS
    )
    # Each priority point moves a conversation this many seconds forward in line.
    ageing_seconds_per_priority: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_AGEING_SECONDS
    )
    # Customer trait ``tier`` → priority points.
    tier_priorities: Mapped[dict[str, Any]] = mapped_column(
        default=lambda: dict(DEFAULT_TIER_PRIORITIES)
    )
    # Priority points of a conversation whose latest customer message sounds clearly negative
    # (``analytics.sentiment``, at or below ``routing.service.UPSET_AT``).
    negative_sentiment_points: Mapped[int] = mapped_column(
        Integer,
        default=DEFAULT_NEGATIVE_SENTIMENT_POINTS,
        server_default=str(DEFAULT_NEGATIVE_SENTIMENT_POINTS),
    )
    updated_at: Mapped[datetime] = created_column()

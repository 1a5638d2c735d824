"""Tables of the virtual assistant: the knowledge base it answers from, its settings per tenant,
one turn per customer message it considered, and the hand-offs that silence it.

``assistant_turns`` is also the assistant's durable queue: the relay's consumer inserts a
``pending`` turn for each inbound message (unique per message, so a message is never taken
twice), and the worker answers it in the same transaction that marks it ``done``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column

PENDING_PREDICATE = "status = 'pending'"
ACTIVE_HANDOFF_PREDICATE = "ended_at IS NULL"


class KnowledgeArticle(Base):
    """One answer of the tenant's knowledge base, in one language (``es`` or ``en``)."""

    __tablename__ = "knowledge_articles"
    __table_args__ = (Index("ix_knowledge_articles_tenant_language", "tenant_id", "language"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class AssistantSettings(Base):
    """Whether the assistant answers, on which channel kinds, and how sure it must be.

    A tenant without a row has the assistant off. ``llm_base_url`` and ``llm_model`` name an
    optional OpenAI-compatible endpoint; its key is read from the environment, never stored.
    """

    __tablename__ = "assistant_settings"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    channel_kinds: Mapped[list[Any]] = mapped_column(default=list)
    confidence_threshold: Mapped[float] = mapped_column(Float)
    llm_base_url: Mapped[str | None] = mapped_column(String(500))
    llm_model: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = created_column()


class AssistantTurn(Base):
    """What the assistant did with one inbound message: answered (and how), handed off,
    stayed quiet (and why), or failed."""

    __tablename__ = "assistant_turns"
    __table_args__ = (
        UniqueConstraint("message_id"),
        Index("ix_assistant_turns_conversation", "conversation_id", "id"),
        # The worker's queue: turns still to answer.
        Index(
            "ix_assistant_turns_pending",
            "due_at",
            postgresql_where=text(PENDING_PREDICATE),
            sqlite_where=text(PENDING_PREDICATE),
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    message_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    channel_kind: Mapped[str] = mapped_column(String(16))
    # pending (to answer), done, failed (gave up after MAX_ATTEMPTS).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = created_column()
    # answered, handed_off, skipped, failed.
    outcome: Mapped[str | None] = mapped_column(String(16))
    # order_status, store_stock, store_hours, faq, greeting, thanks, handoff_request, unknown.
    intent: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    question: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    # What it found (order number, store, product, article, sentiment) or why it kept quiet.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reply_message_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    processed_at: Mapped[datetime | None]


class AssistantHandoff(Base):
    """A conversation the assistant gave to people; it stays quiet there until the conversation
    is resolved (``ended_at``). At most one open hand-off per conversation."""

    __tablename__ = "assistant_handoffs"
    __table_args__ = (
        Index(
            "uq_assistant_handoffs_active_conversation",
            "conversation_id",
            unique=True,
            postgresql_where=text(ACTIVE_HANDOFF_PREDICATE),
            sqlite_where=text(ACTIVE_HANDOFF_PREDICATE),
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    conversation_id: Mapped[str] = mapped_column(String(32))
    turn_id: Mapped[str] = mapped_column(String(32))
    # requested, low_confidence, negative_sentiment.
    reason: Mapped[str] = mapped_column(String(32))
    note_message_id: Mapped[str | None] = mapped_column(String(32))
    queue_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    ended_at: Mapped[datetime | None]

"""Tables of the conversations domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column

ACTIVE_STATUSES = ("open", "pending", "snoozed")
ACTIVE_PREDICATE = "status IN ('open', 'pending', 'snoozed')"
OUTGOING_PREDICATE = "status IN ('queued', 'sending')"


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_active_customer",
            "customer_id",
            unique=True,
            postgresql_where=text(ACTIVE_PREDICATE),
            sqlite_where=text(ACTIVE_PREDICATE),
        ),
        Index("ix_conversations_tenant_last_message", "tenant_id", "last_message_at"),
        # Every conversation of a customer, active or not (merges, receipts, the 360° view).
        Index("ix_conversations_customer", "customer_id"),
        Index("ix_conversations_snoozed", "snoozed_until"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    # open, pending (waiting on the customer), snoozed (until snoozed_until), resolved, merged.
    status: Mapped[str] = mapped_column(String(16))
    snoozed_until: Mapped[datetime | None]
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    # Channel instances the conversation has crossed, in the order it first reached them.
    channel_ids: Mapped[list[Any]] = mapped_column(default=list)
    last_channel_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    last_message_at: Mapped[datetime] = created_column()
    last_inbound_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # Set when a customer merge folded this conversation into another.
    merged_into_id: Mapped[str | None] = mapped_column(String(32))


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel_id", "external_id"),
        Index("ix_messages_conversation_sent", "conversation_id", "sent_at"),
        # The delivery worker's queue: replies waiting to go out, or in flight.
        Index(
            "ix_messages_outgoing",
            "next_attempt_at",
            postgresql_where=text(OUTGOING_PREDICATE),
            sqlite_where=text(OUTGOING_PREDICATE),
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"))
    # inbound (from the customer), outbound (a reply), note (private, never sent).
    direction: Mapped[str] = mapped_column(String(8))
    # The provider's message id: a redelivery with the same one changes nothing.
    external_id: Mapped[str | None] = mapped_column(String(200))
    # "kind:value" of the sender (inbound) or the recipient (outbound).
    address: Mapped[str | None] = mapped_column(String(340))
    author_user_id: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    # message (text and attachments), call (a phone call's entry), visit (a store visit).
    kind: Mapped[str] = mapped_column(String(16), default="message", server_default="message")
    # What the kind needs beyond text: a call's events and duration, an email's subject and
    # headers, a template's name and parameters, the store and clerk of a visit.
    data: Mapped[dict[str, Any] | None]
    # received; queued, sending, sent, delivered, read, failed (outbound); none for notes.
    status: Mapped[str | None] = mapped_column(String(16))
    status_at: Mapped[datetime | None]
    # Why delivery failed, in the provider's words: {"code": ..., "message": ...}.
    error: Mapped[dict[str, Any] | None]
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the worker may next try (queued), or when its claim lapses (sending).
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime] = created_column()
    created_at: Mapped[datetime] = created_column()


class MessageReceipt(Base):
    """A provider's delivery receipt, kept even when it arrives before its message is known.

    Providers report statuses by their own message id, which Hilos learns only when the send
    call returns; a receipt that overtakes that answer waits here and is applied then.
    """

    __tablename__ = "message_receipts"
    __table_args__ = (UniqueConstraint("tenant_id", "channel_id", "external_id", "status"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = created_column()
    error: Mapped[dict[str, Any] | None]
    applied_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()

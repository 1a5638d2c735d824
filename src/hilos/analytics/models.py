"""Tables of analytics: the sentiment score of each inbound customer message."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, tenant_column


class MessageSentiment(Base):
    """How a customer's message sounded (``analytics.sentiment.score``), scored once."""

    __tablename__ = "message_sentiments"
    # The latest score of a conversation: its highest message id (ids are time-ordered).
    __table_args__ = (
        Index("ix_message_sentiments_conversation", "conversation_id", "message_id"),
        # The sentiment summary of a tenant's date range.
        Index("ix_message_sentiments_tenant_sent", "tenant_id", "sent_at"),
    )

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    tenant_id: Mapped[str] = tenant_column()
    conversation_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    # The kind of channel the message came in on (whatsapp, email...), from its event.
    channel_kind: Mapped[str | None] = mapped_column(String(32))
    # When the message was sent (rows scored before 0029 got it from their message).
    sent_at: Mapped[datetime | None]
    # From -1 (angry) to 1 (delighted).
    score: Mapped[float] = mapped_column(Float)
    # negative, neutral, positive.
    label: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = created_column()

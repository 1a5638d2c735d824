"""Tables of the tasks domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # One task per thing that caused it: a provider retrying a missed call makes no second.
        UniqueConstraint("tenant_id", "kind", "source_id"),
        Index("ix_tasks_tenant_status_due", "tenant_id", "status", "due_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    # call_back (a missed call to return).
    kind: Mapped[str] = mapped_column(String(32))
    # open, done, cancelled.
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Indexed: a customer merge moves their tasks.
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id"))
    # What caused it (the call's message id): the natural key that makes it idempotent.
    source_id: Mapped[str] = mapped_column(String(200))
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(300))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due_at: Mapped[datetime] = created_column()
    created_at: Mapped[datetime] = created_column()
    completed_at: Mapped[datetime | None]

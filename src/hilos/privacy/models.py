"""The audit log: one row per admin action, merge, export or erasure, never changed afterwards.

The table is append-only: no code updates or deletes its rows, and the migration adds a
trigger on both databases that refuses any ``UPDATE``. Rows are deleted only with their whole
tenant. Its ``details`` hold ids, codes and counts, never the personal data of a customer (an
erasure must not leave a copy here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column

# The actor kinds: a key of the API, a person signed in to the console, Hilos itself (a merge
# that an identify call caused), and the ``hilos`` command on the server.
ACTOR_TYPES = ("api_key", "user", "system", "cli")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        # The log page: a tenant's entries, newest first (ids are time-ordered).
        Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),
        # What happened to one thing: whether a customer was erased, a key's history.
        Index("ix_audit_log_subject", "tenant_id", "subject_type", "subject_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = created_column()
    actor_type: Mapped[str] = mapped_column(String(16))
    # The API key used, and the user it belongs to (or the console user), with their role.
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    actor_user_id: Mapped[str | None] = mapped_column(String(32))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    # What was done, as ``thing.verb``: api_key.created, customer.erased...
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The request that did it (``X-Request-ID``), to find its log lines; none outside HTTP.
    request_id: Mapped[str | None] = mapped_column(String(64))

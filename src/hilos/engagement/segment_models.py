"""Tables of segments: a tenant's named rules over customers, and who was in each at its last
refresh.

``segments.rule`` is the JSON tree ``hilos.engagement.segments`` checks and compiles; a live
count never reads ``segment_members``. ``segment_members`` is the membership as of the segment's
``refreshed_at``: the refresh diffs it against a live evaluation, and each row it adds or
removes is one ``segment.entered`` or ``segment.exited`` event written in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        # The refresh's queue: segments never refreshed, then the longest unrefreshed.
        Index("ix_segments_refreshed_at", "refreshed_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    rule: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    # When ``segment_members`` last matched the rule; None = due now (new or changed rule).
    refreshed_at: Mapped[datetime | None]
    # How many members the last finished refresh found.
    member_count: Mapped[int] = mapped_column(Integer, default=0)


class SegmentMember(Base):
    """A customer in a segment since ``entered_at`` (as of the segment's last refresh)."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_customer_id", "customer_id"),)

    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    entered_at: Mapped[datetime] = created_column()

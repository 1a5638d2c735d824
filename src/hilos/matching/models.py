"""Tables of matching: blocking keys, suggestions (and the pairs people rejected), the tenant's
settings and trained model, the online check's position and the batch de-duplication's runs.

``match_keys`` holds two sorts of key per live profile: the engine's blocking keys (two profiles
sharing one are compared) and ``=kind:value`` keys, one per email or phone the profile holds,
which only count how many profiles share a value (the over-merging guard). A rejected
suggestion is the memory of a pair a person said are different people: it is never suggested or
merged again, and no automatic merge joins the two through a third profile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column
from hilos.customers.models import Customer

SUGGESTION_STATUSES = ("pending", "accepted", "rejected", "auto_merged", "superseded")
DEFAULT_REVIEW_THRESHOLD = 0.8

# The online check reads profiles changed since its position in this order (``hilos.matching
# .online``): without the index every worker pass would scan the customers table.
Index("ix_customers_updated_at_id", Customer.updated_at, Customer.id)


class MatchKey(Base):
    __tablename__ = "match_keys"
    __table_args__ = (Index("ix_match_keys_tenant_key", "tenant_id", "key"),)

    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))


class MatchSuggestion(Base):
    """Two profiles that may be one person; ``left_customer_id`` < ``right_customer_id``."""

    __tablename__ = "match_suggestions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "left_customer_id", "right_customer_id"),
        Index("ix_match_suggestions_queue", "tenant_id", "status", "probability", "id"),
        Index("ix_match_suggestions_right", "tenant_id", "right_customer_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    left_customer_id: Mapped[str] = mapped_column(String(32))
    right_customer_id: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    match_weight: Mapped[float] = mapped_column(Float)
    # [{"field": "name", "level": "close", "weight": 3.2}, ...], strongest first.
    evidence: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16))
    # "user:<id>", "key:<id>", "system" (an automatic merge), "cli", or "unmerge" (a person
    # undid the merge, which rejects the pair).
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    # The merge that accepting (or the automatic merge) made, for undoing it.
    merge_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class MatchSettings(Base):
    """A tenant's thresholds and trained model; a tenant without a row has the defaults."""

    __tablename__ = "match_settings"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    review_threshold: Mapped[float] = mapped_column(Float, default=DEFAULT_REVIEW_THRESHOLD)
    # None: no automatic merges. When set, at least the review threshold.
    auto_merge_threshold: Mapped[float | None] = mapped_column(Float)
    # ``engine.MatchModel.to_json()``; None until trained (the engine's defaults apply).
    model: Mapped[dict[str, Any] | None]
    trained_at: Mapped[datetime | None]
    trained_profiles: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = created_column()


class MatchCheckCursor(Base):
    """Where the online check has read up to: profiles by (updated_at, id), identities by id."""

    __tablename__ = "match_check_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    after_updated_at: Mapped[datetime] = created_column()
    after_customer: Mapped[str] = mapped_column(String(32))
    after_identity: Mapped[str] = mapped_column(String(32))


class MatchRun(Base):
    """One ``hilos dedupe`` of a tenant: its plan, how far it got and its report.

    The plan (clusters to merge, survivor first) is stored before any merge, and
    ``merged_clusters`` counts the clusters merged so far in the same transactions as the
    merges, so a run stopped half way continues where it stopped.
    """

    __tablename__ = "match_runs"
    __table_args__ = (Index("ix_match_runs_tenant_id", "tenant_id", "id"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    # planned -> merging -> done
    status: Mapped[str] = mapped_column(String(16))
    plan: Mapped[list[Any]] = mapped_column(default=list)
    merged_clusters: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = created_column()
    finished_at: Mapped[datetime | None]

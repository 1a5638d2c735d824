"""Tables of journeys: the definitions, each customer's run through one (its place and its next
due time: the durable timer), and the log of every step a run took."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Journey(Base):
    __tablename__ = "journeys"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # draft, active, paused, archived
    status: Mapped[str] = mapped_column(String(16))
    # {"event": "cart.abandoned"} or {"event": "segment.entered", "segment_id": "..."}
    trigger: Mapped[dict[str, Any]]
    # {"start": "s1", "steps": [{"id": "s1", "type": "wait", "seconds": 3600, "next": ...}]}
    definition: Mapped[dict[str, Any]]
    # Event topics that end a customer's run at once ("order.placed": they bought).
    exit_on: Mapped[list[Any]] = mapped_column(default=list)
    # never (once per customer), after_exit (again once the previous run ended), always
    reentry: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class JourneyRun(Base):
    """One customer's way through one journey: where they are and when the next step is due."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        # The worker's timer: active runs by due time.
        Index("ix_journey_runs_due", "status", "next_at"),
        Index("ix_journey_runs_customer", "tenant_id", "customer_id"),
        Index("ix_journey_runs_journey", "journey_id", "status"),
        # One run per journey and trigger event: a relayed event cannot start two runs.
        UniqueConstraint("journey_id", "trigger_event_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    journey_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    trigger_event_id: Mapped[str] = mapped_column(String(32))
    # active (a step is due at next_at), done (reached the end), exited, failed
    status: Mapped[str] = mapped_column(String(16))
    step_id: Mapped[str | None] = mapped_column(String(64))
    next_at: Mapped[datetime | None]
    # Held by a worker until then; a crashed worker's claim lapses.
    claimed_until: Mapped[datetime | None]
    # What started the run (the event's payload: cart_id, order_id ...) and what steps learnt.
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    steps_taken: Mapped[int] = mapped_column(Integer, default=0)
    exit_reason: Mapped[str | None] = mapped_column(String(200))
    entered_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    ended_at: Mapped[datetime | None]


class JourneyStepLog(Base):
    """One step a run took, with what came of it (for the customer's place and for audits)."""

    __tablename__ = "journey_step_log"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    step_id: Mapped[str] = mapped_column(String(64))
    step_type: Mapped[str] = mapped_column(String(24))
    # waiting, branched:then, sent, deferred, suppressed, set, tagged, opened, called, failed
    outcome: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]
    at: Mapped[datetime] = created_column()

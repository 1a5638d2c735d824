"""Tables of surveys: each tenant's survey settings, the invitations the worker sends, and the
answers (CSAT, NPS, CES) however they arrived.

``survey_responses`` is the table KPIs read (see ``docs/surveys.md``): one row per answer, with
its score, the channel it came by, the conversation or order it is about and the agent and
queue that served that conversation. ``dedupe_key`` is what "the same survey" means: the
invitation's subject (``csat:conversation:<id>``, ``nps:order:<id>``...), or for an answer
about nothing in particular the customer and the period it fell in; it is unique per tenant,
so the same survey is never answered twice, not even by two requests at once.

``survey_invitations`` is also the worker's durable queue: a ``pending`` row is sent once it is
due (``due_at``), then waits as ``sent`` for its answer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column

PENDING_PREDICATE = "status = 'pending'"


class SurveySettings(Base):
    """Which surveys a tenant sends, when, and the key that signs the links of its answer page.

    A tenant without a row sends no survey (answers through the API are still recorded).
    """

    __tablename__ = "survey_settings"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # CSAT (1-5) after a resolved conversation, on the channel it ended on.
    csat_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    csat_delay_minutes: Mapped[int] = mapped_column(Integer)
    # CES (1-7) after a resolved conversation, asked after the CSAT when both are on.
    ces_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    ces_delay_minutes: Mapped[int] = mapped_column(Integer)
    # NPS (0-10) on the customer's preferred channel: after an order is delivered or collected,
    # and/or periodically after their contacts; never twice within nps_period_days.
    nps_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    nps_after_order: Mapped[bool] = mapped_column(Boolean, default=True)
    nps_delay_days: Mapped[int] = mapped_column(Integer)
    nps_periodic: Mapped[bool] = mapped_column(Boolean, default=False)
    nps_period_days: Mapped[int] = mapped_column(Integer)
    # How long after it was sent a bare number from the customer answers an invitation.
    answer_window_hours: Mapped[int] = mapped_column(Integer)
    # HMAC key of the answer page's links (never shown).
    signing_key: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = created_column()


class SurveyInvitation(Base):
    """One survey for one customer about one subject: due, sent, answered or skipped."""

    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject_key"),
        # A customer's open invitations, looked up for each inbound message.
        Index("ix_survey_invitations_customer", "customer_id", "status"),
        # The worker's queue: invitations still to send.
        Index(
            "ix_survey_invitations_due",
            "due_at",
            postgresql_where=text(PENDING_PREDICATE),
            sqlite_where=text(PENDING_PREDICATE),
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    customer_id: Mapped[str] = mapped_column(String(32))
    # csat, nps, ces.
    kind: Mapped[str] = mapped_column(String(8))
    # What the survey asks about: csat:conversation:<id>, ces:conversation:<id>,
    # nps:order:<id>, nps:periodic:<customer id>:<period number>.
    subject_key: Mapped[str] = mapped_column(String(120))
    # The event that asked for it: conversation.resolved, order.delivered, order.collected.
    trigger: Mapped[str] = mapped_column(String(40))
    # CSAT and CES: the conversation asked about; NPS: the conversation the question went to.
    conversation_id: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(32))
    # Who served the conversation asked about (its assignee and queue when it was resolved).
    agent_id: Mapped[str | None] = mapped_column(String(32))
    queue_id: Mapped[str | None] = mapped_column(String(32))
    # pending (due_at), sent (waiting for the answer), answered, skipped (reason says why).
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime] = created_column()
    # Set when it had to wait for another open question of the same customer.
    postponed_at: Mapped[datetime | None]
    channel_id: Mapped[str | None] = mapped_column(String(32))
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    response_id: Mapped[str | None] = mapped_column(String(32))
    # Until when the customer's next message is kept as the answer's comment (answered by a
    # bare number in a message).
    comment_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()


class SurveyResponse(Base):
    """One answer: the score on the kind's scale, the comment, where it came from."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dedupe_key"),
        # KPIs: a tenant's answers of one kind in a date range.
        Index("ix_survey_responses_tenant_kind_answered", "tenant_id", "kind", "answered_at"),
        Index("ix_survey_responses_customer", "customer_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    # csat (1-5), nps (0-10), ces (1-7).
    kind: Mapped[str] = mapped_column(String(8))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    # The channel kind it was answered on (whatsapp, email, sms, web_chat...).
    channel: Mapped[str] = mapped_column(String(16))
    conversation_id: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(32))
    queue_id: Mapped[str | None] = mapped_column(String(32))
    invitation_id: Mapped[str | None] = mapped_column(String(32))
    # message (a reply on a channel), page (the answer page), api.
    source: Mapped[str] = mapped_column(String(8))
    # The inbound message that carried the answer (source message).
    message_id: Mapped[str | None] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(160))
    answered_at: Mapped[datetime] = created_column()
    created_at: Mapped[datetime] = created_column()

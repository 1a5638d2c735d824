"""analytics: survey settings, invitations and responses (CSAT, NPS, CES)

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

_PENDING = "status = 'pending'"


def upgrade() -> None:
    op.create_table(
        "survey_settings",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("csat_enabled", sa.Boolean(), nullable=False),
        sa.Column("csat_delay_minutes", sa.Integer(), nullable=False),
        sa.Column("ces_enabled", sa.Boolean(), nullable=False),
        sa.Column("ces_delay_minutes", sa.Integer(), nullable=False),
        sa.Column("nps_enabled", sa.Boolean(), nullable=False),
        sa.Column("nps_after_order", sa.Boolean(), nullable=False),
        sa.Column("nps_delay_days", sa.Integer(), nullable=False),
        sa.Column("nps_periodic", sa.Boolean(), nullable=False),
        sa.Column("nps_period_days", sa.Integer(), nullable=False),
        sa.Column("answer_window_hours", sa.Integer(), nullable=False),
        sa.Column("signing_key", sa.String(length=64), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_survey_settings")),
    )

    op.create_table(
        "survey_invitations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject_key", sa.String(length=120), nullable=False),
        sa.Column("trigger", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=True),
        sa.Column("order_id", sa.String(length=32), nullable=True),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("queue_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("due_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("postponed_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("channel_kind", sa.String(length=16), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("sent_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("response_id", sa.String(length=32), nullable=True),
        sa.Column("comment_until", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint(
            "tenant_id", "subject_key", name=op.f("uq_survey_invitations_tenant_id_subject_key")
        ),
    )
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_invitations_customer", ["customer_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_survey_invitations_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text(_PENDING),
            sqlite_where=sa.text(_PENDING),
        )
        batch_op.create_index(
            batch_op.f("ix_survey_invitations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "survey_responses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=True),
        sa.Column("order_id", sa.String(length=32), nullable=True),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("queue_id", sa.String(length=32), nullable=True),
        sa.Column("invitation_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("answered_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint(
            "tenant_id", "dedupe_key", name=op.f("uq_survey_responses_tenant_id_dedupe_key")
        ),
    )
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.create_index("ix_survey_responses_customer", ["customer_id"], unique=False)
        batch_op.create_index(
            "ix_survey_responses_tenant_kind_answered",
            ["tenant_id", "kind", "answered_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_responses_tenant_kind_answered")
        batch_op.drop_index("ix_survey_responses_customer")
    op.drop_table("survey_responses")
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_invitations_tenant_id"))
        batch_op.drop_index(
            "ix_survey_invitations_due",
            postgresql_where=sa.text(_PENDING),
            sqlite_where=sa.text(_PENDING),
        )
        batch_op.drop_index("ix_survey_invitations_customer")
    op.drop_table("survey_invitations")
    op.drop_table("survey_settings")

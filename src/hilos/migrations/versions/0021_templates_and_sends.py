"""engagement: message templates, sending settings and the sends log

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_message_templates_tenant_id_name")),
    )
    with op.batch_alter_table("message_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_templates_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "sends",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("channel_kind", sa.String(length=16), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("tried", sa.JSON(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("conversation_id", sa.String(length=32), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("unsubscribe_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("queued_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("retry_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_sends_tenant_id_idempotency_key")
        ),
        sa.UniqueConstraint("unsubscribe_token", name=op.f("uq_sends_unsubscribe_token")),
    )
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sends_customer_queued", ["tenant_id", "customer_id", "queued_at"], unique=False
        )
        batch_op.create_index("ix_sends_tenant_status", ["tenant_id", "status", "id"], unique=False)

    op.create_table(
        "engagement_settings",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("cap_messages", sa.Integer(), nullable=True),
        sa.Column("cap_days", sa.Integer(), nullable=True),
        sa.Column("cart_url", sa.String(length=500), nullable=True),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_engagement_settings_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_engagement_settings")),
    )


def downgrade() -> None:
    op.drop_table("engagement_settings")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index("ix_sends_tenant_status")
        batch_op.drop_index("ix_sends_customer_queued")

    op.drop_table("sends")
    with op.batch_alter_table("message_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_templates_tenant_id"))

    op.drop_table("message_templates")

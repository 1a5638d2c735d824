"""engagement: the virtual assistant's knowledge base, settings, turns and hand-offs

Revision ID: 0024
Revises: 0020
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0024"
down_revision = "0020"
branch_labels = None
depends_on = None

_PENDING = "status = 'pending'"
_ACTIVE = "ended_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "knowledge_articles",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_articles")),
    )
    with op.batch_alter_table("knowledge_articles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_knowledge_articles_tenant_language", ["tenant_id", "language"], unique=False
        )

    op.create_table(
        "assistant_settings",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("channel_kinds", sa.JSON(), nullable=False),
        sa.Column("confidence_threshold", sa.Float(), nullable=False),
        sa.Column("llm_base_url", sa.String(length=500), nullable=True),
        sa.Column("llm_model", sa.String(length=200), nullable=True),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_assistant_settings")),
    )

    op.create_table(
        "assistant_turns",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("channel_kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("intent", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("reply_message_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_turns")),
        sa.UniqueConstraint("message_id", name=op.f("uq_assistant_turns_message_id")),
    )
    with op.batch_alter_table("assistant_turns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assistant_turns_conversation", ["conversation_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_assistant_turns_pending",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text(_PENDING),
            sqlite_where=sa.text(_PENDING),
        )
        batch_op.create_index(
            batch_op.f("ix_assistant_turns_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "assistant_handoffs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("turn_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note_message_id", sa.String(length=32), nullable=True),
        sa.Column("queue_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_handoffs")),
    )
    with op.batch_alter_table("assistant_handoffs", schema=None) as batch_op:
        batch_op.create_index(
            "uq_assistant_handoffs_active_conversation",
            ["conversation_id"],
            unique=True,
            postgresql_where=sa.text(_ACTIVE),
            sqlite_where=sa.text(_ACTIVE),
        )
        batch_op.create_index(
            batch_op.f("ix_assistant_handoffs_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("assistant_handoffs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assistant_handoffs_tenant_id"))
        batch_op.drop_index(
            "uq_assistant_handoffs_active_conversation",
            postgresql_where=sa.text(_ACTIVE),
            sqlite_where=sa.text(_ACTIVE),
        )
    op.drop_table("assistant_handoffs")
    with op.batch_alter_table("assistant_turns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assistant_turns_tenant_id"))
        batch_op.drop_index(
            "ix_assistant_turns_pending",
            postgresql_where=sa.text(_PENDING),
            sqlite_where=sa.text(_PENDING),
        )
        batch_op.drop_index("ix_assistant_turns_conversation")
    op.drop_table("assistant_turns")
    op.drop_table("assistant_settings")
    with op.batch_alter_table("knowledge_articles", schema=None) as batch_op:
        batch_op.drop_index("ix_knowledge_articles_tenant_language")
    op.drop_table("knowledge_articles")

"""canned responses: the team's prepared answers, with variables

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 14:13:49.363151
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canned_responses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("shortcut", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_responses")),
        sa.UniqueConstraint(
            "tenant_id",
            "shortcut",
            "language",
            name=op.f("uq_canned_responses_tenant_id_shortcut_language"),
        ),
    )
    with op.batch_alter_table("canned_responses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_canned_responses_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("canned_responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canned_responses_tenant_id"))

    op.drop_table("canned_responses")

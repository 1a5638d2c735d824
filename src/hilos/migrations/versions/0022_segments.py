"""engagement: segments and their members

Revision ID: 0022
Revises: 0020
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_segments_tenant_id_name")),
    )
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.create_index("ix_segments_refreshed_at", ["refreshed_at"], unique=False)

    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("entered_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_members_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("segment_id", "customer_id", name=op.f("pk_segment_members")),
    )
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.create_index("ix_segment_members_customer_id", ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_members_customer_id")
    op.drop_table("segment_members")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_index("ix_segments_refreshed_at")
    op.drop_table("segments")

"""matching: blocking keys, duplicate suggestions, thresholds and model, online check, dedupe runs

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match_keys",
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "key", name=op.f("pk_match_keys")),
    )
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.create_index("ix_match_keys_tenant_key", ["tenant_id", "key"], unique=False)
    op.create_table(
        "match_suggestions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("left_customer_id", sa.String(length=32), nullable=False),
        sa.Column("right_customer_id", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("merge_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_suggestions")),
        sa.UniqueConstraint(
            "tenant_id",
            "left_customer_id",
            "right_customer_id",
            name=op.f("uq_match_suggestions_tenant_id_left_customer_id_right_customer_id"),
        ),
    )
    with op.batch_alter_table("match_suggestions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_match_suggestions_queue",
            ["tenant_id", "status", "probability", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_match_suggestions_right", ["tenant_id", "right_customer_id"], unique=False
        )
    op.create_table(
        "match_settings",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("review_threshold", sa.Float(), nullable=False),
        sa.Column("auto_merge_threshold", sa.Float(), nullable=True),
        sa.Column("model", sa.JSON(), nullable=True),
        sa.Column("trained_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("trained_profiles", sa.Integer(), nullable=True),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_match_settings")),
    )
    op.create_table(
        "match_check_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("after_updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("after_customer", sa.String(length=32), nullable=False),
        sa.Column("after_identity", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_match_check_cursor")),
    )
    op.create_table(
        "match_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("merged_clusters", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("started_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_runs")),
    )
    with op.batch_alter_table("match_runs", schema=None) as batch_op:
        batch_op.create_index("ix_match_runs_tenant_id", ["tenant_id", "id"], unique=False)
    # The online check reads changed profiles in (updated_at, id) order.
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_updated_at_id", ["updated_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_updated_at_id")
    with op.batch_alter_table("match_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_match_runs_tenant_id")
    op.drop_table("match_runs")
    op.drop_table("match_check_cursor")
    op.drop_table("match_settings")
    with op.batch_alter_table("match_suggestions", schema=None) as batch_op:
        batch_op.drop_index("ix_match_suggestions_right")
        batch_op.drop_index("ix_match_suggestions_queue")
    op.drop_table("match_suggestions")
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_match_keys_tenant_key")
    op.drop_table("match_keys")

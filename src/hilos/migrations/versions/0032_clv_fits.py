"""analytics: the CLV prediction each tenant's worker fitted, so web processes never fit

Revision ID: 0032
Revises: 0031
Create Date: 2026-11-22 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clv_fits",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("as_of", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("wanted_as_of", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("repeat_customers", sa.Integer(), nullable=False),
        sa.Column("average", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fitted_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "currency", "months", name=op.f("pk_clv_fits")),
    )


def downgrade() -> None:
    op.drop_table("clv_fits")

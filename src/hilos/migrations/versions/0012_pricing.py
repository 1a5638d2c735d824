"""commerce prices per channel and the price-parity policy

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_parity_policies",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("max_gap_percent", sa.Float(), nullable=False),
        sa.Column("allowances", sa.JSON(), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_price_parity_policies")),
    )
    op.create_table(
        "prices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("variant_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("compare_at_amount", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_prices_variant_id_variants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
        sa.UniqueConstraint(
            "tenant_id",
            "variant_id",
            "channel",
            "valid_from",
            name=op.f("uq_prices_tenant_id_variant_id_channel_valid_from"),
        ),
    )
    op.create_index("ix_prices_tenant_id_channel", "prices", ["tenant_id", "channel"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_prices_tenant_id_channel", table_name="prices")
    op.drop_table("prices")
    op.drop_table("price_parity_policies")

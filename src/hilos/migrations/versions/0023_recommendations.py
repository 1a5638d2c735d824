"""engagement: recommendations (product aliases, purchase baskets, co-occurrence counts)

Revision ID: 0023
Revises: 0020
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_aliases",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "product_id", name=op.f("pk_product_aliases")),
    )
    op.create_table(
        "purchase_baskets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("products", sa.JSON(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("placed_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_baskets")),
    )
    with op.batch_alter_table("purchase_baskets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_baskets_tenant_id_customer_id",
            ["tenant_id", "customer_id"],
            unique=False,
        )
    op.create_table(
        "product_basket_counts",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("baskets", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "product_id", name=op.f("pk_product_basket_counts")),
    )
    op.create_table(
        "product_pair_counts",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("other_id", sa.String(length=32), nullable=False),
        sa.Column("baskets", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "product_id", "other_id", name=op.f("pk_product_pair_counts")
        ),
    )


def downgrade() -> None:
    op.drop_table("product_pair_counts")
    op.drop_table("product_basket_counts")
    with op.batch_alter_table("purchase_baskets", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_baskets_tenant_id_customer_id")
    op.drop_table("purchase_baskets")
    op.drop_table("product_aliases")

"""shared carts: carts, their lines and each tenant's cart settings

Revision ID: 0016
Revises: 0014
Create Date: 2026-11-22 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None

OPEN_PREDICATE = "status IN ('active', 'abandoned')"
IDLE_PREDICATE = "line_count > 0"


def upgrade() -> None:
    op.create_table(
        "cart_settings",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("abandon_after_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_cart_settings")),
    )
    op.create_table(
        "carts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=True),
        sa.Column("merged_into_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("abandoned_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("converted_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("line_count >= 0", name=op.f("ck_carts_line_count_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_carts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carts")),
    )
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_carts_idle",
            ["status", "updated_at"],
            unique=False,
            postgresql_where=sa.text(IDLE_PREDICATE),
            sqlite_where=sa.text(IDLE_PREDICATE),
        )
        batch_op.create_index(
            "uq_carts_open_customer",
            ["tenant_id", "customer_id"],
            unique=True,
            postgresql_where=sa.text(OPEN_PREDICATE),
            sqlite_where=sa.text(OPEN_PREDICATE),
        )

    op.create_table(
        "cart_lines",
        sa.Column("cart_id", sa.String(length=32), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("variant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_lines_quantity_positive")),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_cart_lines_unit_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["cart_id"], ["carts.id"], name=op.f("fk_cart_lines_cart_id_carts")
        ),
        sa.PrimaryKeyConstraint("cart_id", "sku", name=op.f("pk_cart_lines")),
    )


def downgrade() -> None:
    op.drop_table("cart_lines")
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_index("uq_carts_open_customer")
        batch_op.drop_index("ix_carts_idle")
    op.drop_table("carts")
    op.drop_table("cart_settings")

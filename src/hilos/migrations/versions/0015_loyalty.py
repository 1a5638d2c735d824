"""loyalty: the program, customers' balances and the points ledger

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loyalty_programs",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("earn_rules", sa.JSON(), nullable=False),
        sa.Column("default_earn_rule", sa.JSON(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("redemption_values", sa.JSON(), nullable=False),
        sa.Column("min_redemption_points", sa.Integer(), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_loyalty_programs")),
    )
    op.create_table(
        "loyalty_balances",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("owed", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_earned", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("updated_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "available = 0 OR owed = 0", name=op.f("ck_loyalty_balances_available_or_owed")
        ),
        sa.CheckConstraint(
            "available >= 0", name=op.f("ck_loyalty_balances_available_not_negative")
        ),
        sa.CheckConstraint(
            "lifetime_earned >= 0",
            name=op.f("ck_loyalty_balances_lifetime_earned_not_negative"),
        ),
        sa.CheckConstraint("owed >= 0", name=op.f("ck_loyalty_balances_owed_not_negative")),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name=op.f("pk_loyalty_balances")),
    )
    op.create_table(
        "loyalty_movements",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_movements")),
        sa.UniqueConstraint(
            "tenant_id",
            "idempotency_key",
            name=op.f("uq_loyalty_movements_tenant_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("loyalty_movements", schema=None) as batch_op:
        batch_op.create_index("ix_loyalty_movements_customer", ["customer_id", "id"], unique=False)
        batch_op.create_index(
            "ix_loyalty_movements_reference", ["tenant_id", "reference"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("loyalty_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_loyalty_movements_reference")
        batch_op.drop_index("ix_loyalty_movements_customer")

    op.drop_table("loyalty_movements")
    op.drop_table("loyalty_balances")
    op.drop_table("loyalty_programs")

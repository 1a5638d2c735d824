"""reservations: an optional idempotency key, unique per tenant

Revision ID: 0018
Revises: 0014
Create Date: 2026-11-22 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A unique index rather than a constraint: SQLite adds it without copying the table, and
    # ON CONFLICT names it by its columns all the same. NULL keys never collide.
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.create_index(
            "uq_reservations_tenant_idempotency_key",
            ["tenant_id", "idempotency_key"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("uq_reservations_tenant_idempotency_key")
        batch_op.drop_column("idempotency_key")

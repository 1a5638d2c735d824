"""contact center: join the SLA and routing branches; index tasks by customer

Revision ID: 0007
Revises: 0005, 0006
Create Date: 2026-11-22 14:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = ("0005", "0006")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_customer_id"))

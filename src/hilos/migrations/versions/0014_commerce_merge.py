"""commerce: join the pricing and stock branches

Revision ID: 0014
Revises: 0012, 0013
Create Date: 2026-11-22 15:05:00
"""

from __future__ import annotations

revision = "0014"
down_revision = ("0012", "0013")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

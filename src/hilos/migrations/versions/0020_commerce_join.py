"""commerce: join loyalty, carts, outbound webhooks, reservation keys, orders and returns

Revision ID: 0020
Revises: 0015, 0016, 0017, 0018, 0019
Create Date: 2026-11-22 16:10:00
"""

from __future__ import annotations

revision = "0020"
down_revision = ("0015", "0016", "0017", "0018", "0019")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

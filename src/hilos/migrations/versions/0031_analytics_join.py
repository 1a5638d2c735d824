"""analytics: join surveys, reviews and the KPI indexes

Revision ID: 0031
Revises: 0028, 0029, 0030
Create Date: 2026-11-22 17:20:00
"""

from __future__ import annotations

revision = "0031"
down_revision = ("0028", "0029", "0030")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

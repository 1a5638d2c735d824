"""engagement: join templates and sends, segments, recommendations, the assistant, journeys
and campaigns

Revision ID: 0027
Revises: 0021, 0022, 0023, 0024, 0026
Create Date: 2026-11-22 16:40:00
"""

from __future__ import annotations

revision = "0027"
down_revision = ("0021", "0022", "0023", "0024", "0026")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

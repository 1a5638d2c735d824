"""analytics: the indexes KPIs read by (a tenant's rows by time on messages, orders, timeline
events, resolved conversations, carts and SLA targets; see ``analytics.kpi_models``)

Revision ID: 0030
Revises: 0027
Create Date: 2026-11-26 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0030"
down_revision = "0027"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_messages_tenant_sent", "messages", ["tenant_id", "sent_at"]),
    ("ix_orders_tenant_created", "orders", ["tenant_id", "created_at"]),
    (
        "ix_timeline_events_tenant_type_time",
        "timeline_events",
        ["tenant_id", "type", "occurred_at", "customer_id"],
    ),
    ("ix_conversations_tenant_resolved", "conversations", ["tenant_id", "resolved_at"]),
    ("ix_carts_tenant_created", "carts", ["tenant_id", "created_at"]),
    (
        "ix_conversation_slas_tenant_first_due",
        "conversation_slas",
        ["tenant_id", "first_response_due_at"],
    ),
    (
        "ix_conversation_slas_tenant_resolution_due",
        "conversation_slas",
        ["tenant_id", "resolution_due_at"],
    ),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)

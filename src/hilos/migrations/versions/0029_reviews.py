"""analytics: reviews and social mentions with their sentiment; the channel and sending time
of each scored message

Revision ID: 0029
Revises: 0027
Create Date: 2026-11-26 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hilos.core.db

revision = "0029"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.String(length=32), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint(
            "tenant_id",
            "source",
            "external_id",
            name=op.f("uq_reviews_tenant_id_source_external_id"),
        ),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            "ix_reviews_tenant_created", ["tenant_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_reviews_tenant_sku", ["tenant_id", "sku"], unique=False)

    op.create_table(
        "mentions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("created_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", hilos.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentions")),
        sa.UniqueConstraint(
            "tenant_id",
            "network",
            "external_id",
            name=op.f("uq_mentions_tenant_id_network_external_id"),
        ),
    )
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mentions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_mentions_tenant_created", ["tenant_id", "created_at"], unique=False
        )

    with op.batch_alter_table("message_sentiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel_kind", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("sent_at", hilos.core.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_message_sentiments_tenant_sent", ["tenant_id", "sent_at"], unique=False
        )
    # Messages scored before: their channel and sending time, from the message itself.
    op.execute(
        """
        UPDATE message_sentiments SET
            sent_at = (
                SELECT messages.sent_at FROM messages
                WHERE messages.id = message_sentiments.message_id
            ),
            channel_kind = (
                SELECT channels.kind FROM messages
                JOIN channels ON channels.id = messages.channel_id
                WHERE messages.id = message_sentiments.message_id
            )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("message_sentiments", schema=None) as batch_op:
        batch_op.drop_index("ix_message_sentiments_tenant_sent")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("channel_kind")

    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.drop_index("ix_mentions_tenant_created")
        batch_op.drop_index(batch_op.f("ix_mentions_tenant_id"))
    op.drop_table("mentions")

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_tenant_sku")
        batch_op.drop_index("ix_reviews_tenant_created")
        batch_op.drop_index(batch_op.f("ix_reviews_customer_id"))
        batch_op.drop_index(batch_op.f("ix_reviews_tenant_id"))
    op.drop_table("reviews")

"""Indexes the KPIs read by, on other domains' tables (no table of its own).

Each one serves a range scan of ``analytics.kpis`` over one tenant's rows between two moments,
which the owning domain never needs: its own indexes look rows up by customer, conversation or
due time. They live here, beside the queries they serve, so that the owner of the table does
not carry an index whose reason it cannot see; ``hilos.models`` imports this module so that
migrations and models agree (migration 0030 creates them).

The cost is one more B-tree entry per row written to those tables, the inbound message path
among them.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Index, Table

from hilos.commerce.cart_models import Cart
from hilos.commerce.order_models import Order
from hilos.conversations.models import Conversation, Message
from hilos.customers.models import TimelineEvent
from hilos.routing.sla_models import ConversationSla

_messages = cast(Table, Message.__table__)
_orders = cast(Table, Order.__table__)
_events = cast(Table, TimelineEvent.__table__)
_conversations = cast(Table, Conversation.__table__)
_carts = cast(Table, Cart.__table__)
_slas = cast(Table, ConversationSla.__table__)

# Turns, channel switches, calls and the multichannel share: a tenant's messages of a range.
MESSAGES_BY_TIME = Index("ix_messages_tenant_sent", _messages.c.tenant_id, _messages.c.sent_at)
# Order value, pickup share, cohorts, churn, CLV: a tenant's orders of a range.
ORDERS_BY_TIME = Index("ix_orders_tenant_created", _orders.c.tenant_id, _orders.c.created_at)
# Sessions (page and screen views) and the multichannel share.
# The customer is in the key too, so PostgreSQL answers from the index alone.
EVENTS_BY_TYPE_AND_TIME = Index(
    "ix_timeline_events_tenant_type_time",
    _events.c.tenant_id,
    _events.c.type,
    _events.c.occurred_at,
    _events.c.customer_id,
)
# Resolution times and repeat contacts: the conversations resolved in a range.
CONVERSATIONS_BY_RESOLUTION = Index(
    "ix_conversations_tenant_resolved", _conversations.c.tenant_id, _conversations.c.resolved_at
)
# SLA attainment: the targets due in a range.
FIRST_RESPONSES_DUE = Index(
    "ix_conversation_slas_tenant_first_due", _slas.c.tenant_id, _slas.c.first_response_due_at
)
RESOLUTIONS_DUE = Index(
    "ix_conversation_slas_tenant_resolution_due", _slas.c.tenant_id, _slas.c.resolution_due_at
)
# Cart conversion: the carts started in a range.
CARTS_BY_TIME = Index("ix_carts_tenant_created", _carts.c.tenant_id, _carts.c.created_at)

INDEXES = (
    MESSAGES_BY_TIME,
    ORDERS_BY_TIME,
    EVENTS_BY_TYPE_AND_TIME,
    CONVERSATIONS_BY_RESOLUTION,
    CARTS_BY_TIME,
    FIRST_RESPONSES_DUE,
    RESOLUTIONS_DUE,
)

"""The domain modules that register themselves with others when imported: merge participants
(rows that follow a customer merge) and outbox consumers (state kept in step with events).

The worker module imports this one, and the HTTP app imports the worker, so every process knows
every participant and consumer whichever code path it imports first: a merge in a worker-only
process moves loyalty points and orders too, and its relay runs every consumer.
"""

from __future__ import annotations

from hilos.analytics import reviews, sentiment, surveys
from hilos.commerce import carts, loyalty, returns
from hilos.conversations import service as conversations
from hilos.engagement import assistant, journeys, recommend, segments, sending
from hilos.integrations import service as integrations
from hilos.matching import service as matching
from hilos.routing import service as routing
from hilos.routing import sla
from hilos.tasks import service as tasks

REGISTERING_MODULES = (
    assistant,
    carts,
    conversations,
    integrations,
    journeys,
    recommend,
    loyalty,
    matching,
    returns,
    reviews,
    routing,
    segments,
    sending,
    sentiment,
    sla,
    surveys,
    tasks,
)

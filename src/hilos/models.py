"""Every domain's tables in one ``MetaData``, for Alembic and for the schema checks."""

from __future__ import annotations

from hilos.analytics import clv_models, kpi_models, review_models, survey_models
from hilos.analytics import models as analytics_models
from hilos.channels import models as channels_models
from hilos.commerce import (
    cart_models,
    loyalty_models,
    order_models,
    pricing_models,
    stock_models,
)
from hilos.commerce import models as commerce_models
from hilos.conversations import canned_models
from hilos.conversations import models as conversations_models
from hilos.core import models as core_models
from hilos.core.db import Base
from hilos.customers import models as customers_models
from hilos.engagement import (
    assistant_models,
    campaign_models,
    journey_models,
    recommend_models,
    segment_models,
    send_models,
    template_models,
)
from hilos.integrations import models as integrations_models
from hilos.matching import models as matching_models
from hilos.privacy import models as privacy_models
from hilos.routing import models as routing_models
from hilos.routing import sla_models
from hilos.tasks import models as tasks_models
from hilos.web import models as web_models

metadata = Base.metadata

__all__ = [
    "analytics_models",
    "assistant_models",
    "campaign_models",
    "canned_models",
    "clv_models",
    "cart_models",
    "channels_models",
    "commerce_models",
    "conversations_models",
    "core_models",
    "customers_models",
    "journey_models",
    "kpi_models",
    "recommend_models",
    "review_models",
    "integrations_models",
    "loyalty_models",
    "matching_models",
    "metadata",
    "order_models",
    "pricing_models",
    "privacy_models",
    "routing_models",
    "segment_models",
    "send_models",
    "sla_models",
    "stock_models",
    "survey_models",
    "tasks_models",
    "template_models",
    "web_models",
]

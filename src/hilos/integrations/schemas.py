"""Requests and responses of the webhook endpoints and deliveries API.

Shapes only: URLs and topics are checked by ``hilos.integrations.service`` so every caller gets
the same rules. The signing secret appears only in ``EndpointCreated`` and ``SecretRotated``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hilos.integrations import service
from hilos.integrations.models import WebhookDelivery, WebhookEndpoint

Url = Annotated[
    str,
    Field(min_length=1, max_length=service.MAX_URL_LENGTH, description="http:// or https://"),
]
Topics = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]],
    Field(
        min_length=1,
        max_length=service.MAX_TOPICS,
        description="exact topics (stock.changed), families (order.*) or * for every event",
    ),
]
Description = Annotated[str, Field(max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EndpointIn(Strict):
    url: Url
    topics: Topics
    description: Description = ""
    enabled: bool = True


class EndpointUpdate(Strict):
    url: Url | None = None
    topics: Topics | None = None
    description: Description | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _not_null(self) -> EndpointUpdate:
        for name in ("url", "topics", "description", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class RotateIn(Strict):
    keep_previous_seconds: int = Field(
        default=service.DEFAULT_KEEP_PREVIOUS_SECONDS,
        ge=0,
        le=service.MAX_KEEP_PREVIOUS_SECONDS,
        description="how long the old secret keeps signing too (0: stop at once)",
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    topics: list[str]
    enabled: bool
    disabled_reason: str | None = Field(description="why Hilos disabled it by itself")
    failing_since: datetime | None = Field(
        description="first failed attempt since the last delivered one"
    )
    previous_secret_expires_at: datetime | None = Field(
        description="until when the secret before the last rotation signs too"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            topics=list(endpoint.topics),
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            previous_secret_expires_at=endpoint.previous_secret_expires_at
            if endpoint.previous_secret
            else None,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="whsec_…: shown only now; keep it to verify signatures")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new whsec_… secret, shown only now")
    previous_secret_expires_at: datetime | None


class EndpointList(BaseModel):
    items: list[EndpointOut]


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str = Field(description="the payload's id and the webhook-id header")
    event_type: str
    status: str = Field(description="pending, sending, delivered or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_response: str | None = Field(description="the start of the receiver's last answer")
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_attempt_at=delivery.last_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            last_response=delivery.last_response,
            delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_before: str | None = Field(description="pass as before= for the next (older) page")

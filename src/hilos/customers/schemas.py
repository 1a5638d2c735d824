"""Requests and responses of the customers API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hilos.channels.kinds import ChannelKind
from hilos.customers.identities import IdentityKind

Purpose = Literal["marketing", "service"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IdentityIn(Strict):
    kind: IdentityKind
    value: str = Field(min_length=1, max_length=320)


class IdentityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    value: str
    created_at: datetime


class IdentifyRequest(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=50)
    name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    traits: dict[str, Any] = Field(default_factory=dict)


class IdentityConflict(BaseModel):
    kind: str
    value: str
    customer_id: str | None = None
    reason: str
    message: str | None = None


class IdentifyResponse(BaseModel):
    customer_id: str
    created: bool
    merged_customer_ids: list[str]
    linked: list[IdentityIn]
    conflicts: list[IdentityConflict]
    ignored: list[IdentityConflict]


class CustomerUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    traits: dict[str, Any] | None = None


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    language: str | None
    traits: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CustomerSummary(CustomerOut):
    identities: list[IdentityOut]


class CustomerPage(BaseModel):
    items: list[CustomerSummary]
    next_cursor: str | None


class ConsentIn(Strict):
    purpose: Purpose
    channel_kind: ChannelKind
    granted: bool
    source: str = Field(default="api", min_length=1, max_length=100)
    recorded_at: datetime | None = None


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    purpose: str
    channel_kind: str
    granted: bool
    source: str
    recorded_at: datetime


class ConversationBrief(BaseModel):
    id: str
    status: str
    channels: list[str]
    assignee_id: str | None
    last_message_at: datetime


class TimelineItem(BaseModel):
    id: str
    type: str
    name: str | None = None
    occurred_at: datetime
    channel_kind: str | None = None
    conversation_id: str | None = None
    direction: str | None = None
    text: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class CartLineBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    name: str
    quantity: int
    # Minor units of ``currency``, from the price list of ``channel``.
    unit_price: int
    currency: str
    channel: str


class CartBrief(BaseModel):
    """The customer's open cart, shared by every channel (``hilos.commerce.carts``)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str
    # The sales channel that changed the cart last.
    channel: str
    currency: str | None
    total: int
    lines: list[CartLineBrief]
    updated_at: datetime


class LoyaltyBrief(BaseModel):
    """The customer's loyalty points and tier (``hilos.commerce.loyalty``)."""

    # Negative while the customer owes points a return took back after they were spent.
    balance: int
    lifetime_earned: int
    tier: str | None
    tier_name: str | None
    next_tier: str | None
    next_tier_name: str | None
    points_to_next_tier: int | None


class OrderBrief(BaseModel):
    """One of the customer's latest orders (``hilos.commerce.orders``)."""

    id: str
    number: str
    status: str
    channel: str
    # Minor units of ``currency``.
    total: int
    currency: str
    created_at: datetime


class RecommendationBrief(BaseModel):
    """A product to offer the customer, and why (``hilos.engagement.recommend``)."""

    sku: str
    name: str
    score: float
    # bought_together:<product_id>, mentioned, viewed, popular
    reasons: list[str]
    # Names of the products it is often bought with.
    bought_with: list[str] = []


class JourneyPlace(BaseModel):
    """Where the customer is in one journey (``hilos.engagement.journeys``)."""

    run_id: str
    journey_id: str
    journey: str
    # active, done, exited, failed
    status: str
    step_id: str | None
    next_at: datetime | None
    exit_reason: str | None
    entered_at: datetime


class Customer360(CustomerOut):
    identities: list[IdentityOut]
    consents: list[ConsentOut]
    open_conversations: list[ConversationBrief]
    timeline: list[TimelineItem]
    active_cart: CartBrief | None = None
    # None when the tenant has no loyalty program.
    loyalty: LoyaltyBrief | None = None
    # The latest five, newest first.
    recent_orders: list[OrderBrief] = []
    # The best five, best first.
    recommendations: list[RecommendationBrief] = []
    # The latest five journeys the customer entered, newest first.
    journeys: list[JourneyPlace] = []


class MergeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    survivor_id: str
    merged_id: str
    reason: str
    moved: dict[str, Any]
    created_at: datetime
    undone_at: datetime | None


class UnmergeRequest(Strict):
    merge_id: str | None = None


class BlockedValueIn(Strict):
    kind: IdentityKind
    value: str = Field(min_length=1, max_length=320)
    reason: str | None = Field(default=None, max_length=200)


class BlockedValueOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    value: str
    reason: str | None
    created_at: datetime

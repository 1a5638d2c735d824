"""Requests and responses of the loyalty API: the program, movements, a customer's points.

Rates are points per whole currency unit (``{"EUR": 1}``: a point per euro), with up to four
decimals; a point's redemption value is whole minor units (``{"EUR": 1}``: a cent a point).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from hilos.commerce.loyalty import (
    CHANNEL_PATTERN,
    MAX_AMOUNT,
    MAX_CHANNELS,
    MAX_POINTS,
    MAX_RATE,
    MAX_REDEMPTION_VALUE,
    MAX_TIERS,
    TIER_CODE_PATTERN,
)
from hilos.commerce.schemas import Currency, Strict
from hilos.customers.schemas import IdentityIn

SalesChannel = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CHANNEL_PATTERN,
        description="a sales channel: web, app, marketplace, callcenter, a store's code",
    ),
]
Rate = Annotated[
    Decimal,
    Field(ge=0, le=MAX_RATE, decimal_places=4, description="points per whole currency unit"),
]
EarnRule = Annotated[
    dict[Currency, Rate], Field(max_length=50, description='points per unit: {"EUR": 1}')
]


class TierIn(Strict):
    code: str = Field(
        pattern=TIER_CODE_PATTERN, description="lower case; the customer's tier trait"
    )
    name: str = Field(min_length=1, max_length=100)
    threshold_points: int = Field(
        ge=0, le=MAX_POINTS, description="lifetime earned points that reach the tier"
    )
    routing_priority: int = Field(
        default=0, ge=0, le=10, description="priority points routing gives its customers"
    )


class ProgramIn(Strict):
    earn_rules: dict[SalesChannel, EarnRule] = Field(default_factory=dict, max_length=MAX_CHANNELS)
    default_earn_rule: EarnRule = Field(
        default_factory=dict, description="the rule of every channel earn_rules does not name"
    )
    tiers: list[TierIn] = Field(
        default_factory=list, max_length=MAX_TIERS, description="by increasing threshold"
    )
    redemption_values: dict[Currency, Annotated[int, Field(ge=1, le=MAX_REDEMPTION_VALUE)]] = Field(
        default_factory=dict, description="minor units one point is worth"
    )
    min_redemption_points: int | None = Field(default=None, ge=1, le=MAX_POINTS)


class TierOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    threshold_points: int
    routing_priority: int


class ProgramOut(BaseModel):
    earn_rules: dict[str, dict[str, float]]
    default_earn_rule: dict[str, float]
    tiers: list[TierOut]
    redemption_values: dict[str, int]
    min_redemption_points: int | None
    updated_at: datetime


class CustomerByIdentities(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=20)


class MovementIn(Strict):
    """One of ``customer_id`` or ``customer`` (identities, resolved as ``identify`` does)."""

    customer_id: str | None = Field(default=None, min_length=1, max_length=32)
    customer: CustomerByIdentities | None = None
    kind: Literal["earn", "redeem", "adjust"]
    points: int | None = Field(
        default=None,
        ge=-MAX_POINTS,
        le=MAX_POINTS,
        description="earn: points (or give amount); redeem: points; adjust: signed points",
    )
    amount: int | None = Field(
        default=None, ge=0, le=MAX_AMOUNT, description="earn: the purchase, in minor units"
    )
    currency: Currency | None = None
    channel: SalesChannel | None = None
    reference: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=200)
    idempotency_key: str = Field(min_length=1, max_length=200)


class MovementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    kind: str
    points: int
    balance_after: int
    reference: str | None
    reason: str | None
    channel: str | None
    amount: int | None = Field(
        description="earn: the purchase; redeem: the discount; reverse: the amount returned"
    )
    currency: str | None
    idempotency_key: str
    created_at: datetime


class CustomerLoyaltyOut(BaseModel):
    customer_id: str
    balance: int = Field(description="negative while the customer owes reversed points")
    lifetime_earned: int
    tier: str | None
    tier_name: str | None
    next_tier: str | None
    next_tier_name: str | None
    points_to_next_tier: int | None
    movements: list[MovementOut]
    next_before: str | None

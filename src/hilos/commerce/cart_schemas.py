"""Requests and responses of the carts API.

A cart line is set for a customer named either by ``customer_id`` or by the identities the
channel has at hand (``customer.identities``: the app's device id, the agent's phone number,
the clerk's loyalty card), resolved like ``POST /v1/customers/identify``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hilos.commerce import carts
from hilos.commerce.schemas import ChannelCode, Sku
from hilos.customers.schemas import IdentityIn


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CartCustomer(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=200)


class CartLineIn(Strict):
    """Set the quantity of one SKU in the customer's open cart (0 removes the line)."""

    customer: CartCustomer | None = None
    customer_id: str | None = Field(default=None, min_length=1, max_length=32)
    channel: ChannelCode
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=0, le=carts.MAX_LINE_QUANTITY)] = Field(
        description="the line's new quantity; 0 removes it"
    )
    expected_version: int | None = Field(
        default=None,
        ge=0,
        description="the cart version the client saw (0: no cart yet); another is a 409",
    )

    @model_validator(mode="after")
    def one_customer(self) -> CartLineIn:
        if (self.customer is None) == (self.customer_id is None):
            raise ValueError("name the customer by customer_id or by customer.identities")
        return self


class CartLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    name: str
    quantity: int
    unit_price: int = Field(description="minor units of currency")
    currency: str
    channel: str = Field(description="the sales channel whose price list priced the line")
    total: int
    updated_at: datetime


class CartOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    status: str = Field(description="active, abandoned, converted, closed or merged")
    channel: str = Field(description="the sales channel that changed the cart last")
    version: int
    currency: str | None
    total: int = Field(description="minor units of currency")
    lines: list[CartLineOut]
    created_at: datetime
    updated_at: datetime
    abandoned_at: datetime | None
    converted_at: datetime | None
    closed_at: datetime | None
    order_id: str | None


class CartSettingsIn(Strict):
    abandon_after_minutes: int = Field(
        ge=carts.MIN_ABANDON_AFTER_MINUTES,
        le=carts.MAX_ABANDON_AFTER_MINUTES,
        description="minutes without a change after which an active cart is abandoned",
    )


class CartSettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    abandon_after_minutes: int

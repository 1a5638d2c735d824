"""Requests and responses of the catalog, locations and prices API.

Codes are what bodies use to name things (the issue's contract): a SKU, a location's code, a
sales channel's code. A sales channel is a free-form code, lowercase, optionally qualified by a
location code after a colon: ``web``, ``app``, ``marketplace``, ``callcenter``, ``store:MAD01``.
There is no table of channels; a channel exists once something is priced in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    model_validator,
)

from hilos.commerce.catalog import check_gtin, check_opening_hours
from hilos.commerce.pricing import check_currency

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$"
LOCATION_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
CHANNEL_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}(:[A-Za-z0-9][A-Za-z0-9_.\-]{0,30})?$"

Sku = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=SKU_PATTERN,
        description="letters, digits and _ . - /, up to 64",
    ),
]
LocationCode = Annotated[str, Field(min_length=1, max_length=64, pattern=LOCATION_CODE_PATTERN)]
ChannelCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CHANNEL_PATTERN,
        description="a sales channel: web, app, marketplace, callcenter, store:<location code>",
    ),
]
Gtin = Annotated[
    str,
    Field(description="GTIN-8, 12 (UPC), 13 (EAN) or 14, with a valid check digit"),
    AfterValidator(check_gtin),
]
Currency = Annotated[
    str, Field(description="ISO 4217 code, e.g. EUR"), AfterValidator(check_currency)
]
Name = Annotated[str, Field(min_length=1, max_length=300)]
Attributes = Annotated[dict[str, str | int | float | bool], Field(max_length=50)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- products -------------------------------------------------------------------------------


class VariantIn(Strict):
    sku: Sku
    name: Name | None = Field(default=None, description="defaults to the product's name")
    gtin: Gtin | None = None
    attributes: Attributes = Field(default_factory=dict)


class ProductIn(Strict):
    """A product with one variant (``sku`` and its fields) or several (``variants``)."""

    name: Name
    sku: Sku | None = None
    gtin: Gtin | None = None
    attributes: Attributes = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=5000)
    images: list[HttpUrl] = Field(default_factory=list, max_length=20)
    variants: list[VariantIn] | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def one_shape(self) -> ProductIn:
        if self.variants is None:
            if self.sku is None:
                raise ValueError("give sku (one variant) or variants")
        elif self.sku is not None or self.gtin is not None or self.attributes:
            raise ValueError("give sku, gtin and attributes inside variants, not beside them")
        return self

    def variant_list(self) -> list[VariantIn]:
        if self.variants is not None:
            return self.variants
        assert self.sku is not None
        return [VariantIn(sku=self.sku, gtin=self.gtin, attributes=self.attributes)]


class VariantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sku: str
    gtin: str | None
    name: str
    attributes: dict[str, Any]
    # The sales channels where the SKU has a price now: where it is listed.
    channels: list[str] = []


class ProductOut(BaseModel):
    id: str
    name: str
    description: str | None
    images: list[str]
    variants: list[VariantOut]
    created_at: datetime
    updated_at: datetime


# --- locations ------------------------------------------------------------------------------


class LocationIn(Strict):
    code: LocationCode
    name: Name
    kind: Literal["warehouse", "store"]
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    opening_hours: Annotated[dict[str, Any], AfterValidator(check_opening_hours)] = Field(
        default_factory=dict,
        description='{"mon": [["10:00", "14:00"], ["17:00", "21:00"]], ...}, tenant time zone',
    )
    pickup: bool = Field(default=False, description="customers collect orders here (stores)")
    ship_from_store: bool = Field(default=False, description="orders ship from here (stores)")

    @model_validator(mode="after")
    def coherent(self) -> LocationIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        if self.kind == "warehouse" and (self.pickup or self.ship_from_store):
            # A warehouse ships by definition and serves no counter: a flag set on one is a
            # mistake in the caller's data, refused rather than silently dropped.
            raise ValueError("pickup and ship_from_store are for stores; a warehouse has neither")
        return self


class LocationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    kind: str
    lat: float | None
    lon: float | None
    address: str | None
    opening_hours: dict[str, Any]
    pickup: bool
    ship_from_store: bool
    created_at: datetime


# --- prices ---------------------------------------------------------------------------------


class PriceIn(Strict):
    sku: Sku
    channel: ChannelCode
    amount: int = Field(ge=0, le=10**15, description="minor units of currency (cents)")
    currency: Currency
    compare_at_amount: int | None = Field(default=None, ge=0, le=10**15)
    valid_from: AwareDatetime | None = Field(default=None, description="empty: always valid")
    valid_until: AwareDatetime | None = Field(default=None, description="empty: open-ended")

    @model_validator(mode="after")
    def coherent(self) -> PriceIn:
        if self.compare_at_amount is not None and self.compare_at_amount <= self.amount:
            raise ValueError("compare_at_amount must be greater than amount")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


class PriceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sku: str
    channel: str
    amount: int
    currency: str
    compare_at_amount: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    updated_at: datetime


class ParityPolicyIn(Strict):
    max_gap_percent: float = Field(default=0, ge=0, le=1000)
    allowances: dict[ChannelCode, Annotated[float, Field(ge=0, le=1000)]] = Field(
        default_factory=dict, max_length=200
    )


class ParityPolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    max_gap_percent: float
    allowances: dict[str, float]


class ParityPrice(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    amount: int
    currency: str
    gap_percent: float | None
    allowed_percent: float
    exceeds: bool


class ParityItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    currency: str
    reference_amount: int
    prices: list[ParityPrice]
    gap_percent: float | None
    exceeds: bool
    missing_channels: list[str]


class ParityReport(BaseModel):
    at: datetime
    policy: ParityPolicyOut
    items: list[ParityItem]

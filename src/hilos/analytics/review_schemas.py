"""Requests and responses of the reviews, mentions and sentiment API."""

from __future__ import annotations

from datetime import datetime

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from hilos.customers.schemas import IdentityIn, Strict

# web, google, trustpilot, instagram, x...: lower case, as a program would spell them.
_SOURCE = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
_LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,4})?$"


class ReviewCustomer(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=10)


class ReviewIn(Strict):
    source: str = Field(pattern=_SOURCE, description="web, google, trustpilot...")
    external_id: str = Field(min_length=1, max_length=200, description="the source's review id")
    text: str = Field(min_length=1, max_length=20_000)
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    rating: int | None = Field(default=None, ge=1, le=5, description="stars, 1 to 5")
    language: str | None = Field(default=None, pattern=_LANGUAGE, description="es, en...")
    author: str | None = Field(default=None, max_length=200)
    customer: ReviewCustomer | None = None
    created_at: datetime | None = Field(default=None, description="when it was written")


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    source: str
    external_id: str
    sku: str | None
    product_id: str | None
    rating: int | None
    text: str
    language: str | None
    author: str | None
    customer_id: str | None
    score: float
    label: str
    created_at: datetime
    received_at: datetime


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None


class MentionIn(Strict):
    network: str = Field(pattern=_SOURCE, description="instagram, x, facebook, tiktok...")
    external_id: str = Field(min_length=1, max_length=200, description="the network's post id")
    author: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=20_000)
    url: AnyHttpUrl = Field(max_length=2000)
    created_at: datetime
    language: str | None = Field(default=None, pattern=_LANGUAGE)


class MentionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    network: str
    external_id: str
    author: str
    text: str
    url: str
    language: str | None
    score: float
    label: str
    created_at: datetime
    received_at: datetime


class MentionPage(BaseModel):
    items: list[MentionOut]
    next_cursor: str | None


class LabelCounts(BaseModel):
    """How many were negative, neutral and positive, their shares (``None`` when there were
    none) and their average score."""

    count: int
    negative: int
    neutral: int
    positive: int
    shares: dict[str, float | None]
    average_score: float | None


class RatedCounts(LabelCounts):
    # Stars: the average of the reviews that had them (``rated`` of them).
    average_rating: float | None
    rated: int


class SourceReviews(RatedCounts):
    source: str


class ProductReviews(RatedCounts):
    sku: str
    name: str | None


class ReviewSummary(RatedCounts):
    by_source: list[SourceReviews]
    products: list[ProductReviews]


class NetworkMentions(LabelCounts):
    network: str


class MentionSummary(LabelCounts):
    by_network: list[NetworkMentions]


class SentimentSummary(BaseModel):
    messages: LabelCounts
    reviews: LabelCounts
    mentions: LabelCounts
    overall: LabelCounts

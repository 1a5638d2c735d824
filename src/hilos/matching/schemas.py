"""Requests and responses of the matching API: the review queue, its decisions, the settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SuggestionStatus = Literal["pending", "accepted", "rejected", "auto_merged", "superseded"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EvidenceOut(BaseModel):
    field: str
    level: str
    # log2 Bayes factor this comparison added; negative counts against the match.
    weight: float


class SuggestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    left_customer_id: str
    right_customer_id: str
    probability: float
    match_weight: float
    status: SuggestionStatus
    evidence: list[EvidenceOut]
    decided_by: str | None
    decided_at: datetime | None
    merge_id: str | None
    created_at: datetime
    updated_at: datetime


class SuggestionPage(BaseModel):
    items: list[SuggestionOut]
    next_cursor: str | None


class ProfileOut(BaseModel):
    """One side of a suggestion: what was compared."""

    id: str
    name: str | None
    given_name: str | None
    surnames: str | None
    birth_date: date | None
    street: str | None
    postcode: str | None
    city: str | None
    emails: list[str]
    phones: list[str]
    created_at: datetime
    # Set when the profile was merged since (the customer it now belongs to).
    merged_into_id: str | None


class SuggestionDetail(SuggestionOut):
    left: ProfileOut
    right: ProfileOut


class DecisionOut(SuggestionOut):
    # False when the suggestion already had this decision (the call changed nothing).
    changed: bool


class MatchingSettingsOut(BaseModel):
    review_threshold: float
    auto_merge_threshold: float | None
    trained_at: datetime | None
    trained_profiles: int | None


class MatchingSettingsUpdate(Strict):
    review_threshold: float | None = Field(default=None, gt=0, le=1)
    # null turns automatic merges off; when set, at least the review threshold.
    auto_merge_threshold: float | None = Field(default=None, gt=0, le=1)


class TrainOut(MatchingSettingsOut):
    pass

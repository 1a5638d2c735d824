"""Segment's message shapes (the fields Hilos uses; others are accepted and ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Annotated[str | int, Field(union_mode="left_to_right")]


class SegmentMessage(BaseModel):
    """The common fields of every call (https://segment.com/docs/connections/spec/common/)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: Id | None = Field(default=None, alias="userId")
    anonymous_id: Id | None = Field(default=None, alias="anonymousId")
    message_id: str | None = Field(default=None, alias="messageId", max_length=200)
    timestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> SegmentMessage:
        if self.user_id in (None, "") and self.anonymous_id in (None, ""):
            raise ValueError("either userId or anonymousId is required")
        return self


class IdentifyCall(SegmentMessage):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(SegmentMessage):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class PageCall(SegmentMessage):
    type: Literal["page"] = "page"
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class ScreenCall(SegmentMessage):
    type: Literal["screen"] = "screen"
    name: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class AliasCall(SegmentMessage):
    type: Literal["alias"] = "alias"
    previous_id: Id = Field(alias="previousId")

    @model_validator(mode="after")
    def _needs_user(self) -> AliasCall:
        if self.user_id in (None, ""):
            raise ValueError("alias needs userId")
        return self


AnyCall = Annotated[
    IdentifyCall | TrackCall | PageCall | ScreenCall | AliasCall, Field(discriminator="type")
]


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[AnyCall] = Field(min_length=1, max_length=1000)
    context: dict[str, Any] = Field(default_factory=dict)


class CallResult(BaseModel):
    success: bool = True
    message_id: str | None = Field(default=None, serialization_alias="messageId")
    customer_id: str
    event_id: str
    duplicate: bool


class BatchResult(BaseModel):
    success: bool = True
    results: list[CallResult]

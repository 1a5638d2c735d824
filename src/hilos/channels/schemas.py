"""Requests and responses for channel instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hilos.channels.kinds import ChannelKind, redact_config


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: ChannelKind
    name: str
    config: dict[str, Any]
    created_at: datetime

    @field_validator("config")
    @classmethod
    def _redacted(cls, value: dict[str, Any]) -> dict[str, Any]:
        return redact_config(value)

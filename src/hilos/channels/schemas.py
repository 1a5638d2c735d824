"""Requests and responses for channel instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hilos.channels.kinds import (
    DEFAULT_PROVIDER,
    KIND_ALIASES,
    ChannelKind,
    missing_config,
    redact_config,
)

_PROVIDERS = {"whatsapp": ("meta", "twilio"), "phone": ("twilio", "generic")}


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _medium_and_provider(cls, data: Any) -> Any:
        """``twilio_sms`` is an ``sms`` channel carried by Twilio, and so on (KIND_ALIASES)."""
        if isinstance(data, dict) and data.get("kind") in KIND_ALIASES:
            kind, provider = KIND_ALIASES[data["kind"]]
            config = dict(data.get("config") or {})
            if provider is not None:
                config.setdefault("provider", provider)
            data = {**data, "kind": kind, "config": config}
        return data

    @model_validator(mode="after")
    def _known_provider(self) -> ChannelCreate:
        check_provider(self.kind, self.config)
        return self


def check_provider(kind: str, config: dict[str, Any]) -> None:
    provider = config.get("provider", DEFAULT_PROVIDER.get(kind))
    allowed = _PROVIDERS.get(kind)
    if allowed is not None and provider not in allowed:
        raise ValueError(f"config.provider of a {kind} channel is one of {', '.join(allowed)}")


class ChannelUpdate(BaseModel):
    """New settings (merged into the old ones; a key set to null is removed), a new name, or
    disabling: a disabled channel's webhooks answer 404 and its replies are not sent."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    disabled: bool | None = None


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: ChannelKind
    name: str
    config: dict[str, Any]
    created_at: datetime
    disabled_at: datetime | None = None
    # Settings still needed before the provider's webhooks are accepted and replies sent. A
    # channel fed only through ``POST /v1/messages/inbound`` needs none.
    missing_config: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _what_is_missing(cls, data: Any) -> Any:
        kind, config = getattr(data, "kind", None), getattr(data, "config", None)
        if kind is not None and isinstance(config, dict):
            return {
                "id": data.id,
                "kind": kind,
                "name": data.name,
                "config": config,
                "created_at": data.created_at,
                "disabled_at": data.disabled_at,
                "missing_config": missing_config(kind, config),
            }
        return data

    @field_validator("config")
    @classmethod
    def _redacted(cls, value: dict[str, Any]) -> dict[str, Any]:
        return redact_config(value)

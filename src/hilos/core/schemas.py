"""Requests and responses for tenants, users and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import available_timezones

import phonenumbers
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

Role = Literal["admin", "supervisor", "agent"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    default_region: str
    timezone: str
    locale: str
    reopen_window_seconds: int
    identity_limits: dict[str, int]
    created_at: datetime


class TenantUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_region: str | None = None
    timezone: str | None = None
    locale: Literal["es", "en"] | None = None
    reopen_window_seconds: int | None = Field(default=None, ge=0, le=90 * 86_400)
    identity_limits: dict[str, int] | None = None

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}: use an ISO 3166 code such as ES or MX")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in available_timezones():
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Madrid")
        return value

    @field_validator("identity_limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(limit < 1 for limit in value.values()):
            raise ValueError("every identity limit must be at least 1")
        return value

    @model_validator(mode="after")
    def _no_nulls(self) -> TenantUpdate:
        # Every setting has a value: ``null`` would clear it (a 500 from the database), and a
        # setting left out of the body is the way to leave it as it is.
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null: leave it out to keep it")
        return self


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = "agent"
    # The user the key acts as (their visibility); none for an integration's key.
    user_id: str | None = Field(default=None, max_length=32)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: Role
    prefix: str
    user_id: str | None = None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; shown only in this response.")


class UserCreate(Strict):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    role: Role = "agent"
    password: str = Field(min_length=8, max_length=200)
    locale: Literal["es", "en"] | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    role: Role
    locale: str | None
    created_at: datetime

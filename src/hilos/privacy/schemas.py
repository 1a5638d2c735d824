"""Requests and responses of the privacy API: erasure, export and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Why, in the administrator's words (a ticket number): kept in the audit log, so it must
    # not repeat the person's data.
    reason: str | None = Field(default=None, max_length=500)


class ErasureOut(BaseModel):
    customer_id: str
    customer_ids: list[str] = Field(description="The customer and the profiles merged into it.")
    erased_at: datetime
    already_erased: bool = Field(description="True when an earlier call erased the customer.")
    audit_id: str = Field(description="The audit log entry of the erasure.")
    rows: dict[str, int] = Field(description="Rows deleted or scrubbed, per table.")


class ActorOut(BaseModel):
    type: str = Field(description="api_key, user, system or cli")
    key_id: str | None
    user_id: str | None
    role: str | None


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    occurred_at: datetime
    actor: ActorOut
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None

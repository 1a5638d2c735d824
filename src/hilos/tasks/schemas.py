"""Requests and responses of the tasks API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskStatus = Literal["open", "done", "cancelled"]


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    status: str
    customer_id: str | None
    conversation_id: str | None
    # What caused the task (a call-back's call entry, a message id).
    source_id: str
    assignee_id: str | None
    # Who the task is about (a caller's name and number); the kind says what to do.
    title: str
    data: dict[str, Any]
    due_at: datetime
    created_at: datetime
    completed_at: datetime | None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class TaskUpdate(BaseModel):
    """Close, cancel or reopen a task, or hand it to someone (``assignee_id: null`` unassigns)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    status: TaskStatus | None = None
    assignee_id: str | None = Field(default=None, max_length=32)

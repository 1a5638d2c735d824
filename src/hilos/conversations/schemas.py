"""Requests and responses of the conversations API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from hilos.customers.identities import IdentityKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Attachment(Strict):
    type: Literal["image", "audio", "video", "file", "location", "contact", "sticker"]
    url: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=300)
    mime_type: str | None = Field(default=None, max_length=200)
    size: int | None = Field(default=None, ge=0)
    data: dict[str, Any] | None = None


class Sender(Strict):
    kind: IdentityKind
    value: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class InboundMessage(Strict):
    channel_id: str = Field(min_length=1, max_length=32)
    external_id: str = Field(min_length=1, max_length=200)
    sender: Sender
    text: str = Field(default="", max_length=20_000)
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)
    sent_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _has_content(self) -> InboundMessage:
        if not self.text and not self.attachments:
            raise ValueError("a message needs text or at least one attachment")
        return self


class InboundResult(BaseModel):
    message_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool


class ChannelRef(BaseModel):
    id: str
    kind: str | None


class SlaOut(BaseModel):
    """The conversation's SLA clock (``routing.sla``); all null when no policy applies.

    ``state``: ok, warning, breached, paused (pending on the customer), met, or null.
    ``remaining_seconds``: open time left on the nearest running target, negative once overdue.
    """

    model_config = ConfigDict(from_attributes=True)

    policy_id: str | None = None
    state: Literal["ok", "warning", "breached", "paused", "met"] | None = None
    breached: bool = False
    remaining_seconds: float | None = None
    first_response_due_at: datetime | None = None
    first_responded_at: datetime | None = None
    next_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None


class SentimentOut(BaseModel):
    """How the customer's latest scored message sounded (``analytics.sentiment``)."""

    score: float
    label: Literal["negative", "neutral", "positive"]


class ConversationOut(BaseModel):
    id: str
    customer_id: str
    status: str
    snoozed_until: datetime | None
    assignee_id: str | None
    channels: list[ChannelRef]
    last_channel_id: str | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime
    resolved_at: datetime | None
    merged_into_id: str | None
    # Routing: the agent the conversation is assigned to, and the queue it is in (or was last
    # routed through).
    assignee: str | None = None
    queue: str | None = None
    sla: SlaOut = Field(default_factory=SlaOut)
    # Null until a customer message with text has been scored.
    sentiment: SentimentOut | None = None


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    channel_id: str | None
    direction: str
    external_id: str | None
    address: str | None
    author_user_id: str | None
    text: str
    attachments: list[dict[str, Any]]
    kind: str = "message"
    data: dict[str, Any] | None = None
    status: str | None
    status_at: datetime | None = None
    error: dict[str, Any] | None = None
    sent_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class TemplateRef(Strict):
    """An approved message template (WhatsApp): sendable outside the 24-hour window."""

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field(min_length=2, max_length=15, pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
    # The body's {{1}}, {{2}}, ... in order.
    parameters: list[str] = Field(default_factory=list, max_length=30)


class ReplyIn(Strict):
    text: str = Field(default="", max_length=20_000)
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)
    template: TemplateRef | None = None
    private: bool = False
    channel_id: str | None = Field(default=None, max_length=32)
    author_user_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _has_content(self) -> ReplyIn:
        if not self.text and not self.attachments and self.template is None:
            raise ValueError("a reply needs text, an attachment or a template")
        if self.template is not None and self.private:
            raise ValueError("a private note cannot be a template")
        return self


class ReceiptIn(Strict):
    """A delivery receipt reported by an integrator (for channels Hilos does not send on)."""

    status: Literal["sent", "delivered", "read", "failed"]
    occurred_at: AwareDatetime | None = None
    error: dict[str, Any] | None = None


class ConversationUpdate(Strict):
    status: Literal["open", "pending", "snoozed", "resolved"] | None = None
    snoozed_until: AwareDatetime | None = None
    assignee_id: str | None = Field(default=None, max_length=32)

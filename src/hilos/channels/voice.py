"""Phone calls from any telephony system, as JSON call events (a ``phone`` channel with
``provider: generic``).

A PBX, a cloud contact center or a small script posts each thing that happens to a call to
``/webhooks/voice/{channel_id}``::

    POST /webhooks/voice/{channel_id}
    Content-Type: application/json

    {"call_id": "c-81422", "event": "missed", "from": "+34633445566", "to": "+34910111444",
     "occurred_at": "2026-11-22T10:05:00+01:00", "direction": "inbound",
     "duration_seconds": null, "recording_url": null, "transcript": null,
     "caller_name": "Ana García"}

``event`` is ``ringing``, ``answered``, ``ended``, ``missed`` or ``voicemail``;
``occurred_at`` is ISO 8601 with its offset (a time without one is refused); ``direction`` is
``inbound`` (the default: ``from`` is the customer) or ``outbound`` (``to`` is the customer).
Send every event of a call with the same ``call_id``; resending one is harmless, and events
may arrive in any order (``channels.calls`` explains how they are merged). An event name Hilos
does not know (``hold``, ``transferred``) is acknowledged with 200 and ignored; a body that
is not this shape is a 400 naming the field.

Authentication, with the channel's ``auth_token`` setting, either of:

- ``Authorization: Bearer <auth_token>``; or
- ``X-Hilos-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, key = auth_token>``, for
  systems that sign their webhooks rather than send a secret with each request.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC
from typing import Any, ClassVar, Literal

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from hilos.channels.base import (
    BadPayload,
    CallEvent,
    ChannelInfo,
    Ignored,
    Item,
    Outgoing,
    PermanentFailure,
    Sent,
    WebhookRequest,
    hmac_hex,
    require_signature,
)
from hilos.channels.calls import CALL_EVENTS
from hilos.channels.registry import register
from hilos.core.errors import Invalid, Unauthorized
from hilos.customers.identities import normalize

SIGNATURE_HEADER = "X-Hilos-Signature-256"


class CallEventBody(BaseModel):
    """One call event as a telephony system posts it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    call_id: str = Field(min_length=1, max_length=200)
    event: Literal["ringing", "answered", "ended", "missed", "voicemail"]
    caller: str | None = Field(default=None, alias="from", min_length=1, max_length=64)
    to: str | None = Field(default=None, min_length=1, max_length=64)
    occurred_at: AwareDatetime
    direction: Literal["inbound", "outbound"] = "inbound"
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    recording_url: str | None = Field(default=None, max_length=2000)
    transcript: str | None = Field(default=None, max_length=20_000)
    caller_name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _customer_number(self) -> CallEventBody:
        if self.direction == "inbound" and not self.caller:
            raise ValueError("from: an inbound call needs the caller's number")
        if self.direction == "outbound" and not self.to:
            raise ValueError("to: an outbound call needs the number called")
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ())) or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)


class GenericVoice:
    provider: ClassVar[str] = "voice"
    kinds: ClassVar[tuple[str, ...]] = ("phone",)
    providers: ClassVar[tuple[str, ...]] = ("generic",)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        token = channel.setting("auth_token")
        authorization = request.headers.get("authorization")
        if authorization:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                return
            raise Unauthorized("the bearer token is not this channel's", code="bad_signature")
        signature = request.headers.get(SIGNATURE_HEADER.lower())
        if signature is None:
            raise Unauthorized(
                f"send Authorization: Bearer <auth_token> or {SIGNATURE_HEADER}",
                code="bad_signature",
            )
        require_signature(
            "sha256=" + hmac_hex(token, request.body), signature, header=SIGNATURE_HEADER
        )

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        try:
            raw: Any = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadPayload(f"the body is not JSON: {error}") from error
        if not isinstance(raw, dict):
            raise BadPayload("the body is not a JSON object")
        if isinstance(raw.get("event"), str) and raw["event"] not in CALL_EVENTS:
            return [Ignored(f"call event {raw['event']!r}")]
        try:
            body = CallEventBody.model_validate(raw)
        except ValidationError as error:
            raise BadPayload(_describe(error)) from error
        where = "to" if body.direction == "outbound" else "from"
        try:
            number = normalize(
                "phone",
                (body.to if body.direction == "outbound" else body.caller) or "",
                region=channel.tenant.default_region,
            )
        except Invalid as error:
            raise BadPayload(f"{where}: {error.message}") from error
        return [
            CallEvent(
                call_id=body.call_id,
                event=body.event,
                caller_kind="phone",
                caller_value=number,
                occurred_at=body.occurred_at.astimezone(UTC),
                direction=body.direction,
                duration_seconds=body.duration_seconds,
                recording_url=body.recording_url,
                transcript=body.transcript,
                caller_name=body.caller_name,
            )
        ]

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        raise PermanentFailure("a phone channel does not send messages", code="no_adapter")


register(GenericVoice())

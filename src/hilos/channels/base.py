"""The shape every channel adapter has: verify, parse, send, receipts.

An adapter is one module in ``hilos.channels`` that turns one provider's format into Hilos's
and back. It never touches the database: ``verify`` checks that a webhook came from the
provider, ``parse`` turns its body into ``Inbound``/``Receipt``/``CallEvent`` items (and
``Ignored`` for payload types it does not handle), and ``send`` delivers one outgoing message
through the provider's API. ``channels.ingest`` stores what ``parse`` found and
``channels.delivery`` calls ``send``; both are the same for every provider.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

import httpx

from hilos.core.errors import HilosError, Unauthorized
from hilos.core.tenancy import TenantContext


class BadPayload(HilosError):
    """The body is not what the provider sends: 400, and nothing is stored."""

    status_code = 400
    code = "bad_payload"


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What an adapter knows of the channel a webhook or a reply belongs to."""

    id: str
    tenant: TenantContext
    kind: str
    config: Mapping[str, Any]
    disabled: bool = False

    def setting(self, key: str) -> str:
        """A configuration value the adapter cannot work without."""
        value = self.config.get(key)
        if not isinstance(value, str) or not value:
            raise Unauthorized(f"channel {self.id} is missing its {key} setting")
        return value


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    method: str
    # The URL the provider called, as it signed it (Twilio signs the full URL).
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    # Form fields of a form-encoded body, in order (Twilio), else empty.
    form: Sequence[tuple[str, str]] = ()


@dataclass(slots=True)
class Inbound:
    """A message from a customer."""

    external_id: str
    sender_kind: str
    sender_value: str
    sent_at: datetime
    sender_name: str | None = None
    text: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # More identities the message proves (a WhatsApp sender's phone, a shared contact).
    identities: list[tuple[str, str]] = field(default_factory=list)
    kind: str = "message"
    data: dict[str, Any] | None = None
    # Provider message ids this message answers (email In-Reply-To and References).
    thread_refs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Receipt:
    """A provider's report on a message Hilos sent: sent, delivered, read or failed."""

    external_id: str
    status: str
    occurred_at: datetime
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class WatermarkReceipt:
    """Everything sent to one recipient on this channel up to a moment reached ``status``.

    Messenger's read events (and old clients' delivery events) name a moment, not messages;
    ``channels.ingest`` turns the watermark into receipts for the replies it covers.
    """

    recipient_kind: str
    recipient_value: str
    status: str
    watermark: datetime


@dataclass(slots=True)
class CallEvent:
    """Something that happened to a phone call."""

    call_id: str
    # ringing, answered, ended, missed, voicemail.
    event: str
    caller_kind: str
    caller_value: str
    occurred_at: datetime
    direction: str = "inbound"
    duration_seconds: int | None = None
    recording_url: str | None = None
    transcript: str | None = None
    caller_name: str | None = None


@dataclass(slots=True)
class Ignored:
    """A payload type this adapter does not handle: acknowledged and logged, never an error."""

    reason: str


Item = Inbound | Receipt | WatermarkReceipt | CallEvent | Ignored


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply waiting in the outbox, as the delivery worker hands it to ``send``."""

    message_id: str
    conversation_id: str
    # The recipient's identity: ("whatsapp", "34600111222"), ("email", "ana@example.org").
    to_kind: str
    to_value: str
    text: str
    attachments: list[dict[str, Any]]
    template: dict[str, Any] | None = None
    # Channel-specific context the worker gathered (an email's subject and thread headers).
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    external_id: str
    # Anything worth keeping from the provider's answer (an email's Message-ID header).
    data: dict[str, Any] | None = None


class SendError(Exception):
    def __init__(self, message: str, *, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TemporaryFailure(SendError):
    """Worth trying again later: 5xx, 429, a network error."""

    def __init__(
        self, message: str, *, code: str = "provider_unavailable", retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentFailure(SendError):
    """The provider refused the message: it is marked failed with this reason."""


class Adapter(Protocol):
    # The path segment of ``/webhooks/{provider}/{channel_id}``.
    provider: ClassVar[str]
    # The channel kinds (and, where a kind has several, the ``provider`` setting) it serves.
    kinds: ClassVar[tuple[str, ...]]

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        """Raise ``Unauthorized`` unless the provider signed this request."""

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        """The items in the body; ``BadPayload`` when it is not the provider's format."""

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        """Deliver one message; ``TemporaryFailure`` or ``PermanentFailure`` when it fails."""


def hmac_hex(key: str, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(key.encode(), body, digest).hexdigest()


def require_signature(expected: str, given: str | None, *, header: str) -> None:
    """Compare in constant time; a missing or different signature is a 401."""
    if not given:
        raise Unauthorized(f"missing {header} header", code="bad_signature")
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise Unauthorized(f"{header} does not match the body", code="bad_signature")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provider_error_message(response: httpx.Response) -> str:
    """The provider's own words for an error response, whatever its format."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            parts = [str(error.get(k)) for k in ("message", "error_user_msg") if error.get(k)]
            if parts:
                return " - ".join(parts)
        for key in ("description", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.text[:300]


def raise_for_provider(response: httpx.Response) -> None:
    """Turn a provider's error answer into the failure the delivery worker understands."""
    if response.status_code < 400:
        return
    message = f"{response.status_code}: {provider_error_message(response)}"
    if response.status_code == 429 or response.status_code >= 500:
        retry_after: float | None = None
        header = response.headers.get("retry-after")
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        raise TemporaryFailure(message, retry_after=retry_after)
    raise PermanentFailure(message, code=f"provider_{response.status_code}")

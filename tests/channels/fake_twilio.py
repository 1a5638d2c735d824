"""A fake Twilio: the Messages API, and Twilio's way of signing the webhooks it sends.

The Messages API (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``) is built from
Twilio's documentation: HTTP Basic auth with the account sid and auth token, a form body with
``To``, ``From`` or ``MessagingServiceSid``, and ``Body``, ``MediaUrl`` or ``ContentSid``; a
201 with the message resource (``sid``, ``status: queued``, ...) on success, and Twilio's error
body ``{code, message, more_info, status}`` on failure. ``fail_next`` queues error answers.

``sign`` computes ``X-Twilio-Signature`` as Twilio documents it: the full URL, then each POST
parameter's name and value, sorted by name, HMAC-SHA1 with the auth token, base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token-0123456789"
API_BASE = "https://api.twilio.fake"
SMS_NUMBER = "+34910111333"
WHATSAPP_NUMBER = "+14155238886"

SMS_CONFIG = {
    "provider": "twilio",
    "account_sid": ACCOUNT_SID,
    "auth_token": AUTH_TOKEN,
    "from_number": SMS_NUMBER,
    "api_base_url": API_BASE,
}
WHATSAPP_CONFIG = {**SMS_CONFIG, "from_number": WHATSAPP_NUMBER}
PHONE_CONFIG = {"provider": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def sign(url: str, form: list[tuple[str, str]], token: str = AUTH_TOKEN) -> str:
    signed = url
    for name, value in sorted(form, key=lambda pair: pair[0]):
        signed += name + value
    digest = hmac.new(token.encode(), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


async def post_webhook(
    client: httpx.AsyncClient,
    channel_id: str,
    form: list[tuple[str, str]],
    *,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    signature: str | None = "good",
) -> httpx.Response:
    """Post ``form`` to the channel's webhook as Twilio does, signed for ``signed_url`` (by
    default the URL the test client calls)."""
    path = f"/webhooks/twilio/{channel_id}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "good":
        headers["X-Twilio-Signature"] = sign(signed_url or f"{client.base_url}{path}", form, token)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await client.post(path, content=urlencode(form).encode(), headers=headers)


def sms_form(
    *,
    sid: str,
    sender: str = "+34622334455",
    body: str = "Hola",
    media: Sequence[tuple[str, str]] = (),
    to: str = SMS_NUMBER,
) -> list[tuple[str, str]]:
    """An incoming SMS/MMS as Twilio posts it to the number's messaging webhook."""
    form = [
        ("ToCountry", "ES"),
        ("SmsMessageSid", sid),
        ("NumMedia", str(len(media))),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", to),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    for index, (url, content_type) in enumerate(media):
        form += [(f"MediaUrl{index}", url), (f"MediaContentType{index}", content_type)]
    return form


def whatsapp_form(
    *, sid: str, wa_id: str = "34611222333", body: str = "Hola", name: str = "Lucía Pérez"
) -> list[tuple[str, str]]:
    """An incoming WhatsApp message through Twilio."""
    return [
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", name),
        ("MessageType", "text"),
        ("SmsSid", sid),
        ("WaId", wa_id),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", f"whatsapp:{WHATSAPP_NUMBER}"),
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", f"whatsapp:+{wa_id}"),
        ("ApiVersion", "2010-04-01"),
    ]


def status_form(
    *, sid: str, status: str, error_code: str | None = None, to: str = "+34622334455"
) -> list[tuple[str, str]]:
    """A message status callback (the ``StatusCallback`` of a sent message)."""
    form = [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", SMS_NUMBER),
        ("ApiVersion", "2010-04-01"),
    ]
    if error_code:
        form.append(("ErrorCode", error_code))
    return form


def call_form(
    *,
    sid: str,
    status: str,
    caller: str = "+34633445566",
    timestamp: str = "Sat, 22 Nov 2026 10:05:00 +0000",
    direction: str = "inbound",
    **extra: str,
) -> list[tuple[str, str]]:
    """A voice status callback (call progress events)."""
    called = "+34910111444"
    form = [
        ("Called", called),
        ("Direction", direction),
        ("Timestamp", timestamp),
        ("CallbackSource", "call-progress-events"),
        ("CallSid", sid),
        ("To", called if direction == "inbound" else caller),
        ("CallStatus", status),
        ("From", caller if direction == "inbound" else called),
        ("AccountSid", ACCOUNT_SID),
        ("Caller", caller),
        ("ApiVersion", "2010-04-01"),
    ]
    return form + list(extra.items())


@dataclass
class FakeTwilio:
    """The Messages API. ``requests`` keeps each accepted form (repeated fields as lists)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, int, str, dict[str, str]]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.failures.append((status, code, message, headers or {}))

    @staticmethod
    def _error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return httpx.Response(status, json=body, headers=headers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if (
            request.method != "POST"
            or request.url.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        ):
            return self._error(404, 20404, "The requested resource was not found")
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return self._error(401, 20003, "Authenticate")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return self._error(400, 20001, "Unsupported content type")
        if self.failures:
            status, code, message, headers = self.failures.pop(0)
            return self._error(status, code, message, **headers)
        form: dict[str, Any] = {}
        for name, value in parse_qsl(request.content.decode(), keep_blank_values=True):
            if name in form:
                previous = form[name]
                form[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                form[name] = value
        to = str(form.get("To", ""))
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        sender = form.get("From")
        if not sender and not form.get("MessagingServiceSid"):
            return self._error(400, 21603, "A 'From' phone number is required.")
        channel = "whatsapp:" if to.startswith("whatsapp:") else ""
        if sender and str(sender).startswith("whatsapp:") != bool(channel):
            return self._error(400, 63007, "Twilio could not find a Channel with the From address")
        if not _E164.match(to.removeprefix("whatsapp:")):
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return self._error(400, 21602, "Message body is required.")
        self.requests.append(form)
        sid = f"SM{next(self._ids):032x}"
        media = form.get("MediaUrl") or []
        return httpx.Response(
            201,
            json={
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": form.get("Body", ""),
                "date_created": "Sat, 22 Nov 2026 10:00:00 +0000",
                "date_sent": None,
                "date_updated": "Sat, 22 Nov 2026 10:00:00 +0000",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": str(len(media) if isinstance(media, list) else 1),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "to": to,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
        )

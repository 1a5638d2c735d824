"""A fake WhatsApp Cloud API (Graph API ``/{phone_number_id}/messages``), from Meta's docs.

It checks what Meta checks (the bearer token, ``messaging_product``, a recipient, a known
message type with its object) and answers in Meta's formats: ``{"messaging_product":
"whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}`` on success and
``{"error": {"message", "type", "code", "fbtrace_id"}}`` on failure. ``fail_next`` queues
error answers (status, Meta error code, message) for the next calls.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE_URL = "https://graph.fake/v21.0"
PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "EAAG-fake-token"
APP_SECRET = "whatsapp-app-secret"
VERIFY_TOKEN = "verify-me"

CONFIG = {
    "phone_number_id": PHONE_NUMBER_ID,
    "access_token": ACCESS_TOKEN,
    "app_secret": APP_SECRET,
    "verify_token": VERIFY_TOKEN,
    "api_base_url": BASE_URL,
}

_TYPES = {"text", "template", "image", "audio", "video", "document", "sticker", "location"}


@dataclass
class FakeWhatsApp:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, int, str, dict[str, str]]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.failures.append((status, code, message, headers or {}))

    def _error(self, status: int, code: int, message: str, **headers: str) -> httpx.Response:
        body = {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "AbCdEf",
            }
        }
        return httpx.Response(status, json=body, headers=headers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != f"/v21.0/{PHONE_NUMBER_ID}/messages" or request.method != "POST":
            return self._error(400, 100, "Unsupported post request")
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return self._error(401, 190, "Invalid OAuth access token")
        if self.failures:
            status, code, message, headers = self.failures.pop(0)
            return self._error(status, code, message, **headers)
        body = json.loads(request.content)
        kind = body.get("type", "text")
        if body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return self._error(400, 100, "(#100) The parameter messaging_product is required")
        if kind not in _TYPES or kind not in body:
            return self._error(400, 100, f"(#100) Param {kind} is required")
        self.sent.append(body)
        wamid = f"wamid.FAKE{next(self._ids):08d}"
        return httpx.Response(
            200,
            json={
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            },
        )


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_webhook(
    *, wa_id: str, wamid: str, text: str, timestamp: int, name: str = "Marina Gil"
) -> dict[str, Any]:
    return message_webhook(
        wa_id=wa_id,
        name=name,
        message={
            "from": wa_id,
            "id": wamid,
            "timestamp": str(timestamp),
            "type": "text",
            "text": {"body": text},
        },
    )


def message_webhook(*, wa_id: str, name: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34910111222",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [message],
                        },
                    }
                ],
            }
        ],
    }


def status_webhook(
    *, wamid: str, status: str, timestamp: int, recipient: str, errors: list[Any] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient,
    }
    if errors:
        entry["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34910111222",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "statuses": [entry],
                        },
                    }
                ],
            }
        ],
    }

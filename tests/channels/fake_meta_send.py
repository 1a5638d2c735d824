"""A fake Messenger Platform Send API (``POST /{page_id}/messages``) and Meta's webhooks.

Built from Meta's documentation: the Send API wants the Page access token (here as a bearer
token), ``recipient.id``, a ``messaging_type`` and a ``message`` with ``text`` (at most 2000
characters) *or* one ``attachment`` (``type`` and ``payload.url``); it answers
``{"recipient_id", "message_id"}`` and errors as ``{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}``. ``fail_next`` queues error answers for the next calls;
``sent`` records every accepted request body.

The webhook builders produce ``object``/``entry[].messaging[]`` bodies as Meta sends them for
Messenger (``object: page``) and Instagram (``object: instagram``); ``sign`` computes
``X-Hub-Signature-256``.
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
PAGE_ID = "104538271523456"
IG_ACCOUNT_ID = "17841400008460056"
PAGE_TOKEN = "EAAB-page-token"
IG_PAGE_TOKEN = "EAAB-instagram-page-token"
APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "verify-meta"

MESSENGER_CONFIG = {
    "page_id": PAGE_ID,
    "page_access_token": PAGE_TOKEN,
    "app_secret": APP_SECRET,
    "verify_token": VERIFY_TOKEN,
    "api_base_url": BASE_URL,
}
INSTAGRAM_CONFIG = {**MESSENGER_CONFIG, "page_access_token": IG_PAGE_TOKEN}

_MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
_ATTACHMENT_TYPES = {"image", "audio", "video", "file", "template"}


@dataclass
class FakeSendApi:
    page_id: str = PAGE_ID
    token: str = PAGE_TOKEN
    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(
        self,
        status: int,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error: dict[str, Any] = {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "A1b2C3d4",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        self.failures.append((status, error, headers or {}))

    @staticmethod
    def _error(status: int, code: int, message: str) -> httpx.Response:
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "x"}
        return httpx.Response(status, json={"error": error})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != f"/v21.0/{self.page_id}/messages":
            return self._error(400, 100, "Unsupported post request")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(401, 190, "Invalid OAuth access token")
        if self.failures:
            status, error, headers = self.failures.pop(0)
            return httpx.Response(status, json={"error": error}, headers=headers)
        body = json.loads(request.content)
        recipient = body.get("recipient") or {}
        message = body.get("message") or {}
        if not recipient.get("id"):
            return self._error(400, 100, "(#100) The parameter recipient is required")
        if body.get("messaging_type") not in _MESSAGING_TYPES:
            return self._error(400, 100, "(#100) Param messaging_type must be one of {...}")
        has_text, has_attachment = "text" in message, "attachment" in message
        if has_text == has_attachment:
            return self._error(400, 100, "(#100) Must send either message.text or attachment")
        if has_text and not 0 < len(message["text"]) <= 2000:
            return self._error(400, 100, "(#100) Length of param message[text] must be <= 2000")
        if has_attachment:
            attachment = message["attachment"]
            if attachment.get("type") not in _ATTACHMENT_TYPES or not (
                attachment.get("payload") or {}
            ).get("url"):
                return self._error(400, 100, "(#100) Invalid attachment")
        self.sent.append(body)
        answer = {"recipient_id": recipient["id"], "message_id": f"m_FAKE{next(self._ids):06d}"}
        if has_attachment:
            answer["attachment_id"] = "1857777774821032"
        return httpx.Response(200, json=answer)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook(object_name: str, *events: dict[str, Any]) -> dict[str, Any]:
    account = PAGE_ID if object_name == "page" else IG_ACCOUNT_ID
    return {
        "object": object_name,
        "entry": [{"id": account, "time": 1763805600123, "messaging": list(events)}],
    }


def event(sender: str, timestamp: int, **content: Any) -> dict[str, Any]:
    """One ``messaging[]`` event from a customer to the Page."""
    return {
        "sender": {"id": sender},
        "recipient": {"id": PAGE_ID},
        "timestamp": timestamp,
        **content,
    }


def text_message(
    sender: str, mid: str, text: str, timestamp: int = 1763805600000
) -> dict[str, Any]:
    return event(sender, timestamp, message={"mid": mid, "text": text})

"""A fake Telegram Bot API (``POST /bot{token}/{method}``) and Telegram's webhook updates.

Built from the Bot API documentation: an unknown token answers 401 ``Unauthorized``, an
unknown method 404, and every answer is ``{"ok": true, "result": Message}`` or ``{"ok":
false, "error_code", "description", "parameters": {"retry_after"}}``. ``sendMessage`` wants
``chat_id`` and a ``text`` of 1 to 4096 characters; ``sendPhoto``, ``sendVideo``,
``sendAudio`` and ``sendDocument`` want the file (here a URL) and an optional ``caption`` of
at most 1024 characters. Message ids count up per chat, as Telegram's do. ``fail_next``
queues error answers; ``sent`` records ``(method, payload)`` of every accepted call.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE_URL = "https://telegram.fake"
BOT_TOKEN = "7012345678:AAH-fake-bot-token"
SECRET_TOKEN = "hilos-telegram-secret_1"

CONFIG = {"bot_token": BOT_TOKEN, "secret_token": SECRET_TOKEN, "api_base_url": BASE_URL}

_FILE_FIELDS = {
    "sendPhoto": "photo",
    "sendVideo": "video",
    "sendAudio": "audio",
    "sendDocument": "document",
}


@dataclass
class FakeBotApi:
    token: str = BOT_TOKEN
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    _next_id: dict[Any, int] = field(default_factory=lambda: defaultdict(lambda: 500))

    def fail_next(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        parameters = {"retry_after": retry_after} if retry_after is not None else {}
        self.failures.append((code, description, parameters))

    @staticmethod
    def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> Any:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return httpx.Response(code, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/bot{self.token}/"
        if request.method != "POST" or not request.url.path.startswith("/bot"):
            return self._error(404, "Not Found")
        if not request.url.path.startswith(prefix):
            return self._error(401, "Unauthorized")
        method = request.url.path.removeprefix(prefix)
        if method != "sendMessage" and method not in _FILE_FIELDS:
            return self._error(404, "Not Found")
        if self.failures:
            return self._error(*self.failures.pop(0))
        payload = json.loads(request.content)
        chat_id = payload.get("chat_id")
        if chat_id in (None, ""):
            return self._error(400, "Bad Request: chat_id is empty")
        if method == "sendMessage":
            if not payload.get("text"):
                return self._error(400, "Bad Request: message text is empty")
            if len(payload["text"]) > 4096:
                return self._error(400, "Bad Request: message is too long")
        else:
            if not payload.get(_FILE_FIELDS[method]):
                return self._error(400, f"Bad Request: there is no {_FILE_FIELDS[method]}")
            if len(payload.get("caption", "")) > 1024:
                return self._error(400, "Bad Request: message caption is too long")
        self.sent.append((method, payload))
        self._next_id[chat_id] += 1
        result = {
            "message_id": self._next_id[chat_id],
            "from": {"id": 7012345678, "is_bot": True, "first_name": "Hilos"},
            "chat": {"id": int(chat_id), "type": "private"},
            "date": 1763805700,
        }
        if "text" in payload:
            result["text"] = payload["text"]
        return httpx.Response(200, json={"ok": True, "result": result})


USER = {
    "id": 918273645,
    "is_bot": False,
    "first_name": "Iker",
    "last_name": "Etxeberria",
    "username": "iker_etx",
    "language_code": "es",
}


def message(
    message_id: int, *, user: dict[str, Any] | None = None, date: int = 1763805600, **content: Any
) -> dict[str, Any]:
    """A ``Message`` in the private chat between ``user`` and the bot."""
    sender = user or USER
    return {
        "message_id": message_id,
        "from": sender,
        "chat": {"id": sender["id"], "first_name": sender["first_name"], "type": "private"},
        "date": date,
        **content,
    }


def update(update_id: int, **fields: Any) -> dict[str, Any]:
    return {"update_id": update_id, **fields}

"""Telegram through the Bot API: ``Update`` webhooks in, ``sendMessage`` and friends out.

Webhooks (``/webhooks/telegram/{channel_id}``): Telegram does not sign its requests; the bot's
``setWebhook`` call gives it a ``secret_token`` that it sends back in
``X-Telegram-Bot-Api-Secret-Token``, compared here in constant time. Each request is one
``Update``:

- ``message``: text, a photo (its largest size), voice, audio, video, video note, document,
  animation, sticker (their ``file_id`` kept in the attachment's data: the file itself is
  fetched from Telegram with the bot token when needed), location, venue, contact. Telegram
  numbers messages per chat, so a message's id here is ``"{chat_id}:{message_id}"``.
- A ``contact`` the sender shares *of themselves* (``contact.user_id`` is the sender's id)
  proves their phone number: the Telegram user and the phone identity are resolved together,
  so a customer known by that phone from a store or a call becomes the same customer.
- ``edited_message``: stored as a new entry (``"{chat_id}:{message_id}:edit:{edit_date}"``)
  whose data names the message it corrects (``edit_of``), so the agent sees what changed and
  when, and the original stays as it was received.
- ``callback_query`` (a tap on an inline button): a message whose text is the button's
  ``data``. The webhook's answer calls ``answerCallbackQuery`` (Telegram runs a method named in
  the webhook response), so the customer's button stops spinning without another request.
- Only private chats are conversations with a customer: group, supergroup and channel
  messages, ``channel_post``, ``my_chat_member`` and every other update type are acknowledged
  and logged as ignored.

The sender's identity is ``telegram`` = the user's id; in a private chat it is also the chat
id that replies go to. Sending: ``POST {api_base_url}/bot{bot_token}/sendMessage`` (and
``sendPhoto``, ``sendVideo``, ``sendAudio``, ``sendDocument`` for attachments, by URL), answers
``{"ok": true, "result": Message}`` or ``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``; a 429 waits ``retry_after`` seconds. Telegram sends no
delivery or read receipts to bots, so a Telegram reply stays "sent".
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from fastapi.responses import JSONResponse, Response

from hilos.channels.base import (
    BadPayload,
    ChannelInfo,
    Ignored,
    Inbound,
    Item,
    Outgoing,
    PermanentFailure,
    SendError,
    Sent,
    TemporaryFailure,
    WebhookRequest,
)
from hilos.channels.registry import register
from hilos.core.clock import now
from hilos.core.errors import Invalid, Unauthorized
from hilos.customers.identities import normalize

if TYPE_CHECKING:
    from hilos.channels.ingest import Stored

BOT_API = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
_CHAT_ID = re.compile(r"^-?\d+$")
# Message fields holding a file, the attachment type each becomes.
_FILES = {
    "voice": "audio",
    "audio": "audio",
    "video": "video",
    "video_note": "video",
    "animation": "video",
    "document": "file",
    "sticker": "sticker",
}
# Attachment type → (Bot API method, the field naming the file).
_SEND_METHODS = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "audio": ("sendAudio", "audio"),
}


def _unix(value: Any, *, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError) as error:
        raise BadPayload(f"{where} is not a Unix time") from error


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _name(user: dict[str, Any]) -> str | None:
    full = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k))
    return full or (str(user["username"]) if user.get("username") else None)


def _file(kind: str, content: Any) -> dict[str, Any]:
    if not isinstance(content, dict) or not content.get("file_id"):
        raise BadPayload(f"message.{kind} needs a file_id")
    attachment = {
        "type": _FILES.get(kind, "image"),
        "name": content.get("file_name") or content.get("title"),
        "mime_type": content.get("mime_type"),
        "size": content.get("file_size"),
        "data": {
            k: v
            for k, v in {
                "provider": "telegram",
                "telegram_type": kind,
                "file_id": content["file_id"],
                "file_unique_id": content.get("file_unique_id"),
                "emoji": content.get("emoji"),
                "duration": content.get("duration"),
            }.items()
            if v is not None
        },
    }
    return {k: v for k, v in attachment.items() if v is not None}


def split_text(text: str, limit: int) -> list[str]:
    """Cut a long text into pieces of at most ``limit`` characters, at a line break or a space
    where there is one."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _area(size: dict[str, Any]) -> int:
    """A photo size's pixels; a size without whole-number dimensions counts as none."""
    width, height = size.get("width"), size.get("height")
    return width * height if isinstance(width, int) and isinstance(height, int) else 0


class TelegramBot:
    provider: ClassVar[str] = "telegram"
    kinds: ClassVar[tuple[str, ...]] = ("telegram",)
    providers: ClassVar[tuple[str, ...]] = ("telegram",)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        expected = channel.setting("secret_token")
        given = request.headers.get(SECRET_HEADER.lower())
        if not given:
            raise Unauthorized(f"missing {SECRET_HEADER} header", code="bad_signature")
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise Unauthorized(f"{SECRET_HEADER} does not match", code="bad_signature")

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        try:
            update = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadPayload(f"the body is not JSON: {error}") from error
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            raise BadPayload("the body is not a Telegram Update (no update_id)")
        if "message" in update:
            return [self._message(channel, update["message"], edited=False)]
        if "edited_message" in update:
            return [self._message(channel, update["edited_message"], edited=True)]
        if "callback_query" in update:
            return [self._callback(update["callback_query"])]
        kinds = sorted(k for k in update if k != "update_id")
        return [Ignored(f"update {', '.join(kinds) or 'without content'}")]

    def _message(self, channel: ChannelInfo, message: Any, *, edited: bool) -> Item:
        if not isinstance(message, dict):
            raise BadPayload("message must be an object")
        chat = message.get("chat")
        if not isinstance(chat, dict) or "id" not in chat or "message_id" not in message:
            raise BadPayload("message needs message_id and chat.id")
        if chat.get("type") != "private":
            return Ignored(f"message in a {chat.get('type')} chat")
        sender = message.get("from")
        if not isinstance(sender, dict) or "id" not in sender:
            raise BadPayload("a private message needs from.id")
        if sender.get("is_bot"):
            return Ignored("message from a bot")
        sent_at = _unix(message.get("date"), where="message.date")
        text, attachments, identities = self._content(channel, message, sender)
        if not text and not attachments:
            kinds = sorted(k for k in message if k not in ("message_id", "from", "chat", "date"))
            return Ignored(f"message with {', '.join(kinds) or 'nothing'}")
        external_id = f"{chat['id']}:{message['message_id']}"
        data: dict[str, Any] = {}
        reply_to = message.get("reply_to_message")
        if isinstance(reply_to, dict) and "message_id" in reply_to:
            data["in_reply_to"] = f"{chat['id']}:{reply_to['message_id']}"
        if identities:
            # What this message proved about its sender, for the timeline. (It also keeps the
            # message off the PostgreSQL one-statement path, which stores a known sender's
            # message without resolving extra identities.)
            data["linked_identities"] = [{"kind": k, "value": v} for k, v in identities]
        if edited:
            edited_at = _unix(message.get("edit_date"), where="edited_message.edit_date")
            data["edit_of"] = external_id
            data["edited_at"] = edited_at.isoformat()
            external_id = f"{external_id}:edit:{message.get('edit_date')}"
            sent_at = edited_at
        return Inbound(
            external_id=external_id,
            sender_kind="telegram",
            sender_value=str(sender["id"]),
            sender_name=_name(sender),
            sent_at=sent_at,
            text=text,
            attachments=attachments,
            identities=identities,
            data=data or None,
        )

    def _content(
        self, channel: ChannelInfo, message: dict[str, Any], sender: dict[str, Any]
    ) -> tuple[str, list[dict[str, Any]], list[tuple[str, str]]]:
        text = message.get("text") or message.get("caption") or ""
        if not isinstance(text, str):
            raise BadPayload("message.text must be a string")
        attachments: list[dict[str, Any]] = []
        identities: list[tuple[str, str]] = []
        photo = message.get("photo")
        if photo is not None:
            sizes = [p for p in photo if isinstance(p, dict)] if isinstance(photo, list) else []
            if not sizes:
                raise BadPayload("message.photo must be a list of sizes")
            largest = max(sizes, key=_area)
            attachments.append(_file("photo", largest))
        for kind in _FILES:
            # An animation also comes as a document: keep it once.
            if kind in message and not (kind == "document" and "animation" in message):
                attachments.append(_file(kind, message[kind]))
        venue = message.get("venue")
        location = (venue or {}).get("location") if isinstance(venue, dict) else None
        location = location or message.get("location")
        if isinstance(location, dict):
            data = {
                "latitude": location.get("latitude"),
                "longitude": location.get("longitude"),
                "name": (venue or {}).get("title"),
                "address": (venue or {}).get("address"),
            }
            attachments.append(
                {"type": "location", "data": {k: v for k, v in data.items() if v is not None}}
            )
            if not text and venue:
                text = " ".join(str(venue[k]) for k in ("title", "address") if venue.get(k))
        contact = message.get("contact")
        if isinstance(contact, dict):
            attachments.append({"type": "contact", "data": contact})
            text = text or " ".join(
                str(contact[k])
                for k in ("first_name", "last_name", "phone_number")
                if contact.get(k)
            )
            phone = self._own_phone(channel, contact, sender)
            if phone is not None:
                identities.append(("phone", phone))
        return text, attachments, identities

    def _own_phone(
        self, channel: ChannelInfo, contact: dict[str, Any], sender: dict[str, Any]
    ) -> str | None:
        """The phone number of a contact the sender shared of themselves, if it is one."""
        if contact.get("user_id") != sender.get("id"):
            return None
        digits = "".join(c for c in str(contact.get("phone_number") or "") if c.isdigit())
        if not digits:
            return None
        try:
            # Telegram writes numbers internationally, without the "+".
            return normalize("phone", "+" + digits, region=channel.tenant.default_region)
        except Invalid:
            # Not a number we can use to link profiles; the contact card is still kept.
            return None

    def _callback(self, query: Any) -> Item:
        if not isinstance(query, dict) or not query.get("id"):
            raise BadPayload("callback_query needs an id")
        sender = query.get("from")
        if not isinstance(sender, dict) or "id" not in sender:
            raise BadPayload("callback_query needs from.id")
        message = _object(query.get("message"))
        chat = _object(message.get("chat"))
        if chat and chat.get("type") != "private":
            return Ignored(f"callback_query in a {chat.get('type')} chat")
        if not isinstance(query.get("data"), str) or not query["data"]:
            return Ignored("callback_query without data (a game)")
        data: dict[str, Any] = {"callback": {"id": str(query["id"]), "data": query["data"]}}
        if "id" in chat and "message_id" in message:
            data["in_reply_to"] = f"{chat['id']}:{message['message_id']}"
        return Inbound(
            # Callback query ids are unique across Telegram, not only within a chat.
            external_id=f"callback:{query['id']}",
            sender_kind="telegram",
            sender_value=str(sender["id"]),
            sender_name=_name(sender),
            # A callback query carries no time of its own; it arrives as the button is tapped.
            sent_at=now(),
            text=query["data"],
            data=data,
        )

    def acknowledge(self, stored: Stored) -> Response:
        """Answer a button tap in the webhook response, as the Bot API allows."""
        for message in stored.messages:
            external_id = str(message.get("external_id", ""))
            if external_id.startswith("callback:"):
                return JSONResponse(
                    {
                        "method": "answerCallbackQuery",
                        "callback_query_id": external_id.removeprefix("callback:"),
                    }
                )
        return JSONResponse(stored.as_json())

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        token = channel.setting("bot_token")
        base = str(channel.config.get("api_base_url") or BOT_API).rstrip("/")
        chat_id: int | str = (
            int(outgoing.to_value) if _CHAT_ID.match(outgoing.to_value) else outgoing.to_value
        )
        ids: list[str] = []
        for method, fields in self._calls(outgoing):
            try:
                result = await self._call(
                    client, base, token, method, {"chat_id": chat_id, **fields}
                )
            except SendError as error:
                if not ids:
                    raise
                # Part of the reply reached the customer: sending it all again would repeat it.
                raise PermanentFailure(
                    f"only {len(ids)} of the reply's parts were sent: {error.message}",
                    code="partially_sent",
                ) from error
            try:
                ids.append(f"{result['chat']['id']}:{result['message_id']}")
            except (KeyError, TypeError) as error:
                raise PermanentFailure(
                    f"Telegram answered {method} without chat.id and message_id"
                ) from error
        return Sent(external_id=ids[0], data={"provider_ids": ids} if len(ids) > 1 else None)

    def _calls(self, outgoing: Outgoing) -> list[tuple[str, dict[str, Any]]]:
        media = [a for a in outgoing.attachments if a.get("url")]
        text = outgoing.text
        caption = ""
        if media and text and len(text) <= CAPTION_LIMIT:
            caption, text = text, ""
        calls: list[tuple[str, dict[str, Any]]] = [
            ("sendMessage", {"text": piece}) for piece in split_text(text, TEXT_LIMIT)
        ]
        for attachment in media:
            method, field = _SEND_METHODS.get(
                str(attachment.get("type", "")), ("sendDocument", "document")
            )
            fields: dict[str, Any] = {field: attachment["url"]}
            if caption:
                fields["caption"], caption = caption, ""
            calls.append((method, fields))
        if not calls:
            raise PermanentFailure("nothing to send: no text and no attachment with a url")
        return calls

    async def _call(
        self,
        client: httpx.AsyncClient,
        base: str,
        token: str,
        method: str,
        payload: dict[str, Any],
    ) -> dict[str, Any]:
        try:
            response = await client.post(f"{base}/bot{token}/{method}", json=payload)
        except httpx.HTTPError as error:
            # The bot token is part of the URL: never let it into a stored error message.
            raise TemporaryFailure(
                f"{type(error).__name__} calling Telegram {method}: "
                + str(error).replace(token, "<bot_token>")
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.status_code < 400 and body.get("ok") is True:
            result = body.get("result")
            if not isinstance(result, dict):
                raise PermanentFailure(f"Telegram answered {method} without a result")
            return result
        code = body.get("error_code") or response.status_code
        description = str(body.get("description") or response.reason_phrase or "error")
        message = f"{code}: {description}"
        parameters = _object(body.get("parameters"))
        if code == 429 or response.status_code == 429 or response.status_code >= 500:
            retry_after = parameters.get("retry_after")
            raise TemporaryFailure(
                message,
                retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        raise PermanentFailure(message, code=f"telegram_{code}")


register(TelegramBot(), sends=(("telegram", "telegram"),))

"""WhatsApp Business through Meta's Cloud API: webhooks in, Graph API messages out.

Webhooks (``/webhooks/whatsapp/{channel_id}``): Meta checks the subscription with a GET
(``hub.mode``, ``hub.verify_token``, ``hub.challenge``) and signs every POST with
``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body, key = app secret>``. A body holds
``entry[].changes[].value`` with ``messages[]`` (from customers) and ``statuses[]`` (receipts
of what the business sent). The sender's ``wa_id`` is both a ``whatsapp`` and a ``phone``
identity, so a customer known by phone from a store or an SMS is recognised on WhatsApp.

Sending: ``POST {api_base_url}/{phone_number_id}/messages`` with the access token as bearer.
Free-form text is only allowed inside the customer's 24-hour service window (checked when the
reply is queued, in ``conversations.service``); templates go at any time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from fastapi.responses import PlainTextResponse, Response

from hilos.channels.base import (
    BadPayload,
    ChannelInfo,
    Ignored,
    Inbound,
    Item,
    Outgoing,
    PermanentFailure,
    Receipt,
    Sent,
    WebhookRequest,
    hmac_hex,
    raise_for_provider,
    require_signature,
)
from hilos.channels.registry import register

GRAPH_API = "https://graph.facebook.com/v21.0"
_MEDIA_TYPES = {"image": "image", "audio": "audio", "video": "video", "document": "file"}
_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


def meta_signature_check(channel: ChannelInfo, request: WebhookRequest) -> None:
    """Meta's ``X-Hub-Signature-256`` (WhatsApp, Messenger and Instagram alike)."""
    expected = "sha256=" + hmac_hex(channel.setting("app_secret"), request.body)
    given = request.headers.get("x-hub-signature-256")
    require_signature(expected, given, header="X-Hub-Signature-256")


def meta_challenge(channel: ChannelInfo, request: WebhookRequest) -> Response:
    """Meta's subscription check: echo ``hub.challenge`` when the verify token matches."""
    query = request.query
    if query.get("hub.mode") == "subscribe" and query.get("hub.verify_token") == channel.config.get(
        "verify_token"
    ):
        return PlainTextResponse(query.get("hub.challenge", ""))
    return PlainTextResponse("verify token does not match", status_code=403)


def json_body(request: WebhookRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadPayload(f"the body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise BadPayload("the body is not a JSON object")
    return body


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: a field of the wrong type reads as
    missing rather than crashing the parser."""
    return value if isinstance(value, dict) else {}


def _list(value: Any, *, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload(f"{where} must be a list")
    return value


def unix_time(value: Any, *, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError) as error:
        raise BadPayload(f"{where}.timestamp is not a Unix time") from error


def _text_of(
    message: dict[str, Any], kind: str
) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
    """The text, attachments and extra data of one WhatsApp message."""
    content = message.get(kind)
    if kind == "text":
        return str(_object(content).get("body", "")), [], None
    if kind in _MEDIA_TYPES or kind == "sticker":
        if not isinstance(content, dict) or not content.get("id"):
            raise BadPayload(f"a {kind} message without {kind}.id")
        attachment = {
            "type": _MEDIA_TYPES.get(kind, "sticker"),
            "mime_type": content.get("mime_type"),
            "name": content.get("filename"),
            "data": {
                "provider": "whatsapp",
                "media_id": content["id"],
                "sha256": content.get("sha256"),
            },
        }
        return str(content.get("caption") or ""), [{k: v for k, v in attachment.items() if v}], None
    if kind == "location":
        location = _object(content)
        text = " ".join(str(location[k]) for k in ("name", "address") if location.get(k))
        data = {k: location.get(k) for k in ("latitude", "longitude", "name", "address", "url")}
        return text, [{"type": "location", "data": {k: v for k, v in data.items() if v}}], None
    if kind == "contacts":
        cards = [c for c in _list(message.get("contacts"), where="contacts") if isinstance(c, dict)]
        names = [str(_object(c.get("name")).get("formatted_name", "")) for c in cards]
        return (
            ", ".join(n for n in names if n),
            [{"type": "contact", "data": c} for c in cards],
            None,
        )
    if kind == "interactive":
        reply = _object(_object(content).get("button_reply") or _object(content).get("list_reply"))
        data = {"reply": {"id": reply.get("id"), "title": reply.get("title")}}
        return str(reply.get("title", "")), [], data
    if kind == "button":
        button = _object(content)
        return str(button.get("text", "")), [], {"reply": {"payload": button.get("payload")}}
    if kind == "reaction":
        reaction = _object(content)
        data = {
            "reaction": {"message_id": reaction.get("message_id"), "emoji": reaction.get("emoji")}
        }
        return str(reaction.get("emoji") or ""), [], data
    raise KeyError(kind)


class WhatsAppCloud:
    provider: ClassVar[str] = "whatsapp"
    kinds: ClassVar[tuple[str, ...]] = ("whatsapp",)
    providers: ClassVar[tuple[str, ...]] = ("meta",)

    def challenge(self, channel: ChannelInfo, request: WebhookRequest) -> Response:
        return meta_challenge(channel, request)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        meta_signature_check(channel, request)

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        body = json_body(request)
        if body.get("object") != "whatsapp_business_account":
            return [Ignored(f"object {body.get('object')!r} is not whatsapp_business_account")]
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise BadPayload("entry must be a list")
        items: list[Item] = []
        for entry in entries:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                raise BadPayload("entry[].changes must be a list")
            for change in changes:
                value = change.get("value") if isinstance(change, dict) else None
                if not isinstance(value, dict):
                    raise BadPayload("entry[].changes[].value must be an object")
                if change.get("field") != "messages":
                    items.append(Ignored(f"field {change.get('field')!r}"))
                    continue
                items.extend(self._messages(value))
                items.extend(self._statuses(value))
        return items

    def _messages(self, value: dict[str, Any]) -> list[Item]:
        names: dict[str, str] = {}
        for contact in _list(value.get("contacts"), where="contacts"):
            name = _object(_object(contact).get("profile")).get("name")
            if isinstance(name, str):
                names[str(_object(contact).get("wa_id"))] = name
        items: list[Item] = []
        for message in _list(value.get("messages"), where="messages"):
            if not isinstance(message, dict) or not message.get("id") or not message.get("from"):
                raise BadPayload("messages[] need id and from")
            kind = str(message.get("type", ""))
            try:
                text, attachments, data = _text_of(message, kind)
            except KeyError:
                items.append(Ignored(f"message type {kind!r}"))
                continue
            if not text and not attachments and data is None:
                items.append(Ignored(f"empty {kind} message"))
                continue
            context = message.get("context")
            if isinstance(context, dict) and context.get("id"):
                data = {**(data or {}), "in_reply_to": context["id"]}
            sender = str(message["from"])
            items.append(
                Inbound(
                    external_id=str(message["id"]),
                    sender_kind="whatsapp",
                    sender_value=sender,
                    sender_name=names.get(sender),
                    sent_at=unix_time(message.get("timestamp"), where="messages[]"),
                    text=text,
                    attachments=attachments,
                    data=data,
                    identities=[("phone", "+" + sender.lstrip("+"))],
                )
            )
        return items

    def _statuses(self, value: dict[str, Any]) -> list[Item]:
        items: list[Item] = []
        for status in _list(value.get("statuses"), where="statuses"):
            if not isinstance(status, dict) or not status.get("id"):
                raise BadPayload("statuses[] need id")
            name = _STATUSES.get(str(status.get("status")))
            if name is None:
                items.append(Ignored(f"status {status.get('status')!r}"))
                continue
            error = None
            errors = status.get("errors")
            if name == "failed" and isinstance(errors, list) and errors:
                first = errors[0] if isinstance(errors[0], dict) else {}
                details = _object(first.get("error_data")).get("details")
                error = {
                    "code": f"whatsapp_{first.get('code', 'error')}",
                    "message": " - ".join(
                        str(p) for p in (first.get("title"), first.get("message"), details) if p
                    ),
                }
            items.append(
                Receipt(
                    external_id=str(status["id"]),
                    status=name,
                    occurred_at=unix_time(status.get("timestamp"), where="statuses[]"),
                    error=error,
                )
            )
        return items

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        base = str(channel.config.get("api_base_url") or GRAPH_API).rstrip("/")
        url = f"{base}/{channel.setting('phone_number_id')}/messages"
        headers = {"Authorization": f"Bearer {channel.setting('access_token')}"}
        to = outgoing.to_value.lstrip("+")
        ids = []
        for payload in self._payloads(outgoing):
            body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
            response = await client.post(url, json={**body, **payload}, headers=headers)
            raise_for_provider(response)
            try:
                ids.append(str(response.json()["messages"][0]["id"]))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise PermanentFailure(
                    f"the Graph API answered without a message id: {response.text[:200]}"
                ) from error
        return Sent(external_id=ids[0], data={"provider_ids": ids} if len(ids) > 1 else None)

    def _payloads(self, outgoing: Outgoing) -> list[dict[str, Any]]:
        if outgoing.template is not None:
            template = outgoing.template
            components = []
            if template.get("parameters"):
                components.append(
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": str(p)} for p in template["parameters"]
                        ],
                    }
                )
            return [
                {
                    "type": "template",
                    "template": {
                        "name": template["name"],
                        "language": {"code": template["language"]},
                        "components": components,
                    },
                }
            ]
        payloads: list[dict[str, Any]] = []
        caption = outgoing.text
        for attachment in outgoing.attachments:
            url = attachment.get("url")
            if not url:
                continue
            kind = {"image": "image", "audio": "audio", "video": "video"}.get(
                attachment.get("type", ""), "document"
            )
            media: dict[str, Any] = {"link": url}
            if kind == "document" and attachment.get("name"):
                media["filename"] = attachment["name"]
            if caption and kind != "audio":
                media["caption"], caption = caption, ""
            payloads.append({"type": kind, kind: media})
        if caption:
            payloads.insert(0, {"type": "text", "text": {"preview_url": False, "body": caption}})
        if not payloads:
            raise PermanentFailure("nothing to send: no text and no attachment with a url")
        return payloads


register(WhatsAppCloud(), sends=(("whatsapp", "meta"),))

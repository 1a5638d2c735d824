"""Messenger and Instagram Direct through Meta's Messenger Platform: webhooks in, Send API out.

Webhooks (``/webhooks/messenger/{channel_id}`` and ``/webhooks/instagram/{channel_id}``): Meta
checks the subscription with a GET (``hub.mode``, ``hub.verify_token``, ``hub.challenge``) and
signs every POST with ``X-Hub-Signature-256``, exactly as for WhatsApp. A body holds
``object`` ("page" for Messenger, "instagram" for Instagram) and ``entry[].messaging[]``
events, each from ``sender.id`` (a Page-scoped id, ``messenger`` identity, or an
Instagram-scoped id, ``instagram`` identity) with a ``timestamp`` in milliseconds:

- ``message``: text, attachments (their ``payload.url`` is kept; Meta's CDN links expire),
  quick-reply payloads and replies to earlier messages. ``is_echo`` (what the Page itself
  sent), ``is_deleted`` (an unsent Instagram message) and ``is_unsupported`` are ignored.
- ``postback`` (a button, the Get Started button, a menu item): stored as a message whose
  text is the button's title and whose data holds its payload.
- ``reaction``: stored as a message carrying the emoji and the id of the message reacted to.
  Meta gives a reaction no id of its own, so its id is made from the reacted message, the
  sender, the action and the time: a redelivery of the same reaction is the same message.
- ``delivery`` with ``mids``: a "delivered" receipt for each. Instagram's ``read`` names the
  message (``read.mid``): a "read" receipt for it.
- Messenger's ``read`` (and a ``delivery`` from old clients without ``mids``) only carries a
  *watermark*: "everything sent before this moment was read". Adapters never read the
  database, so it becomes a ``WatermarkReceipt`` for the sender, and ingest turns it into a
  receipt for each reply sent to them on this channel by that moment.

Sending: ``POST {api_base_url}/{page_id}/messages`` with the Page access token as a bearer
token (the Graph API takes it there as well as in ``access_token``; a header keeps it out of
URLs and logs), ``messaging_type: RESPONSE``. A message carries text *or* one attachment, so a
reply with attachments is several calls; the first answer's ``message_id`` names the reply.
Meta answers errors as ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``; its throttling and transient codes are retried whatever the HTTP status.
Replies more than 24 hours after the customer's last message are refused by Meta (code 10,
subcode 2018278) and fail with that reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from fastapi.responses import Response

from hilos.channels.base import (
    BadPayload,
    ChannelInfo,
    Ignored,
    Inbound,
    Item,
    Outgoing,
    PermanentFailure,
    Receipt,
    SendError,
    Sent,
    TemporaryFailure,
    WatermarkReceipt,
    WebhookRequest,
    raise_for_provider,
)
from hilos.channels.registry import register
from hilos.channels.whatsapp import GRAPH_API, json_body, meta_challenge, meta_signature_check

_MEDIA_TYPES = {"image": "image", "audio": "audio", "video": "video", "file": "file"}
# Shared posts, reels, link previews: kept as a link the agent can open.
_LINK_TYPES = ("fallback", "share", "reel", "ig_reel", "post", "ig_post", "story_mention")
# Graph API error codes that mean "try again later": unknown/service errors, rate limits,
# Messenger's temporary send failure. Meta sends some of them with an HTTP 400.
_TEMPORARY_CODES = {1, 2, 4, 17, 32, 613, 1200}
# Messenger's limit on a text message.
TEXT_LIMIT = 2000


def millis(value: Any, *, where: str) -> datetime:
    """A Meta timestamp in milliseconds since the epoch."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError) as error:
        raise BadPayload(f"{where}.timestamp is not a time in milliseconds") from error


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


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _attachment(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadPayload("message.attachments[] need a type")
    kind = raw["type"]
    payload = _object(raw.get("payload"))
    url = payload.get("url")
    if kind == "location":
        coordinates = _object(payload.get("coordinates"))
        data = {
            "latitude": coordinates.get("lat"),
            "longitude": coordinates.get("long"),
            "name": raw.get("title"),
            "url": raw.get("url") or url,
        }
        return {"type": "location", "data": {k: v for k, v in data.items() if v is not None}}
    if kind == "image" and payload.get("sticker_id"):
        kind = "sticker"
    attachment: dict[str, Any] = {
        "type": _MEDIA_TYPES.get(kind, "sticker" if kind == "sticker" else "file"),
        "url": url,
        "name": raw.get("title") or payload.get("title"),
        "data": {
            k: v
            for k, v in {
                "provider": "meta",
                "meta_type": kind,
                "sticker_id": payload.get("sticker_id"),
                "reel_video_id": payload.get("reel_video_id"),
            }.items()
            if v is not None
        },
    }
    return {k: v for k, v in attachment.items() if v}


class MetaMessaging:
    """What Messenger and Instagram share; the two subclasses name the path and the object."""

    provider: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    providers: ClassVar[tuple[str, ...]] = ("meta",)
    # The webhook's ``object`` and the identity kind of its senders.
    object_name: ClassVar[str]
    identity: ClassVar[str]

    def challenge(self, channel: ChannelInfo, request: WebhookRequest) -> Response:
        return meta_challenge(channel, request)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        meta_signature_check(channel, request)

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        body = json_body(request)
        if body.get("object") != self.object_name:
            return [Ignored(f"object {body.get('object')!r} is not {self.object_name}")]
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise BadPayload("entry must be a list")
        items: list[Item] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise BadPayload("entry[] must be objects")
            events = entry.get("messaging")
            if events is None:
                # Feed changes, comments, handover "standby" events: not conversations here.
                fields = sorted(k for k in entry if k not in ("id", "time"))
                items.append(Ignored(f"entry without messaging ({', '.join(fields)})"))
                continue
            if not isinstance(events, list):
                raise BadPayload("entry[].messaging must be a list")
            for event in events:
                if not isinstance(event, dict):
                    raise BadPayload("entry[].messaging[] must be objects")
                items.extend(self._event(event))
        return items

    def _event(self, event: dict[str, Any]) -> list[Item]:
        sender = event.get("sender")
        if not isinstance(sender, dict):
            raise BadPayload("messaging[] needs a sender")
        if "delivery" in event:
            return self._delivery(event)
        if "read" in event:
            return self._read(event)
        sender_id = sender.get("id")
        if not sender_id:
            # The chat plugin's guests come as sender.user_ref, not a Page-scoped id.
            return [Ignored("sender without id (a chat plugin user_ref)")]
        sent_at = millis(event.get("timestamp"), where="messaging[]")
        if "message" in event:
            return [self._message(event["message"], str(sender_id), sent_at)]
        if "postback" in event:
            return [self._postback(event["postback"], str(sender_id), sent_at)]
        if "reaction" in event:
            return [self._reaction(event["reaction"], str(sender_id), sent_at)]
        kinds = sorted(k for k in event if k not in ("sender", "recipient", "timestamp"))
        return [Ignored(f"messaging event {', '.join(kinds) or 'without content'}")]

    def _inbound(self, *, external_id: str, sender: str, sent_at: datetime, **rest: Any) -> Inbound:
        return Inbound(
            external_id=external_id,
            sender_kind=self.identity,
            sender_value=sender,
            sent_at=sent_at,
            **rest,
        )

    def _message(self, message: Any, sender: str, sent_at: datetime) -> Item:
        if not isinstance(message, dict) or not message.get("mid"):
            raise BadPayload("messaging[].message needs a mid")
        for flag in ("is_echo", "is_deleted", "is_unsupported"):
            if message.get(flag):
                return Ignored(f"message {flag.removeprefix('is_')}")
        raw_attachments = message.get("attachments") or []
        if not isinstance(raw_attachments, list):
            raise BadPayload("message.attachments must be a list")
        attachments = [_attachment(a) for a in raw_attachments]
        data: dict[str, Any] = {}
        quick_reply = message.get("quick_reply")
        if isinstance(quick_reply, dict):
            data["reply"] = {"payload": quick_reply.get("payload")}
        reply_to = message.get("reply_to")
        if isinstance(reply_to, dict):
            if reply_to.get("mid"):
                data["in_reply_to"] = str(reply_to["mid"])
            story = reply_to.get("story")
            if isinstance(story, dict):
                data["story_reply"] = {"id": story.get("id"), "url": story.get("url")}
        text = message.get("text") or ""
        if not isinstance(text, str):
            raise BadPayload("message.text must be a string")
        if not text and not attachments:
            return Ignored("message without text or attachments")
        return self._inbound(
            external_id=str(message["mid"]),
            sender=sender,
            sent_at=sent_at,
            text=text,
            attachments=attachments,
            data=data or None,
        )

    def _postback(self, postback: Any, sender: str, sent_at: datetime) -> Item:
        if not isinstance(postback, dict):
            raise BadPayload("messaging[].postback must be an object")
        millis_id = int(sent_at.timestamp() * 1000)
        return self._inbound(
            external_id=str(postback.get("mid") or f"postback:{sender}:{millis_id}"),
            sender=sender,
            sent_at=sent_at,
            text=str(postback.get("title") or postback.get("payload") or ""),
            data={"postback": {"title": postback.get("title"), "payload": postback.get("payload")}},
        )

    def _reaction(self, reaction: Any, sender: str, sent_at: datetime) -> Item:
        if not isinstance(reaction, dict) or not reaction.get("mid"):
            raise BadPayload("messaging[].reaction needs the mid it reacts to")
        action = str(reaction.get("action") or "react")
        emoji = reaction.get("emoji")
        millis_id = int(sent_at.timestamp() * 1000)
        return self._inbound(
            external_id=f"reaction:{reaction['mid']}:{sender}:{action}:{millis_id}",
            sender=sender,
            sent_at=sent_at,
            text=str(emoji or "") if action == "react" else "",
            data={
                "reaction": {
                    "message_id": str(reaction["mid"]),
                    "emoji": emoji,
                    "name": reaction.get("reaction"),
                    "action": action,
                }
            },
        )

    def _delivery(self, event: dict[str, Any]) -> list[Item]:
        delivery = event["delivery"]
        if not isinstance(delivery, dict):
            raise BadPayload("messaging[].delivery must be an object")
        mids = delivery.get("mids")
        if not mids:
            return self._watermark(event, delivery, "delivered")
        if not isinstance(mids, list):
            raise BadPayload("delivery.mids must be a list")
        moment = event.get("timestamp") or delivery.get("watermark")
        occurred_at = millis(moment, where="messaging[].delivery")
        return [
            Receipt(external_id=str(mid), status="delivered", occurred_at=occurred_at)
            for mid in mids
        ]

    def _read(self, event: dict[str, Any]) -> list[Item]:
        read = event["read"]
        if not isinstance(read, dict):
            raise BadPayload("messaging[].read must be an object")
        if not read.get("mid"):
            return self._watermark(event, read, "read")
        moment = event.get("timestamp") or read.get("watermark")
        return [
            Receipt(
                external_id=str(read["mid"]),
                status="read",
                occurred_at=millis(moment, where="messaging[].read"),
            )
        ]

    def _watermark(self, event: dict[str, Any], report: dict[str, Any], status: str) -> list[Item]:
        """Messenger's "everything sent to me before this moment": the replies it covers are
        found when it is stored (``receipts.record_watermark``)."""
        sender_id = (event.get("sender") or {}).get("id")
        if not sender_id or report.get("watermark") is None:
            return [Ignored(f"{status} event without a message id or a watermark")]
        watermark = millis(report["watermark"], where=f"messaging[].{status}.watermark")
        return [
            WatermarkReceipt(
                recipient_kind=self.identity,
                recipient_value=str(sender_id),
                status=status,
                watermark=watermark,
            )
        ]

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        base = str(channel.config.get("api_base_url") or GRAPH_API).rstrip("/")
        url = f"{base}/{channel.setting('page_id')}/messages"
        headers = {"Authorization": f"Bearer {channel.setting('page_access_token')}"}
        ids: list[str] = []
        for message in self._messages(outgoing):
            body = {
                "recipient": {"id": outgoing.to_value},
                "messaging_type": "RESPONSE",
                "message": message,
            }
            try:
                response = await client.post(url, json=body, headers=headers)
                _raise_for_meta(response)
                ids.append(_message_id(response))
            except (SendError, httpx.HTTPError) as error:
                if not ids:
                    raise
                # Part of the reply reached the customer: sending it all again would repeat it.
                raise PermanentFailure(
                    f"only {len(ids)} of the reply's parts were sent: {error}",
                    code="partially_sent",
                ) from error
        return Sent(external_id=ids[0], data={"provider_ids": ids} if len(ids) > 1 else None)

    def _messages(self, outgoing: Outgoing) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {"text": piece} for piece in split_text(outgoing.text, TEXT_LIMIT)
        ]
        for attachment in outgoing.attachments:
            url = attachment.get("url")
            if not url:
                continue
            kind = attachment.get("type", "")
            payload: dict[str, Any] = {"url": url}
            if self.provider == "messenger":
                payload["is_reusable"] = False
            messages.append(
                {
                    "attachment": {
                        "type": kind if kind in ("image", "audio", "video") else "file",
                        "payload": payload,
                    }
                }
            )
        if not messages:
            raise PermanentFailure("nothing to send: no text and no attachment with a url")
        return messages


def _raise_for_meta(response: httpx.Response) -> None:
    """Meta's error object, with its throttling codes retried whatever the HTTP status."""
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        raise_for_provider(response)
        return
    code = error.get("code")
    details = [f"code {code}"]
    if error.get("error_subcode"):
        details.append(f"subcode {error['error_subcode']}")
    if error.get("fbtrace_id"):
        details.append(f"fbtrace_id {error['fbtrace_id']}")
    message = f"{response.status_code}: {error.get('message', 'error')} ({', '.join(details)})"
    if response.status_code == 429 or response.status_code >= 500 or code in _TEMPORARY_CODES:
        retry_after: float | None = None
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        raise TemporaryFailure(message, retry_after=retry_after)
    raise PermanentFailure(message, code=f"meta_{code}" if code else "provider_error")


def _message_id(response: httpx.Response) -> str:
    try:
        return str(response.json()["message_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise PermanentFailure(
            f"the Send API answered without a message_id: {response.text[:200]}"
        ) from error


class Messenger(MetaMessaging):
    provider: ClassVar[str] = "messenger"
    kinds: ClassVar[tuple[str, ...]] = ("messenger",)
    object_name: ClassVar[str] = "page"
    identity: ClassVar[str] = "messenger"


class Instagram(MetaMessaging):
    provider: ClassVar[str] = "instagram"
    kinds: ClassVar[tuple[str, ...]] = ("instagram",)
    object_name: ClassVar[str] = "instagram"
    identity: ClassVar[str] = "instagram"


register(Messenger(), sends=(("messenger", "meta"),))
register(Instagram(), sends=(("instagram", "meta"),))

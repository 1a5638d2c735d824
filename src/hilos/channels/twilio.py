"""Twilio: SMS and WhatsApp messages, and phone-call status callbacks, in and out.

One webhook path (``/webhooks/twilio/{channel_id}``) serves the three kinds of channel Twilio
carries (``provider: twilio``): ``sms``, ``whatsapp`` and ``phone``. Twilio posts
form-encoded bodies:

- a message from a customer (``MessageSid``, ``From``, ``Body``, ``NumMedia`` with
  ``MediaUrl{N}``/``MediaContentType{N}``; on WhatsApp also ``ProfileName``, ``WaId``, a
  shared location, a quick-reply button). On WhatsApp ``From`` is ``whatsapp:+34...``: the
  sender is a ``whatsapp`` identity and the same number a ``phone`` identity, so a customer
  known by phone is recognised. On SMS the sender is a ``phone`` identity.
- a status callback of a message Hilos sent (``MessageStatus``: sent, delivered, read, and
  undelivered or failed, both ``failed``, with ``ErrorCode``/``ErrorMessage``); queued,
  accepted, sending and the like are acknowledged and ignored. ``MessageStatus=received``
  belongs to an incoming message and is read as one (a repeat changes nothing).
- a voice status callback (``CallSid``, ``CallStatus``, ``CallDuration``, ``Direction``,
  ``Timestamp``...) on a ``phone`` channel, mapped to call events for ``channels.calls``:

  ===============================================  ==========================================
  Twilio says                                      call event
  ===============================================  ==========================================
  ``CallStatus=ringing``                           ``ringing``
  ``CallStatus=in-progress``                       ``answered``
  ``CallStatus=completed``                         ``ended`` (``CallDuration`` seconds)
  ``CallStatus=busy|no-answer|canceled|failed``    ``missed``
  ``DialCallStatus=busy|no-answer|failed|...``     ``missed`` (no agent picked up the <Dial>)
  ``DialCallStatus=completed|answered``            ``answered``
  ``AnsweredBy=machine_*|fax`` (outgoing calls)    ``voicemail`` (the customer's machine)
  ``RecordingUrl``/``TranscriptionText`` from      ``voicemail`` with the recording and its
  the ``<Record>`` verb (no ``RecordingSource``,   transcript: the caller left a message
  or ``RecordVerb``)
  a recording of the conversation itself           ``ended`` with ``recording_url``
  (``RecordingSource=DialVerb``, ``Conference``,
  ``OutboundAPI``, ...)
  ``queued``, ``initiated``                        ignored
  ===============================================  ==========================================

  The caller is ``From`` on incoming calls and ``To`` on outgoing ones (``outbound-api``).
  Legs Twilio dials to an agent (``outbound-dial``), calls from Twilio Client or SIP, and
  callers who withhold their number are acknowledged and ignored: there is no customer number
  to file them under. Point the number's *call status changes* callback (and, for voicemail,
  the ``<Record>`` verb's ``action`` and ``transcribeCallback``) at the channel's webhook; its
  *a call comes in* URL stays with the business's IVR. A ``recordingStatusCallback`` names no
  caller, so it is acknowledged and ignored. Hilos answers an empty TwiML ``<Response/>``,
  which is no instruction (after ``<Record>``, it ends the call).

Signature: ``X-Twilio-Signature`` is base64(HMAC-SHA1(auth token, URL + every POST parameter's
name and value, sorted by name)). The URL is the one Twilio called, which behind a proxy or a
tunnel is not the URL the app sees, so the signature is accepted for any of: the request's
URL; the same path and query under ``HILOS_BASE_URL`` (the public address, read from the
environment through ``core.settings.get_settings`` because adapters do not see the app); the
channel's ``webhook_url`` setting when the number is configured with some other exact URL;
each with and without the scheme's default port (Twilio's own libraries try both). None is
taken from the request's headers, so a signature made for another address is refused. The
check is written here rather than taken from the ``twilio`` package: it is a dozen lines, and
the package would bring a whole REST client for it.

Sending: ``POST {api_base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` (default
``https://api.twilio.com``) with HTTP Basic ``account_sid:auth_token`` and form fields ``To``,
``From`` (``from_number``; ``whatsapp:``-prefixed on WhatsApp; a Messaging Service ``MG...``
sid goes as ``MessagingServiceSid``), ``Body``, ``MediaUrl`` and ``StatusCallback`` (the
channel's ``webhook_url``, or its path under ``HILOS_BASE_URL`` when that is set). An SMS/MMS
carries all its media in one message; WhatsApp takes one media per message, so the text rides
with the first and each further file is a message of its own. A WhatsApp template is a Twilio
Content template: the channel's ``content_sids`` setting maps a template name (or
``name:language``) to its ``HX...`` sid, sent as ``ContentSid`` with ``ContentVariables``.
Twilio's errors (``{code, message, more_info, status}``) fail the message with Twilio's words
and code; 429 and 5xx are retried.

Settings: ``account_sid``, ``auth_token``, ``from_number``, ``api_base_url``, and optionally
``webhook_url`` and ``content_sids``. A ``phone`` channel needs only ``auth_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi.responses import Response

from hilos.channels.base import (
    BadPayload,
    CallEvent,
    ChannelInfo,
    Ignored,
    Inbound,
    Item,
    Outgoing,
    PermanentFailure,
    Receipt,
    Sent,
    WebhookRequest,
    raise_for_provider,
)
from hilos.channels.registry import register
from hilos.core.clock import now
from hilos.core.errors import Unauthorized
from hilos.core.settings import get_settings

TWILIO_API = "https://api.twilio.com"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_MESSAGE_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}
_CALL_STATUSES = {
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "ended",
    "busy": "missed",
    "no-answer": "missed",
    "canceled": "missed",
    "failed": "missed",
}
_DIAL_STATUSES = {
    "answered": "answered",
    "completed": "answered",
    "busy": "missed",
    "no-answer": "missed",
    "canceled": "missed",
    "failed": "missed",
}
_VOICEMAIL_SOURCES = ("", "RecordVerb")
# The numbers Twilio puts in From when a caller withholds theirs (Anonymous, Restricted,
# Unavailable, Blocked, as spelled on a keypad).
_WITHHELD_NUMBERS = {"+266696687", "+7378742833", "+8656696", "+2562533"}
# Twilio's words for its commonest delivery errors, when the callback carries only the code.
_ERROR_TEXTS = {
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "63016": "Outside the WhatsApp 24-hour window: send an approved template",
}


def twilio_signature(auth_token: str, url: str, form: Sequence[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` of a form POST to ``url``."""
    signed = url + "".join(name + value for name, value in sorted(form))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _with_and_without_port(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if default is None or not host:
        return [url]
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    port = parts.port
    if port is not None and port != default:
        return [url]
    bare = urlunsplit((parts.scheme, prefix + host, parts.path, parts.query, parts.fragment))
    ported = urlunsplit(
        (parts.scheme, f"{prefix}{host}:{default}", parts.path, parts.query, parts.fragment)
    )
    return [bare, ported]


def public_base_url() -> str | None:
    """``HILOS_BASE_URL`` if it was set: the address Twilio reaches Hilos at."""
    settings = get_settings()
    return settings.base_url.rstrip("/") if "base_url" in settings.model_fields_set else None


def candidate_urls(channel: ChannelInfo, request: WebhookRequest) -> list[str]:
    """The URLs Twilio may have signed for this request (see the module docstring)."""
    seen = urlsplit(request.url)
    path_and_query = seen.path + (f"?{seen.query}" if seen.query else "")
    candidates = [request.url]
    base = public_base_url()
    if base:
        candidates.append(base + path_and_query)
    configured = channel.config.get("webhook_url")
    if isinstance(configured, str) and configured:
        candidates.append(configured)
    urls: list[str] = []
    for candidate in candidates:
        for url in _with_and_without_port(candidate):
            if url not in urls:
                urls.append(url)
    return urls


def _form(request: WebhookRequest) -> dict[str, str]:
    if not request.form:
        raise BadPayload("the body is not a form-encoded Twilio webhook")
    return dict(request.form)


def _int(form: Mapping[str, str], key: str, *, default: int | None = None) -> int | None:
    value = form.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as error:
        raise BadPayload(f"{key} is not a whole number: {value!r}") from error
    if number < 0:
        raise BadPayload(f"{key} is negative: {value!r}")
    return number


def _attachment_type(content_type: str) -> str:
    major = content_type.split("/", 1)[0].lower()
    return major if major in ("image", "audio", "video") else "file"


def _occurred_at(form: Mapping[str, str]) -> datetime:
    """A voice callback's ``Timestamp`` (RFC 2822); other callbacks carry none: now."""
    value = form.get("Timestamp")
    if not value:
        return now()
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError) as error:
        raise BadPayload(f"Timestamp is not an RFC 2822 date: {value!r}") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Twilio:
    provider: ClassVar[str] = "twilio"
    kinds: ClassVar[tuple[str, ...]] = ("sms", "whatsapp", "phone")
    providers: ClassVar[tuple[str, ...]] = ("twilio",)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        token = channel.setting("auth_token")
        given = (request.headers.get("x-twilio-signature") or "").strip()
        if not given:
            raise Unauthorized("missing X-Twilio-Signature header", code="bad_signature")
        for url in candidate_urls(channel, request):
            expected = twilio_signature(token, url, request.form)
            if hmac.compare_digest(expected.encode(), given.encode()):
                return
        raise Unauthorized(
            "X-Twilio-Signature does not match this URL and body", code="bad_signature"
        )

    def acknowledge(self, stored: Any) -> Response:
        return Response(EMPTY_TWIML, media_type="text/xml")

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        form = _form(request)
        if form.get("CallSid"):
            if channel.kind != "phone":
                return [Ignored(f"a voice callback on a {channel.kind} channel")]
            return self._call(form)
        if channel.kind == "phone":
            return [Ignored("a messaging callback on a phone channel")]
        message_id = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
        if form.get("MessageStatus", "received") not in ("received", "receiving"):
            if not message_id:
                raise BadPayload("a status callback without MessageSid")
            return [self._receipt(form, message_id)]
        if message_id:
            return [self._inbound(form, message_id)]
        return [Ignored("a Twilio callback with neither MessageSid nor CallSid")]

    def _inbound(self, form: Mapping[str, str], message_id: str) -> Item:
        sender = form.get("From", "").strip()
        if not sender:
            raise BadPayload("a message without From")
        identities: list[tuple[str, str]] = []
        if sender.startswith("whatsapp:"):
            number = sender.removeprefix("whatsapp:")
            kind, value = "whatsapp", form.get("WaId") or number
            identities.append(("phone", "+" + number.lstrip("+")))
        elif ":" in sender:
            return Ignored(f"a message from {sender.split(':', 1)[0]!r}")
        else:
            kind, value = "phone", sender
        attachments: list[dict[str, Any]] = []
        for index in range(_int(form, "NumMedia", default=0) or 0):
            url = form.get(f"MediaUrl{index}")
            if not url:
                raise BadPayload(f"NumMedia says there is a MediaUrl{index}, but there is none")
            content_type = form.get(f"MediaContentType{index}", "")
            attachment = {
                "type": _attachment_type(content_type),
                "url": url,
                "mime_type": content_type or None,
                "data": {"provider": "twilio"},
            }
            attachments.append({k: v for k, v in attachment.items() if v})
        text = form.get("Body", "")
        data: dict[str, Any] = {}
        if form.get("Latitude") and form.get("Longitude"):
            location = {
                "latitude": form["Latitude"],
                "longitude": form["Longitude"],
                "name": form.get("Label"),
                "address": form.get("Address"),
            }
            attachments.append(
                {"type": "location", "data": {k: v for k, v in location.items() if v}}
            )
        if form.get("ButtonPayload") or form.get("ButtonText"):
            data["reply"] = {"payload": form.get("ButtonPayload"), "title": form.get("ButtonText")}
            text = text or form.get("ButtonText", "")
        if form.get("OriginalRepliedMessageSid"):
            data["in_reply_to"] = form["OriginalRepliedMessageSid"]
        if not text and not attachments and not data:
            return Ignored("an empty message")
        return Inbound(
            external_id=message_id,
            sender_kind=kind,
            sender_value=value,
            sender_name=form.get("ProfileName") or None,
            sent_at=now(),
            text=text,
            attachments=attachments,
            identities=identities,
            data=data or None,
        )

    def _receipt(self, form: Mapping[str, str], message_id: str) -> Item:
        raw = form.get("MessageStatus", "")
        status = _MESSAGE_STATUSES.get(raw)
        if status is None:
            return Ignored(f"message status {raw!r}")
        error = None
        if status == "failed":
            code = form.get("ErrorCode") or ""
            words = form.get("ErrorMessage") or _ERROR_TEXTS.get(code) or f"the message was {raw}"
            error = {
                "code": f"twilio_{code}" if code else f"twilio_{raw}",
                "message": f"{words} (Twilio error {code})" if code else words,
            }
        return Receipt(external_id=message_id, status=status, occurred_at=now(), error=error)

    def _call(self, form: Mapping[str, str]) -> list[Item]:
        call_id = form["CallSid"]
        direction_raw = form.get("Direction", "inbound")
        if direction_raw == "outbound-dial":
            return [Ignored("a <Dial> leg to an agent")]
        direction = "outbound" if direction_raw.startswith("outbound") else "inbound"
        number = (form.get("To") if direction == "outbound" else form.get("From")) or ""
        number = number.strip()
        if not number and "RecordingStatus" in form:
            return [Ignored("a recordingStatusCallback names no caller: use <Record action>")]
        if not number:
            raise BadPayload(f"a call without {'To' if direction == 'outbound' else 'From'}")
        if ":" in number:
            return [Ignored(f"a call from a {number.split(':', 1)[0]} address")]
        if number.lower() in ("anonymous", "restricted", "unknown") or number in _WITHHELD_NUMBERS:
            return [Ignored("a caller who withheld their number")]
        at = _occurred_at(form)
        events: dict[str, dict[str, Any]] = {}
        raw_status = form.get("CallStatus", "")
        event = _CALL_STATUSES.get(raw_status)
        if form.get("DialCallStatus"):
            event = _DIAL_STATUSES.get(form["DialCallStatus"], event)
        answered_by = form.get("AnsweredBy", "")
        if event == "answered" and answered_by.startswith(("machine", "fax")):
            event = "voicemail"
        if event is not None:
            duration_key = "DialCallDuration" if form.get("DialCallStatus") else "CallDuration"
            events[event] = {
                "duration_seconds": _int(form, duration_key) if event == "ended" else None
            }
        recording = None
        if form.get("RecordingStatus", "completed") == "completed":
            recording = form.get("RecordingUrl") or None
        transcript = None
        if form.get("TranscriptionStatus", "completed") == "completed":
            transcript = form.get("TranscriptionText") or None
        if recording or transcript:
            source = form.get("RecordingSource", "")
            kind = "voicemail" if source in _VOICEMAIL_SOURCES else "ended"
            events.setdefault(kind, {}).update(recording_url=recording, transcript=transcript)
        if not events:
            return [Ignored(f"call status {raw_status!r}")]
        return [
            CallEvent(
                call_id=call_id,
                event=name,
                caller_kind="phone",
                caller_value=number,
                occurred_at=at,
                direction=direction,
                caller_name=form.get("CallerName") or None,
                **{k: v for k, v in details.items() if v is not None},
            )
            for name, details in events.items()
        ]

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        account = channel.setting("account_sid")
        base = str(channel.config.get("api_base_url") or TWILIO_API).rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{account}/Messages.json"
        auth = (account, channel.setting("auth_token"))
        ids = []
        for fields in self._requests(channel, outgoing):
            response = await client.post(url, data=fields, auth=auth)
            _raise_for_twilio(response)
            try:
                ids.append(str(response.json()["sid"]))
            except (ValueError, KeyError, TypeError) as error:
                raise PermanentFailure(
                    f"Twilio answered without a message sid: {response.text[:200]}"
                ) from error
        return Sent(external_id=ids[0], data={"provider_ids": ids} if len(ids) > 1 else None)

    def _requests(self, channel: ChannelInfo, outgoing: Outgoing) -> list[dict[str, Any]]:
        """The form of each Messages API call one reply needs."""
        whatsapp = channel.kind == "whatsapp"
        if outgoing.to_kind not in ("phone", "whatsapp"):
            raise PermanentFailure(
                f"Twilio cannot deliver to a {outgoing.to_kind} address", code="no_address"
            )
        to = "+" + outgoing.to_value.lstrip("+")
        sender = channel.setting("from_number")
        common: dict[str, Any] = {"To": f"whatsapp:{to}" if whatsapp else to}
        if sender.startswith("MG"):
            common["MessagingServiceSid"] = sender
        else:
            common["From"] = f"whatsapp:{sender.removeprefix('whatsapp:')}" if whatsapp else sender
        callback = channel.config.get("webhook_url") or (
            f"{base}/webhooks/twilio/{channel.id}" if (base := public_base_url()) else None
        )
        if callback:
            common["StatusCallback"] = callback
        if outgoing.template is not None:
            return [{**common, **self._template(channel, outgoing.template)}]
        media = [str(a["url"]) for a in outgoing.attachments if a.get("url")]
        if not outgoing.text and not media:
            raise PermanentFailure("nothing to send: no text and no attachment with a url")
        if not whatsapp:
            first: dict[str, Any] = {**common, "Body": outgoing.text}
            if media:
                first["MediaUrl"] = media
            return [first]
        requests: list[dict[str, Any]] = [{**common, "Body": outgoing.text}]
        if media:
            requests[0]["MediaUrl"] = media[0]
            requests.extend({**common, "MediaUrl": url} for url in media[1:])
        return requests

    def _template(self, channel: ChannelInfo, template: Mapping[str, Any]) -> dict[str, Any]:
        if channel.kind != "whatsapp":
            raise PermanentFailure(f"a {channel.kind} channel has no templates", code="no_template")
        sids = channel.config.get("content_sids")
        sids = sids if isinstance(sids, dict) else {}
        name, language = template.get("name"), template.get("language")
        sid = sids.get(f"{name}:{language}") or sids.get(name)
        if not sid:
            raise PermanentFailure(
                f"template {name!r} has no Twilio Content sid: add it to the channel's "
                "content_sids setting",
                code="no_template",
            )
        variables = {str(i): str(p) for i, p in enumerate(template.get("parameters") or [], 1)}
        fields: dict[str, Any] = {"ContentSid": sid}
        if variables:
            fields["ContentVariables"] = json.dumps(variables, ensure_ascii=False)
        return fields


def _raise_for_twilio(response: httpx.Response) -> None:
    """``raise_for_provider``, with Twilio's own error code on a refused message."""
    try:
        raise_for_provider(response)
    except PermanentFailure as failure:
        code = None
        try:
            body = response.json()
            code = body.get("code") if isinstance(body, dict) else None
        except ValueError:
            pass
        if code is None:
            raise
        raise PermanentFailure(
            f"{failure.message} (Twilio error {code})", code=f"twilio_{code}"
        ) from None


register(Twilio(), sends=(("sms", "twilio"), ("whatsapp", "twilio")))

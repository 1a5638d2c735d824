"""Providers' webhooks fuzzed with hypothesis: whatever arrives, signed as the provider signs,
the answer is never a 5xx, a refusal is a 4xx JSON error, and a refused delivery stores nothing.

Three ways:

- each adapter's ``parse`` is called directly, many times (no database: fast), with the real
  sample payloads of the providers (``tests/channels/samples``, the same files as the shared
  ``provider-samples``) and variants of them, mutated a few places at a time (keys dropped,
  types changed, values nested wrongly, huge strings), and with arbitrary bytes. ``parse`` must
  return items of the types ingest relies on, or raise a ``HilosError`` with a 4xx status: any
  other exception is a 500;
- the same kinds of bodies go through HTTP to ``/webhooks/{provider}/{channel_id}``, signed
  correctly, with right and wrong content types, so what ``parse`` let through is stored (or
  refused) the whole way. Accepted is 200 (a payload type an adapter does not handle is
  acknowledged with 200 and ignored, as providers require, or they retry it forever); refused
  is 400, 413, 415 or 422 with ``{"error": {"code", "message"}}``, and then no message was
  stored. The web chat widget's visitor endpoints get the same treatment;
- and, without chance, every field of every seed in turn made too long for any column (300
  characters) or too big for any date (10^30): what PostgreSQL would refuse halfway through a
  delivery must be cut to fit or refused up front.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels import registry
from hilos.channels.base import (
    CallEvent,
    ChannelInfo,
    Ignored,
    Inbound,
    Receipt,
    WatermarkReceipt,
    WebhookRequest,
)
from hilos.conversations.models import Message
from hilos.core.errors import HilosError
from hilos.core.tenancy import TenantContext
from tests.channels import fake_meta_send, fake_telegram, fake_twilio, fake_whatsapp
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parents[1] / "channels" / "samples"
VOICE_TOKEN = "pbx-token-for-the-fuzz"
SHOP = "https://tienda.example"
BASE_URL = "http://hilos.test"

# --- seeds: the providers' samples, and variants that reach other branches of each parser ---


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def _form(name: str) -> dict[str, str]:
    return dict(parse_qsl((SAMPLES / name).read_text().strip(), keep_blank_values=True))


def _whatsapp_seeds() -> list[Any]:
    text, status = _sample("whatsapp-text.json"), _sample("whatsapp-status.json")
    image = copy.deepcopy(text)
    message = image["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(type="image", image={"id": "1234", "mime_type": "image/jpeg", "caption": "Hola"})
    del message["text"]
    located = copy.deepcopy(text)
    message = located["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(type="location", location={"latitude": 40.4, "longitude": -3.7, "name": "Sol"})
    del message["text"]
    button = copy.deepcopy(text)
    message = button["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(
        type="interactive",
        interactive={"type": "button_reply", "button_reply": {"id": "si", "title": "Sí"}},
        context={"from": "34910111222", "id": "wamid.previous"},
    )
    del message["text"]
    failed = copy.deepcopy(status)
    failed["entry"][0]["changes"][0]["value"]["statuses"][0].update(
        status="failed", errors=[{"code": 131047, "title": "Re-engagement message"}]
    )
    return [text, status, image, located, button, failed]


def _meta_seeds(name: str) -> list[Any]:
    text = _sample(name)
    event = text["entry"][0]["messaging"][0]
    postback = copy.deepcopy(text)
    postback["entry"][0]["messaging"][0] = {
        **{k: event[k] for k in ("sender", "recipient", "timestamp")},
        "postback": {"title": "Empezar", "payload": "GET_STARTED", "mid": "m_postback"},
    }
    reaction = copy.deepcopy(text)
    reaction["entry"][0]["messaging"][0] = {
        **{k: event[k] for k in ("sender", "recipient", "timestamp")},
        "reaction": {"mid": "m_reacted", "action": "react", "emoji": "❤", "reaction": "love"},
    }
    read = copy.deepcopy(text)
    read["entry"][0]["messaging"][0] = {
        **{k: event[k] for k in ("sender", "recipient", "timestamp")},
        "read": {"watermark": 1763805600000, "mid": "m_read"},
    }
    delivered = copy.deepcopy(text)
    delivered["entry"][0]["messaging"][0] = {
        **{k: event[k] for k in ("sender", "recipient", "timestamp")},
        "delivery": {"mids": ["m_sent"], "watermark": 1763805600000},
    }
    attachment = copy.deepcopy(text)
    attachment["entry"][0]["messaging"][0]["message"] = {
        "mid": "m_attachment",
        "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}}],
        "reply_to": {"mid": "m_earlier"},
    }
    return [text, postback, reaction, read, delivered, attachment]


def _telegram_seeds() -> list[Any]:
    update = _sample("telegram-update.json")
    message = update["message"]
    photo = copy.deepcopy(update)
    photo["message"].pop("text")
    photo["message"].update(
        photo=[{"file_id": "small", "width": 90}, {"file_id": "big", "width": 800}], caption="Mira"
    )
    contact = copy.deepcopy(update)
    contact["message"].pop("text")
    contact["message"]["contact"] = {
        "phone_number": "+34600111222",
        "first_name": "Iker",
        "user_id": message["from"]["id"],
    }
    edited = {"update_id": 271828183, "edited_message": {**message, "edit_date": 1763805700}}
    callback = {
        "update_id": 271828184,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": message["from"],
            "message": message,
            "data": "pedido:estado",
        },
    }
    group = copy.deepcopy(update)
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Grupo"}
    return [update, photo, contact, edited, callback, group]


def _twilio_seeds() -> list[dict[str, str]]:
    sms, call = _form("twilio-sms.form"), _form("twilio-voice-status.form")
    mms = {**sms, "NumMedia": "1", "MediaUrl0": "https://api.twilio.example/m/1"}
    mms["MediaContentType0"] = "image/jpeg"
    whatsapp = {**sms, "From": "whatsapp:+34622334455", "To": "whatsapp:+34910111333"}
    whatsapp.update(ProfileName="Ana", WaId="34622334455")
    receipt = {"MessageSid": "SM123", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    missed = {**call, "CallStatus": "no-answer"}
    voicemail = {**call, "RecordingUrl": "https://api.twilio.example/r/1"}
    voicemail["TranscriptionText"] = "Llámame"
    return [sms, mms, whatsapp, receipt, call, missed, voicemail]


def _voice_seeds() -> list[Any]:
    missed = {
        "call_id": "c-81422",
        "event": "missed",
        "from": "+34633445566",
        "to": "+34910111444",
        "occurred_at": "2026-11-22T10:05:00+01:00",
        "direction": "inbound",
        "duration_seconds": None,
        "recording_url": None,
        "transcript": None,
        "caller_name": "Ana García",
    }
    ended = {**missed, "event": "ended", "duration_seconds": 187, "direction": "outbound"}
    voicemail = {**missed, "event": "voicemail", "recording_url": "https://pbx.example/r.mp3"}
    return [missed, ended, voicemail, {**missed, "event": "transferred"}]


# --- mutations ---------------------------------------------------------------------------------

_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e309", "null", "true", "+34", "2026-13-45", "\x00", "🙂"]),
)
ANY_JSON = st.recursive(
    _LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=8,
)
# Big enough to overflow any column and any provider's own limit, small enough for the 1 MB cap.
HUGE_TEXT = st.sampled_from(["x" * 70_000, "é" * 20_000, "9" * 5_000])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], change: Callable[[Any], Any] | None) -> Any:
    """``value`` with the node at ``path`` changed (``None``: removed), if it is still there."""
    parent = value
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return value
    last = path[-1]
    try:
        if change is None:
            del parent[last]
        else:
            parent[last] = change(parent[last])
    except (KeyError, IndexError, TypeError):
        pass
    return value


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """A seed with one to three things changed where a careless sender or an attacker would."""
    value = copy.deepcopy(draw(st.sampled_from(seeds)))
    paths = _paths(value)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["drop", "any", "huge", "list", "dict", "string", "number"]))
        if how == "drop":
            value = _replace(value, path, None)
            continue
        replacement: Callable[[Any], Any] = {
            "any": lambda _old, new=draw(ANY_JSON): new,
            "huge": lambda _old, new=draw(HUGE_TEXT): new,
            "list": lambda old: [old],
            "dict": lambda old: {"value": old},
            "string": lambda old: json.dumps(old) if not isinstance(old, str) else old + "\u202e",
            "number": lambda old: -1 if isinstance(old, str) else 10**30,
        }[how]
        value = _replace(value, path, replacement)
    return value


def _json_bodies(seeds: list[Any]) -> st.SearchStrategy[bytes]:
    as_json = st.one_of(mutated(seeds), st.sampled_from(seeds), ANY_JSON).map(
        lambda value: json.dumps(value, ensure_ascii=False).encode()
    )
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=300))


def _form_bodies(seeds: list[dict[str, str]]) -> st.SearchStrategy[bytes]:
    def encode(fields: Any) -> bytes:
        if isinstance(fields, dict):
            return urlencode(
                {str(k): json.dumps(v) if not isinstance(v, str) else v for k, v in fields.items()}
            ).encode()
        return json.dumps(fields).encode()

    forms = st.one_of(mutated(seeds), st.sampled_from(seeds)).map(encode)
    return st.one_of(forms, forms, forms, st.binary(max_size=300))


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
    ]
)

# --- each provider: its channel, how it signs, what it is sent --------------------------------


def _meta_signature(secret: str) -> Callable[[str, bytes, list[tuple[str, str]]], dict[str, str]]:
    def sign(_url: str, body: bytes, _form: list[tuple[str, str]]) -> dict[str, str]:
        return {"X-Hub-Signature-256": fake_whatsapp.sign(body, secret)}

    return sign


def _telegram_signature(_url: str, _body: bytes, _form: list[tuple[str, str]]) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": fake_telegram.SECRET_TOKEN}


def _twilio_signature(url: str, _body: bytes, form: list[tuple[str, str]]) -> dict[str, str]:
    return {"X-Twilio-Signature": fake_twilio.sign(url, form)}


def _voice_signature(_url: str, _body: bytes, _form: list[tuple[str, str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {VOICE_TOKEN}"}


PROVIDERS: dict[str, dict[str, Any]] = {
    "whatsapp": {
        "kind": "whatsapp",
        "config": fake_whatsapp.CONFIG,
        "sign": _meta_signature(fake_whatsapp.APP_SECRET),
        "seeds": _whatsapp_seeds(),
        "bodies": _json_bodies(_whatsapp_seeds()),
    },
    "messenger": {
        "kind": "messenger",
        "config": fake_meta_send.MESSENGER_CONFIG,
        "sign": _meta_signature(fake_meta_send.APP_SECRET),
        "seeds": _meta_seeds("messenger-text.json"),
        "bodies": _json_bodies(_meta_seeds("messenger-text.json")),
    },
    "instagram": {
        "kind": "instagram",
        "config": fake_meta_send.INSTAGRAM_CONFIG,
        "sign": _meta_signature(fake_meta_send.APP_SECRET),
        "seeds": _meta_seeds("instagram-text.json"),
        "bodies": _json_bodies(_meta_seeds("instagram-text.json")),
    },
    "telegram": {
        "kind": "telegram",
        "config": fake_telegram.CONFIG,
        "sign": _telegram_signature,
        "seeds": _telegram_seeds(),
        "bodies": _json_bodies(_telegram_seeds()),
    },
    "twilio": {
        "kind": "phone",
        "config": fake_twilio.PHONE_CONFIG,
        "sign": _twilio_signature,
        "seeds": _twilio_seeds(),
        "form": True,
        "bodies": _form_bodies(_twilio_seeds()),
    },
    "voice": {
        "kind": "phone",
        "config": {"auth_token": VOICE_TOKEN},
        "sign": _voice_signature,
        "seeds": _voice_seeds(),
        "bodies": _json_bodies(_voice_seeds()),
    },
}
# A Twilio SMS channel takes the same webhook path as the phone channel above.
SMS = {**PROVIDERS["twilio"], "kind": "sms", "config": fake_twilio.SMS_CONFIG}


def _form_of(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The form fields the webhook will read from ``body`` (what Twilio signs)."""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return []
    try:
        return parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return []


# --- 1. the parsers, directly -----------------------------------------------------------------

_TEXT_FIELDS: dict[type, tuple[str, ...]] = {
    Inbound: ("external_id", "sender_kind", "sender_value", "text", "kind"),
    Receipt: ("external_id", "status"),
    WatermarkReceipt: ("recipient_kind", "recipient_value", "status"),
    CallEvent: ("call_id", "event", "caller_kind", "caller_value", "direction"),
    Ignored: ("reason",),
}
_OPTIONAL_TEXT_FIELDS: dict[type, tuple[str, ...]] = {
    Inbound: ("sender_name",),
    CallEvent: ("recording_url", "transcript", "caller_name"),
}
_MOMENTS: dict[type, str] = {
    Inbound: "sent_at",
    Receipt: "occurred_at",
    WatermarkReceipt: "watermark",
    CallEvent: "occurred_at",
}


def _assert_well_formed(item: Any) -> None:
    """What ``parse`` hands to ingest has the types ingest relies on: a number or an object
    where a name or an id belongs would fail further on, as a 500."""
    kind = type(item)
    assert kind in _TEXT_FIELDS, item
    for name in _TEXT_FIELDS[kind]:
        assert isinstance(getattr(item, name), str), (name, item)
    for name in _OPTIONAL_TEXT_FIELDS.get(kind, ()):
        assert getattr(item, name) is None or isinstance(getattr(item, name), str), (name, item)
    if kind in _MOMENTS:
        moment = getattr(item, _MOMENTS[kind])
        assert isinstance(moment, datetime), (_MOMENTS[kind], item)
        assert moment.tzinfo is not None, (_MOMENTS[kind], item)
    if isinstance(item, Inbound):
        assert all(isinstance(a, dict) for a in item.attachments), item
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in item.identities), item
    if isinstance(item, CallEvent):
        assert item.duration_seconds is None or isinstance(item.duration_seconds, int), item


# Each webhook path with each kind of channel it serves (Twilio: a phone line and an SMS number).
CASES = [*PROVIDERS.items(), ("twilio", SMS)]
CASE_IDS = [f"{path}-{provider['kind']}" for path, provider in CASES]


@pytest.mark.parametrize(("path", "provider"), CASES, ids=CASE_IDS)
def test_a_parser_returns_items_or_a_4xx_for_anything(path: str, provider: dict[str, Any]) -> None:
    registry.load_adapters()
    adapter = registry.adapter_for_path(path)
    assert adapter is not None
    channel = ChannelInfo(
        id="ch_fuzz",
        tenant=TenantContext(id="t_fuzz"),
        kind=provider["kind"],
        config=provider["config"],
    )
    assert registry.serves(adapter, channel)

    @settings(max_examples=500, deadline=None, derandomize=True, database=None)
    @given(body=provider["bodies"], content_type=CONTENT_TYPES)
    def parse(body: bytes, content_type: str) -> None:
        request = WebhookRequest(
            method="POST",
            url=f"{BASE_URL}/webhooks/{path}/ch_fuzz",
            headers={"content-type": content_type},
            query={},
            body=body,
            form=_form_of(body, content_type),
        )
        try:
            items = adapter.parse(channel, request)
        except HilosError as error:
            refusal = error.status_code
        else:
            assert isinstance(items, list)
            for item in items:
                _assert_well_formed(item)
            return
        assert 400 <= refusal < 500

    parse()


# --- 2. through HTTP, stored or refused -------------------------------------------------------


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(count or 0)


def _assert_answer(response: httpx.Response, *, refused_before: int, after: int) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 413, 415, 422), (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"]
        assert error["message"]
        assert after == refused_before, "a refused webhook stored a message"


async def _channel(
    client: httpx.AsyncClient, tenant: TenantHandle, kind: str, config: dict[str, Any]
) -> str:
    response = await client.post(
        "/v1/channels", json={"kind": kind, "name": kind, "config": config}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id


FUZZ_SETTINGS = settings(
    max_examples=75,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def channels() -> dict[str, str]:
    """Channels made by the first example of a test and used by the rest (its fixtures live
    as long as the whole test, all examples included)."""
    return {}


@pytest.mark.parametrize(("path", "provider"), CASES, ids=CASE_IDS)
@FUZZ_SETTINGS
@given(data=st.data(), content_type=CONTENT_TYPES)
async def test_a_signed_webhook_is_never_a_5xx_and_a_refusal_stores_nothing(
    path: str,
    provider: dict[str, Any],
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, str],
    data: st.DataObject,
    content_type: str,
) -> None:
    if "id" not in channels:
        channels["id"] = await _channel(client, tenant, provider["kind"], provider["config"])
    channel_id = channels["id"]
    url = f"{BASE_URL}/webhooks/{path}/{channel_id}"
    body = data.draw(provider["bodies"], label="body")
    headers = provider["sign"](url, body, _form_of(body, content_type))
    if content_type:
        headers["Content-Type"] = content_type
    before = await _stored(sessionmaker, channel_id)
    response = await client.post(url, content=body, headers=headers)
    _assert_answer(response, refused_before=before, after=await _stored(sessionmaker, channel_id))


def _encode(provider: dict[str, Any], value: Any) -> tuple[bytes, str]:
    if provider.get("form"):
        return urlencode(value).encode(), "application/x-www-form-urlencoded"
    return json.dumps(value).encode(), "application/json"


def _one_field_too_big(seeds: list[Any]) -> list[Any]:
    """Each seed once per field: a text 300 characters long (past every column it may land in),
    a number beyond any date or count."""
    variants = []
    for seed in seeds:
        for path in _paths(seed):
            leaf = copy.deepcopy(seed)
            for step in path[:-1]:
                leaf = leaf[step]
            old = leaf[path[-1]]
            if isinstance(old, (dict, list)):
                continue
            big: Any = "Z" * 300 if isinstance(old, str) or old is None else 10**30
            variants.append(_replace(copy.deepcopy(seed), path, lambda _old, big=big: big))
    return variants


@pytest.mark.parametrize(("path", "provider"), CASES, ids=CASE_IDS)
async def test_every_field_too_long_or_too_big_is_kept_or_refused_never_a_5xx(
    path: str,
    provider: dict[str, Any],
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    channel_id = await _channel(client, tenant, provider["kind"], provider["config"])
    url = f"{BASE_URL}/webhooks/{path}/{channel_id}"
    variants = _one_field_too_big(provider["seeds"])
    assert len(variants) > 10
    for variant in variants:
        body, content_type = _encode(provider, variant)
        headers = {
            "Content-Type": content_type,
            **provider["sign"](url, body, _form_of(body, content_type)),
        }
        before = await _stored(sessionmaker, channel_id)
        response = await client.post(url, content=body, headers=headers)
        _assert_answer(
            response, refused_before=before, after=await _stored(sessionmaker, channel_id)
        )


async def test_a_body_over_the_limit_or_an_unknown_provider_is_a_4xx(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await _channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    huge = b'{"object": "whatsapp_business_account", "entry": "' + b"x" * 1_100_000 + b'"}'
    response = await client.post(
        f"/webhooks/whatsapp/{channel_id}",
        content=huge,
        headers={
            "X-Hub-Signature-256": fake_whatsapp.sign(huge),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_large"
    for provider in ("email", "smoke-signals"):
        response = await client.post(f"/webhooks/{provider}/{channel_id}", content=b"{}")
        assert response.status_code == 404, (provider, response.text)


VISITOR_BODIES = st.one_of(
    st.fixed_dictionaries(
        {"text": st.one_of(st.text(max_size=50), HUGE_TEXT, ANY_JSON), "client_id": ANY_JSON}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "name": ANY_JSON,
            "email": st.one_of(st.emails(), ANY_JSON),
            "phone": st.one_of(st.just("+34600111222"), ANY_JSON),
            "lang": ANY_JSON,
        },
    ),
    ANY_JSON,
).map(lambda value: json.dumps(value).encode()) | st.binary(max_size=200)


@FUZZ_SETTINGS
@given(
    body=VISITOR_BODIES,
    content_type=CONTENT_TYPES,
    endpoint=st.sampled_from(["messages", "sessions"]),
    as_visitor=st.booleans(),
)
async def test_the_web_chat_visitor_endpoints_are_never_a_5xx(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, str],
    body: bytes,
    content_type: str,
    endpoint: str,
    as_visitor: bool,
) -> None:
    if "id" not in channels:
        channels["id"] = await _channel(client, tenant, "web_chat", {"allowed_origins": [SHOP]})
        started = await client.post(
            f"/webchat/{channels['id']}/sessions", json={}, headers={"Origin": SHOP}
        )
        assert started.status_code == 201, started.text
        channels["token"] = started.json()["token"]
    channel_id = channels["id"]
    headers = {"Origin": SHOP}
    if as_visitor:
        headers["Authorization"] = f"Bearer {channels['token']}"
    if content_type:
        headers["Content-Type"] = content_type
    before = await _stored(sessionmaker, channel_id)
    response = await client.post(f"/webchat/{channel_id}/{endpoint}", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
        assert await _stored(sessionmaker, channel_id) == before

"""The web chat channel: visitors of the business's site, and the adapter that answers them.

A visitor is a browser that opened the chat widget (``/webchat/{channel_id}/widget.js``; the
HTTP and WebSocket side is ``channels.webchat_api``). It holds a random secret token, of which
only the SHA-256 is stored, and customers know it as the ``anonymous`` identity whose value is
the visitor's id, so everything it writes resolves to one customer. The email or phone of the
pre-chat form is resolved together with that identity through ``customers.service.identify``:
a visitor who gives the phone of a customer who wrote on WhatsApp becomes that customer, and
what it writes joins that customer's conversation.

What a visitor is shown is its own: its messages and the replies sent to it on this channel,
never the customer's messages on other channels. A pre-chat form proves nothing, and someone
who types another person's email must not read that person's WhatsApp or email.

Replies go through the delivery worker like every channel's, but there is no provider to call:
``send`` names the visitor the reply is for and reports it sent. The HTTP process holding that
visitor's socket pushes it when ``message.sent`` reaches it through the bus, and marks it
delivered; a visitor who was offline finds it in its history, which marks it delivered then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels.base import ChannelInfo, Item, Outgoing, PermanentFailure, Sent, WebhookRequest
from hilos.channels.models import WebchatVisitor
from hilos.channels.registry import register
from hilos.channels.service import channel_info
from hilos.conversations import receipts
from hilos.conversations.models import Conversation, Message
from hilos.conversations.service import Received, receive_committed
from hilos.core.clock import now
from hilos.core.errors import Invalid, NotFound, Unauthorized
from hilos.core.ids import new_id
from hilos.customers import service as customers
from hilos.customers.identities import normalize

KIND = "web_chat"
TOKEN_PREFIX = "hwv_"
MAX_TEXT = 4_000
HISTORY_LIMIT = 100
PRECHAT_FIELDS = ("name", "email", "phone")
DEFAULT_PRECHAT_FIELDS = ("name", "email")
# Where ``send`` writes, in the reply's ``data``, which visitor it is for.
VISITOR_KEY = "webchat_visitor_id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SHOWN_OUTBOUND = ("sent", "delivered", "read")


# --- the channel's settings -------------------------------------------------------------------


async def webchat_channel(engine: AsyncEngine, channel_id: str) -> ChannelInfo:
    """The enabled web chat channel ``channel_id``; ``NotFound`` for anything else."""
    channel = await channel_info(engine, channel_id)
    if channel.kind != KIND:
        raise NotFound(f"channel {channel_id} not found")
    return channel


def _origin_of(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, without a default port; ``None`` if unusable."""
    value = value.strip().lower().rstrip("/")
    if value in ("*", "null"):
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    return f"{parts.scheme}://{host}"


def allowed_origins(channel: ChannelInfo) -> set[str]:
    """The sites allowed to embed the chat (``allowed_origins``; ``"*"`` allows any)."""
    configured = channel.config.get("allowed_origins")
    if isinstance(configured, str):
        configured = [configured]
    if not isinstance(configured, list):
        return set()
    return {
        origin for value in configured if isinstance(value, str) if (origin := _origin_of(value))
    }


def origin_allowed(channel: ChannelInfo, origin: str | None, *, host: str | None) -> bool:
    """Whether a browser on ``origin`` may use the chat of ``channel``.

    No ``Origin`` header is no browser asking across sites (a ``<script>`` tag, a server); a
    page served by Hilos itself (same host) is always allowed. Anything else must be listed:
    a channel without ``allowed_origins`` serves no other site.
    """
    if origin is None:
        return True
    normalized = _origin_of(origin)
    if normalized is None:
        return False
    if host and normalized.split("://", 1)[-1] == host.strip().lower():
        return True
    allowed = allowed_origins(channel)
    return "*" in allowed or normalized in allowed


def widget_settings(channel: ChannelInfo, language: str) -> dict[str, Any]:
    """What the widget shows that the business chose: title, greeting, colour, pre-chat form."""
    config = channel.config
    title = config.get("title")
    greeting = config.get("greeting")
    if isinstance(greeting, Mapping):
        greeting = greeting.get(language) or next(iter(greeting.values()), None)
    color = config.get("color")
    fields = config.get("prechat_fields", list(DEFAULT_PRECHAT_FIELDS))
    return {
        "title": title if isinstance(title, str) and title.strip() else channel.tenant.name,
        "greeting": greeting if isinstance(greeting, str) and greeting.strip() else None,
        "color": color if isinstance(color, str) and _COLOR.match(color) else None,
        "prechat_fields": [
            field for field in PRECHAT_FIELDS if isinstance(fields, list) and field in fields
        ],
    }


# --- visitors ---------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def visitor_by_token(
    session: AsyncSession, channel: ChannelInfo, token: str | None
) -> WebchatVisitor:
    """The visitor holding ``token`` on this channel; ``Unauthorized`` for any other token."""
    if not token or len(token) > 200:
        raise Unauthorized("a web chat visitor token is needed", code="bad_visitor_token")
    visitor = (
        await session.execute(
            select(WebchatVisitor).where(
                WebchatVisitor.token_hash == token_hash(token),
                WebchatVisitor.channel_id == channel.id,
                WebchatVisitor.tenant_id == channel.tenant.id,
            )
        )
    ).scalar_one_or_none()
    if visitor is None:
        raise Unauthorized(
            "this visitor token is not one of this chat; start a new session",
            code="bad_visitor_token",
        )
    return visitor


async def start_session(
    session: AsyncSession,
    channel: ChannelInfo,
    *,
    token: str | None,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    language: str,
) -> tuple[WebchatVisitor, str | None]:
    """A new visitor and its token, or (given its token) the visitor again, identified by what
    the pre-chat form gave. The token is returned only when it is new."""
    tenant = channel.tenant
    region = tenant.default_region
    given: list[tuple[str, str]] = []
    if email:
        given.append(("email", normalize("email", email, region=region, field="email")))
    if phone:
        given.append(("phone", normalize("phone", phone, region=region, field="phone")))
    moment = now()
    new_token: str | None = None
    if token is None:
        visitor_id = new_id()
        new_token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        customer_id = await _identify(
            session, channel, visitor_id, given, name=name, language=language
        )
        visitor = WebchatVisitor(
            id=visitor_id,
            tenant_id=tenant.id,
            channel_id=channel.id,
            token_hash=token_hash(new_token),
            customer_id=customer_id,
            locale=language,
            created_at=moment,
            last_seen_at=moment,
        )
        session.add(visitor)
    else:
        visitor = await visitor_by_token(session, channel, token)
        if given or name:
            visitor.customer_id = await _identify(session, channel, visitor.id, given, name=name)
        visitor.locale = language
        visitor.last_seen_at = moment
    await session.flush()
    return visitor, new_token


async def _identify(
    session: AsyncSession,
    channel: ChannelInfo,
    visitor_id: str,
    given: Sequence[tuple[str, str]],
    *,
    name: str | None,
    language: str | None = None,
) -> str:
    """The customer the visitor is, linking its ``anonymous`` identity to what it gave.

    When the tenant's identity limits keep the visitor's identity apart from the customer who
    holds the email or phone, the visitor stays the customer its identity belongs to (or a new
    one): its messages must land where its own identity resolves. The name and language typed
    here only fill in what the customer lacks: a form must not rename a known customer.
    """
    anonymous = ("anonymous", visitor_id)
    result = await customers.identify(
        session, channel.tenant, identities=[anonymous, *given], reason="web chat form"
    )
    if any((c["kind"], c["value"]) == anonymous for c in result.conflicts):
        result = await customers.identify(
            session, channel.tenant, identities=[anonymous], reason="web chat form"
        )
    if name or language:
        customer = await customers.get_customer(session, channel.tenant, result.customer_id)
        customers.apply_profile(
            customer,
            name=None if customer.name else name,
            language=None if customer.language else language,
        )
        await session.flush()
    return result.customer_id


async def customer_of(session: AsyncSession, channel: ChannelInfo, visitor: WebchatVisitor) -> str:
    """The customer the visitor's identity belongs to now (merges move identities)."""
    customer = await customers.find_by_identity(
        session, channel.tenant, kind="anonymous", value=visitor.id
    )
    if customer is not None and customer.id != visitor.customer_id:
        visitor.customer_id = customer.id
    return customer.id if customer is not None else visitor.customer_id


# --- messages ---------------------------------------------------------------------------------


def visitor_of(message: Message) -> str | None:
    """The visitor a web chat message came from or was sent to."""
    if message.direction == "outbound":
        value = (message.data or {}).get(VISITOR_KEY)
        return value if isinstance(value, str) else None
    kind, _, value = (message.address or "").partition(":")
    return value if kind == "anonymous" and value else None


def visitor_view(message: Message, *, status: str | None = None) -> dict[str, Any]:
    """A message as the visitor's widget shows it: no addresses, notes or agents' ids."""
    client_id = None
    if message.direction == "inbound" and message.external_id:
        client_id = message.external_id.partition(":")[2] or None
    return {
        "id": message.id,
        "direction": message.direction,
        "text": message.text,
        "attachments": [
            {k: v for k, v in attachment.items() if k in ("type", "url", "name", "mime_type")}
            for attachment in message.attachments
            if isinstance(attachment, dict)
        ],
        "sent_at": message.sent_at.isoformat(),
        "status": status or message.status,
        "client_id": client_id,
    }


def _checked_message(text: Any, client_id: Any) -> tuple[str, str]:
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise Invalid("client_id is 1 to 64 letters, digits, '-' or '_'", field="client_id")
    if not isinstance(text, str) or not text.strip():
        raise Invalid("text must not be empty", field="text")
    if len(text) > MAX_TEXT:
        raise Invalid(f"text is longer than {MAX_TEXT} characters", field="text")
    return text, client_id


async def receive_from_visitor(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    channel: ChannelInfo,
    visitor_id: str,
    *,
    text: Any,
    client_id: Any,
    wakeup: Any,
) -> Received:
    """Store what the visitor wrote, once per ``client_id`` (a retry changes nothing).

    The widget makes ``client_id`` up; it is scoped by the visitor in the external id, so no
    visitor can collide with, or learn about, another's message.
    """
    text, client_id = _checked_message(text, client_id)
    return await receive_committed(
        engine,
        sessionmaker,
        channel.tenant,
        wakeup=wakeup,
        channel_id=channel.id,
        external_id=f"{visitor_id}:{client_id}",
        sender_kind="anonymous",
        sender_value=visitor_id,
        sender_name=None,
        text=text,
        attachments=[],
        sent_at=now(),
    )


async def history(
    session: AsyncSession,
    channel: ChannelInfo,
    visitor: WebchatVisitor,
    *,
    limit: int = HISTORY_LIMIT,
) -> list[dict[str, Any]]:
    """The visitor's latest messages and the replies sent to it, oldest first.

    Replies it had not received yet are delivered now, by this answer.
    """
    tenant = channel.tenant
    customer_id = await customer_of(session, channel, visitor)
    statement = (
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.tenant_id == tenant.id,
            Conversation.customer_id == customer_id,
            Message.channel_id == channel.id,
            or_(
                and_(
                    Message.direction == "inbound",
                    Message.address == f"anonymous:{visitor.id}",
                ),
                and_(
                    Message.direction == "outbound",
                    Message.status.in_(_SHOWN_OUTBOUND),
                    Message.data[VISITOR_KEY].as_string() == visitor.id,
                ),
            ),
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(limit)
    )
    rows = list((await session.execute(statement)).scalars())
    rows.reverse()
    views = []
    for message in rows:
        status = message.status
        if status == "sent" and await mark_delivered(session, channel, message):
            status = "delivered"
        views.append(visitor_view(message, status=status))
    return views


async def mark_delivered(session: AsyncSession, channel: ChannelInfo, message: Message) -> bool:
    """Record that the visitor's browser got a reply (a ``delivered`` receipt)."""
    if message.external_id is None:
        return False
    return await receipts.record_receipt(
        session,
        channel.tenant,
        channel_id=channel.id,
        external_id=message.external_id,
        status="delivered",
        occurred_at=now(),
    )


async def mark_read(
    session: AsyncSession, channel: ChannelInfo, visitor_id: str, message_id: Any
) -> str:
    """Record that the visitor read a reply sent to it; return the message id."""
    if not isinstance(message_id, str) or not message_id or len(message_id) > 32:
        raise Invalid("message_id names a reply sent to this visitor", field="message_id")
    message = (
        await session.execute(
            select(Message).where(
                Message.id == message_id,
                Message.tenant_id == channel.tenant.id,
                Message.channel_id == channel.id,
                Message.direction == "outbound",
            )
        )
    ).scalar_one_or_none()
    if message is None or visitor_of(message) != visitor_id or message.external_id is None:
        raise NotFound(f"message {message_id} not found")
    await receipts.record_receipt(
        session,
        channel.tenant,
        channel_id=channel.id,
        external_id=message.external_id,
        status="read",
        occurred_at=now(),
    )
    return message.id


# --- the adapter --------------------------------------------------------------------------------


class WebchatAdapter:
    """Sends replies to visitors' browsers. There is no provider, so no webhook either:
    ``/webhooks/webchat/...`` answers 404 (the widget talks to ``/webchat/{channel_id}``)."""

    provider: ClassVar[str] = "webchat"
    kinds: ClassVar[tuple[str, ...]] = (KIND,)

    def challenge(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        raise NotFound("a web chat has no provider webhook; the widget uses /webchat/")

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        raise NotFound("a web chat has no provider webhook; the widget uses /webchat/")

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        raise NotFound("a web chat has no provider webhook; the widget uses /webchat/")

    async def prepare(
        self, session: AsyncSession, channel: ChannelInfo, outgoing: Outgoing
    ) -> Outgoing:
        """Find the visitor the reply is for: the one it is addressed to, else the customer's
        visitor on this channel seen most recently (a reply addressed to an email)."""
        visitor_id: str | None = None
        if outgoing.to_kind == "anonymous":
            visitor_id = (
                await session.execute(
                    select(WebchatVisitor.id).where(
                        WebchatVisitor.id == outgoing.to_value,
                        WebchatVisitor.channel_id == channel.id,
                    )
                )
            ).scalar_one_or_none()
        if visitor_id is None:
            conversation = await session.get(Conversation, outgoing.conversation_id)
            if conversation is not None:
                held = {
                    identity.value
                    for identity in await customers.identities_of(
                        session, channel.tenant, conversation.customer_id
                    )
                    if identity.kind == "anonymous"
                }
                visitor_id = (
                    await session.execute(
                        select(WebchatVisitor.id)
                        .where(
                            WebchatVisitor.channel_id == channel.id,
                            WebchatVisitor.id.in_(held),
                        )
                        .order_by(WebchatVisitor.last_seen_at.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
        if visitor_id is None:
            raise PermanentFailure(
                "the customer has never opened this web chat, so there is no browser to "
                "answer; reply on another channel",
                code="no_visitor",
            )
        return dataclasses.replace(outgoing, context={**outgoing.context, "visitor": visitor_id})

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        visitor_id = outgoing.context.get("visitor")
        if not isinstance(visitor_id, str):
            raise PermanentFailure("no web chat visitor to answer", code="no_visitor")
        return Sent(external_id=outgoing.message_id, data={VISITOR_KEY: visitor_id})


register(WebchatAdapter(), sends=((KIND, None),))

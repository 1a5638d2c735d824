"""``/webchat/{channel_id}``: the chat widget's script, its visitors' sessions, messages and
live socket.

A business embeds ``<script src="{base}/webchat/{channel_id}/widget.js" async></script>``. The
widget then calls, from the business's site:

- ``GET config``: its words in the visitor's language, title, greeting, pre-chat fields;
- ``POST sessions``: a new visitor and its secret token (once), or with the token, the same
  visitor again; ``name``, ``email``, ``phone`` of the pre-chat form identify it;
- ``GET messages`` / ``POST messages`` with the token (``Authorization: Bearer`` or
  ``X-Hilos-Visitor``): its history, and what it writes (``client_id`` makes a retry harmless);
- ``WebSocket ws?token=``: the same both ways, live. The visitor sends
  ``{"type": "message", "text", "client_id"}`` (answered ``{"type": "ack", ...}``),
  ``{"type": "read", "message_id"}`` (answered ``{"type": "receipt", ...}``) and
  ``{"type": "ping"}``; replies arrive as ``{"type": "message", "message": {...}}``.

Only sites in the channel's ``allowed_origins`` may call it: a request or socket from any other
``Origin`` is a 403, and allowed origins get CORS headers (preflights included) on every
answer, errors too, so the widget can read why a call failed. Starlette's ``CORSMiddleware``
is per application, with one fixed list; each channel here has its own, read from its settings,
so the check is this router's own route class.

Replies reach a visitor's socket through ``WebchatHub``: each HTTP process listens to
``message.sent`` (and ``message.received``, so a visitor's other tabs see what it wrote) and
pushes to the sockets it holds. Every process must hear every event, so the hub listens through
the process's ``hilos.core.fanout`` rather than a durable bus consumer: a push is a courtesy to
an open browser, and what it misses is in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from hilos.channels import webchat
from hilos.channels.base import ChannelInfo
from hilos.conversations.models import Message
from hilos.core.bus import BusEvent
from hilos.core.clock import now
from hilos.core.deps import DbSession
from hilos.core.errors import HilosError, Unauthorized
from hilos.core.fanout import fanout_of
from hilos.web.i18n import DEFAULT_LANGUAGE, language_from_accept, supported_language
from hilos.web.widget import widget_script, widget_text

log = structlog.get_logger(__name__)

PUSHED_TOPICS = ("message.sent", "message.received")
FANOUT_NAME = "webchat"
MAX_SOCKETS_PER_VISITOR = 20
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Hilos-Visitor",
    "Access-Control-Max-Age": "600",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _forbidden_origin(origin: str | None) -> JSONResponse:
    return _error(
        403,
        "origin_not_allowed",
        f"{origin} may not use this chat; add it to the channel's allowed_origins",
    )


async def _app_error_response(request: Request, error: Exception) -> Response:
    """The app's own answer to ``error`` (its JSON error format), or re-raise."""
    handlers = cast(dict[Any, Any], request.app.exception_handlers)
    for kind in type(error).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            return cast(Response, await handler(request, error))
    raise error


class WebchatRoute(APIRoute):
    """Every HTTP route of the widget: the channel must be an enabled web chat, the caller's
    ``Origin`` one it allows; allowed origins get CORS headers on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            origin = request.headers.get("origin")
            try:
                channel = await webchat.webchat_channel(
                    request.app.state.engine, request.path_params["channel_id"]
                )
            except HilosError as error:
                return await _app_error_response(request, error)
            if not webchat.origin_allowed(channel, origin, host=request.headers.get("host")):
                return _forbidden_origin(origin)
            request.state.webchat_channel = channel
            try:
                response = await handle(request)
            except Exception as error:
                response = await _app_error_response(request, error)
            if origin is not None:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers.append("Vary", "Origin")
            return response

        return guarded


router = APIRouter(prefix="/webchat/{channel_id}", tags=["webchat"], route_class=WebchatRoute)


def _channel(request: Request, channel_id: str) -> ChannelInfo:
    return cast(ChannelInfo, request.state.webchat_channel)


WebchatChannel = Annotated[ChannelInfo, Depends(_channel)]


def _visitor_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-hilos-visitor") or None


def _language(request: Request, channel: ChannelInfo, requested: str | None) -> str:
    return (
        supported_language(requested)
        or language_from_accept(request.headers.get("accept-language"))
        or supported_language(channel.tenant.locale)
        or DEFAULT_LANGUAGE
    )


# --- schemas ----------------------------------------------------------------------------------


class SessionStart(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    lang: str | None = Field(default=None, max_length=35)


class SessionOut(BaseModel):
    visitor_id: str
    lang: str
    # Only when the session is new: the one time the visitor's secret is shown.
    token: str | None = None


class WidgetConfig(BaseModel):
    channel_id: str
    lang: str
    title: str
    greeting: str
    color: str | None
    prechat_fields: list[str]
    strings: dict[str, str]


class VisitorMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=webchat.MAX_TEXT)
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


class VisitorMessageStored(BaseModel):
    message_id: str
    client_id: str
    duplicate: bool


class VisitorMessage(BaseModel):
    id: str
    direction: str
    text: str
    attachments: list[dict[str, Any]]
    sent_at: str
    status: str | None
    client_id: str | None


class VisitorHistory(BaseModel):
    visitor_id: str
    items: list[VisitorMessage]


# --- endpoints --------------------------------------------------------------------------------


@router.get("/widget.js", response_class=Response)
async def widget(request: Request, channel: WebchatChannel) -> Response:
    script, etag = widget_script()
    headers = {
        "Cache-Control": "public, max-age=300",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(script, media_type="text/javascript", headers=headers)


@router.get("/config", response_model=WidgetConfig)
async def config(
    request: Request,
    channel: WebchatChannel,
    lang: Annotated[str | None, Query(max_length=35)] = None,
) -> WidgetConfig:
    language = _language(request, channel, lang)
    strings = widget_text(language)
    settings = webchat.widget_settings(channel, language)
    return WidgetConfig(
        channel_id=channel.id,
        lang=language,
        title=settings["title"],
        greeting=settings["greeting"] or strings["greeting"],
        color=settings["color"],
        prechat_fields=settings["prechat_fields"],
        strings=strings,
    )


@router.post("/sessions", response_model=SessionOut, status_code=201)
async def start_session(
    request: Request,
    response: Response,
    channel: WebchatChannel,
    session: DbSession,
    body: SessionStart | None = None,
) -> SessionOut:
    body = body or SessionStart()
    token = _visitor_token(request)
    if token is None and request.headers.get("authorization") is not None:
        raise Unauthorized("use Authorization: Bearer <visitor token>", code="bad_visitor_token")
    language = _language(request, channel, body.lang)
    visitor, new_token = await webchat.start_session(
        session,
        channel,
        token=token,
        name=body.name or None,
        email=body.email or None,
        phone=body.phone or None,
        language=language,
    )
    if new_token is None:
        response.status_code = 200
    return SessionOut(visitor_id=visitor.id, lang=language, token=new_token)


@router.get("/messages", response_model=VisitorHistory)
async def visitor_history(
    request: Request,
    channel: WebchatChannel,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=webchat.HISTORY_LIMIT)] = webchat.HISTORY_LIMIT,
) -> VisitorHistory:
    visitor = await webchat.visitor_by_token(session, channel, _visitor_token(request))
    items = await webchat.history(session, channel, visitor, limit=limit)
    return VisitorHistory(
        visitor_id=visitor.id, items=[VisitorMessage.model_validate(item) for item in items]
    )


@router.post("/messages", response_model=VisitorMessageStored, status_code=201)
async def visitor_writes(
    request: Request, response: Response, channel: WebchatChannel, body: VisitorMessageIn
) -> VisitorMessageStored:
    state = request.app.state
    # A short session of its own: storing the message opens another (SQLite has one connection).
    async with state.sessionmaker() as session:
        visitor = await webchat.visitor_by_token(session, channel, _visitor_token(request))
        visitor_id = visitor.id
    received = await webchat.receive_from_visitor(
        state.engine,
        state.sessionmaker,
        channel,
        visitor_id,
        text=body.text,
        client_id=body.client_id,
        wakeup=state.outbox_wakeup,
    )
    if received.duplicate:
        response.status_code = 200
    return VisitorMessageStored(
        message_id=received.message_id, client_id=body.client_id, duplicate=received.duplicate
    )


@router.options("/{path:path}", include_in_schema=False, response_class=Response)
async def preflight(channel: WebchatChannel, path: str) -> Response:
    return Response(status_code=204, headers=_PREFLIGHT)


# --- the live socket --------------------------------------------------------------------------


class VisitorSocket:
    """One open socket; frames to it go one at a time."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> bool:
        try:
            async with self._lock:
                await self.websocket.send_text(json.dumps(frame, separators=(",", ":")))
        except Exception:  # the browser went away mid-send: it reads the history later
            return False
        return True


class WebchatHub:
    """The visitors' sockets open in this process, and the bus events pushed to them."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self._sockets: dict[str, set[VisitorSocket]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Start hearing the bus (once per process, when the first visitor connects)."""
        fanout = fanout_of(self._state)
        if not fanout.listening(FANOUT_NAME):
            await fanout.listen(FANOUT_NAME, PUSHED_TOPICS, self.on_event)

    async def close(self) -> None:
        """Stop hearing the bus."""
        await fanout_of(self._state).stop(FANOUT_NAME)

    def count(self, visitor_id: str) -> int:
        return len(self._sockets.get(visitor_id, ()))

    def add(self, visitor_id: str, socket: VisitorSocket) -> None:
        self._sockets.setdefault(visitor_id, set()).add(socket)

    def discard(self, visitor_id: str, socket: VisitorSocket) -> None:
        sockets = self._sockets.get(visitor_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[visitor_id]

    async def send(self, visitor_id: str, frame: dict[str, Any]) -> int:
        """Send ``frame`` to every socket of the visitor here; return how many took it."""
        sockets = list(self._sockets.get(visitor_id, ()))
        results = await asyncio.gather(*(socket.send(frame) for socket in sockets))
        return sum(results)

    async def idle(self) -> None:
        """Wait until every push under way has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def on_event(self, event: BusEvent) -> None:
        # Called inside the outbox relay's transaction (in-process bus): the database work
        # must run after it, in a task of its own, or it would wait for the relay forever.
        if not self._sockets or event.topic not in PUSHED_TOPICS:
            return
        if event.topic == "message.received" and event.payload.get("channel_kind") != "web_chat":
            return
        task = asyncio.create_task(self._push(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, event: BusEvent) -> None:
        try:
            await self._push_message(event)
        except Exception:
            log.exception("webchat.push_failed", topic=event.topic, payload=event.payload)

    async def _push_message(self, event: BusEvent) -> None:
        state = self._state
        message_id = event.payload.get("message_id")
        channel_id = event.payload.get("channel_id")
        if not isinstance(message_id, str) or not isinstance(channel_id, str):
            return
        async with state.sessionmaker() as session:
            message = (
                await session.execute(
                    select(Message).where(
                        Message.id == message_id,
                        Message.tenant_id == event.tenant_id,
                        Message.channel_id == channel_id,
                    )
                )
            ).scalar_one_or_none()
        if message is None:
            return
        visitor_id = webchat.visitor_of(message)
        if visitor_id is None or visitor_id not in self._sockets:
            return
        channel = await webchat.webchat_channel(state.engine, channel_id)
        outbound = message.direction == "outbound"
        status = "delivered" if outbound and message.status == "sent" else None
        view = webchat.visitor_view(message, status=status)
        if not await self.send(visitor_id, {"type": "message", "message": view}):
            return
        if outbound:
            async with state.sessionmaker() as session, session.begin():
                changed = await webchat.mark_delivered(session, channel, message)
            if changed:
                state.outbox_wakeup()


def hub_of(state: Any) -> WebchatHub:
    """This process's hub (made on first use: the app knows nothing of web chats)."""
    hub = getattr(state, "webchat_hub", None)
    if hub is None:
        hub = state.webchat_hub = WebchatHub(state)
    return cast(WebchatHub, hub)


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Refuse a socket before it opens with an HTTP status, where the server can say one."""
    try:
        await websocket.send_denial_response(_error(status, code, message))
    except RuntimeError:
        await websocket.close(code=1008, reason=message[:120])


@router.websocket("/ws")
async def visitor_socket(websocket: WebSocket, channel_id: str) -> None:
    state = websocket.app.state
    origin = websocket.headers.get("origin")
    try:
        channel = await webchat.webchat_channel(state.engine, channel_id)
    except HilosError as error:
        await _deny(websocket, error.status_code, error.code, error.message)
        return
    if not webchat.origin_allowed(channel, origin, host=websocket.headers.get("host")):
        await _deny(websocket, 403, "origin_not_allowed", f"{origin} may not use this chat")
        return
    try:
        async with state.sessionmaker() as session, session.begin():
            visitor = await webchat.visitor_by_token(
                session, channel, websocket.query_params.get("token")
            )
            visitor.last_seen_at = now()
            visitor_id = visitor.id
    except HilosError as error:
        await _deny(websocket, error.status_code, error.code, error.message)
        return
    hub = hub_of(state)
    if hub.count(visitor_id) >= MAX_SOCKETS_PER_VISITOR:
        await _deny(websocket, 429, "too_many_sockets", "this visitor has too many open chats")
        return
    await hub.listen()
    await websocket.accept()
    socket = VisitorSocket(websocket)
    hub.add(visitor_id, socket)
    try:
        while True:
            raw = await websocket.receive_text()
            answer = await _answer(state, channel, visitor_id, raw)
            if answer is not None and not await socket.send(answer):
                break
    except WebSocketDisconnect:
        pass
    finally:
        hub.discard(visitor_id, socket)
        with contextlib.suppress(Exception):
            await websocket.close()


def _frame_error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


async def _answer(
    state: Any, channel: ChannelInfo, visitor_id: str, raw: str
) -> dict[str, Any] | None:
    """The answer to one frame from the visitor."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return _frame_error("bad_frame", "a frame is a JSON object")
    if not isinstance(frame, dict):
        return _frame_error("bad_frame", "a frame is a JSON object")
    kind = frame.get("type")
    if kind == "ping":
        return {"type": "pong"}
    if kind == "message":
        client_id = frame.get("client_id")
        try:
            received = await webchat.receive_from_visitor(
                state.engine,
                state.sessionmaker,
                channel,
                visitor_id,
                text=frame.get("text"),
                client_id=client_id,
                wakeup=state.outbox_wakeup,
            )
        except HilosError as error:
            field = error.details.get("field") if isinstance(error.details, dict) else None
            return _frame_error(error.code, error.message, client_id=client_id, field=field)
        return {
            "type": "ack",
            "client_id": client_id,
            "message_id": received.message_id,
            "duplicate": received.duplicate,
        }
    if kind == "read":
        try:
            async with state.sessionmaker() as session, session.begin():
                message_id = await webchat.mark_read(
                    session, channel, visitor_id, frame.get("message_id")
                )
        except HilosError as error:
            return _frame_error(error.code, error.message, message_id=frame.get("message_id"))
        state.outbox_wakeup()
        return {"type": "receipt", "message_id": message_id, "status": "read"}
    return _frame_error("unknown_type", "type is one of message, read, ping")

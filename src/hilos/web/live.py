"""Live updates of the agent console: ``GET /console/events``, one Server-Sent Events stream per
open console page, and the hub that feeds the streams of each HTTP process.

The hub (``hub_of(app.state)``) keeps the streams open in this process by tenant and hears the
conversation and message events of the outbox (``message.received``, ``message.queued``,
``message.sent``, ``message.delivered``, ``message.read``, ``message.failed``,
``conversation.<status>``...) through the process's ``hilos.core.fanout``. A stream carries only
what changed: the topic and the ids of the conversation and the message, never a message's text
or a customer's data. The page (``static/console.js``) then fetches its own fresh rendering with
the agent's cookie, so what an agent may see is decided where every console page decides it;
without JavaScript the console is the same, only not live.

Rules of a stream:

* It opens only with a live console session (the session cookie), else ``401``, and carries
  only the events of the agent's tenant.
* Its first event is ``ready``: the page refreshes then, which catches what happened between
  its rendering and the stream's start.
* A slow reader holds nobody up: a stream queues at most ``QUEUE_SIZE`` events; past that it
  drops them and sends one ``refresh`` instead, which redraws the page's live parts anyway.
* It ends after ``STREAM_LIFETIME``; the browser's ``EventSource`` reconnects by itself and the
  session is checked again, so a signed-out or deactivated agent stops hearing within that time.

FastAPI's ``EventSourceResponse`` writes the wire format and a keep-alive comment every 15 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from hilos.core.bus import BusEvent
from hilos.core.errors import Unauthorized
from hilos.core.fanout import fanout_of
from hilos.web import service
from hilos.web.console import SESSION_COOKIE
from hilos.web.service import SignedInAgent

# Every change of a conversation or of one of its messages (routing's ``conversation.assigned``
# and ``conversation.offered`` among them), SLA warnings and breaches, and agents' presence
# (the supervisor view's figures); calls, whose ``call.ringing`` is the console's screen pop.
LIVE_TOPICS = ("message.>", "conversation.>", "sla.>", "agent.presence", "call.>")
FANOUT_NAME = "console"
QUEUE_SIZE = 100
STREAM_LIFETIME = 300.0
RECONNECT_MILLISECONDS = 2000


@dataclass(eq=False)
class ConsoleStream:
    """One open stream: the changes waiting to be written to it."""

    tenant_id: str
    queue: asyncio.Queue[dict[str, str]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    missed: bool = False

    def offer(self, change: dict[str, str]) -> None:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.missed = True

    def take_missed(self) -> bool:
        """Whether changes were dropped since the last call; forgets what is queued if so."""
        if not self.missed:
            return False
        self.missed = False
        while not self.queue.empty():
            self.queue.get_nowait()
        return True


class ConsoleHub:
    """The console streams open in this process, by tenant."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self._streams: dict[str, set[ConsoleStream]] = {}

    async def listen(self) -> None:
        fanout = fanout_of(self._state)
        if not fanout.listening(FANOUT_NAME):
            await fanout.listen(FANOUT_NAME, LIVE_TOPICS, self.on_event)

    def open(self, tenant_id: str) -> ConsoleStream:
        stream = ConsoleStream(tenant_id)
        self._streams.setdefault(tenant_id, set()).add(stream)
        return stream

    def close(self, stream: ConsoleStream) -> None:
        streams = self._streams.get(stream.tenant_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.tenant_id]

    def count(self, tenant_id: str) -> int:
        return len(self._streams.get(tenant_id, ()))

    async def on_event(self, event: BusEvent) -> None:
        streams = self._streams.get(event.tenant_id)
        if not streams:
            return
        change = {"topic": event.topic}
        for key in ("conversation_id", "message_id"):
            value = event.payload.get(key)
            if isinstance(value, str):
                change[key] = value
        for stream in list(streams):
            stream.offer(change)


def hub_of(state: Any) -> ConsoleHub:
    """This process's console hub (made on first use)."""
    hub = getattr(state, "console_hub", None)
    if hub is None:
        hub = state.console_hub = ConsoleHub(state)
    return cast(ConsoleHub, hub)


async def _stream_agent(request: Request) -> SignedInAgent:
    # A session of its own, closed before the stream starts: a stream lasts minutes, and a
    # pooled connection held that long would starve the requests (SQLite has one).
    async with request.app.state.sessionmaker() as session:
        agent = await service.signed_in_agent(session, request.cookies.get(SESSION_COOKIE))
    if agent is None:
        raise Unauthorized("sign in to the console first", code="not_signed_in")
    return agent


StreamAgent = Annotated[SignedInAgent, Depends(_stream_agent, scope="function")]

router = APIRouter(include_in_schema=False)


@router.get("/console/events", response_class=EventSourceResponse)
async def console_events(request: Request, agent: StreamAgent) -> AsyncIterator[ServerSentEvent]:
    hub = hub_of(request.app.state)
    await hub.listen()
    stream = hub.open(agent.tenant.id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_LIFETIME
    try:
        yield ServerSentEvent(data={"topic": "ready"}, retry=RECONNECT_MILLISECONDS)
        while (remaining := deadline - loop.time()) > 0:
            # The timeout covers the wait alone, never a ``yield`` (PEP 789).
            try:
                async with asyncio.timeout(remaining):
                    change = await stream.queue.get()
            except TimeoutError:
                return
            if stream.take_missed():
                change = {"topic": "refresh"}
            yield ServerSentEvent(data=change)
    finally:
        hub.close(stream)

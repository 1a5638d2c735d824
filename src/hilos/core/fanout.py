"""Every bus event, in every process that asks for it: the fan-out behind pushes to browsers.

``Bus.subscribe`` shares events among the processes of one durable consumer (JetStream queue
groups), which is right for work and wrong for pushes: each HTTP process holds its own browser
connections (the web chat's sockets, the console's event streams) and must hear every event
for them. A ``Fanout`` (one per process: ``fanout_of(app.state)``) hears the topics its
listeners ask for and hands each event to each listener that asked for its topic:

* in-process bus: one subscription under a durable name of its own;
* NATS: a plain (core NATS) subscription per topic pattern, on a connection of its own. That is
  at most once, without acknowledgements: a push is a courtesy to an open browser, and what it
  misses is in the database, where the page reads it.

A pattern is a topic (``message.sent``) or a prefix ending in ``.>`` (``conversation.>``: every
topic below it), as NATS writes it. A listener hears an event once, however many of its
patterns match it (on NATS, through the subscription of the first of them). Listeners run inside
the bus's delivery (on the in-process bus, inside the outbox relay's transaction): they must be
quick and must not use the database; anything slower goes to a task of its own. A failing
listener is logged and stops no other. Listening starts with the first listener and stops when
the last one leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import structlog

from hilos.core.bus import SUBJECT_PREFIX, Bus, BusEvent, Handler, NatsBus
from hilos.core.ids import new_id
from hilos.core.metrics import FANOUT_DELIVERED, FANOUT_FAILURES

log = structlog.get_logger(__name__)


def topic_matches(pattern: str, topic: str) -> bool:
    if pattern.endswith(".>"):
        return topic.startswith(pattern[:-1])
    return topic == pattern


class Fanout:
    """The listeners of this process and the subscriptions that feed them."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._listeners: dict[str, tuple[tuple[str, ...], Handler]] = {}
        self._patterns: set[str] = set()
        self._lock = asyncio.Lock()
        self._nats: Any = None
        self._on_bus = False

    async def listen(self, name: str, patterns: Iterable[str], handler: Handler) -> None:
        """Hand ``handler`` every event whose topic matches one of ``patterns``, from now on.

        ``name`` identifies the listener: listening again under the same name replaces it.
        """
        wanted = tuple(sorted(set(patterns)))
        async with self._lock:
            await self._hear(set(wanted) - self._patterns)
            self._patterns.update(wanted)
            self._listeners[name] = (wanted, handler)

    def listening(self, name: str) -> bool:
        return name in self._listeners

    async def stop(self, name: str) -> None:
        """Stop handing events to the listener ``name``; the last one out closes the door."""
        async with self._lock:
            self._listeners.pop(name, None)
            if not self._listeners:
                await self._close()

    async def close(self) -> None:
        """Drop every listener and subscription (the app's shutdown)."""
        async with self._lock:
            self._listeners.clear()
            await self._close()

    async def _close(self) -> None:
        # The in-process bus has no unsubscribe: its subscription stays and hands events to
        # nobody until a listener comes back; the bus drops it when it closes.
        if self._nats is not None:
            await self._nats.close()
            self._nats = None
        self._patterns.clear()

    async def _hear(self, patterns: set[str]) -> None:
        if not patterns:
            return
        if isinstance(self._bus, NatsBus):
            if self._nats is None:
                import nats

                self._nats = await nats.connect(self._bus.url, name="hilos-fanout")
            for pattern in sorted(patterns):
                await self._nats.subscribe(SUBJECT_PREFIX + pattern, cb=self._on_nats(pattern))
            # The server has the subscriptions once it answers: from then on nothing is missed.
            await self._nats.flush()
        elif not self._on_bus:
            await self._bus.subscribe(durable=f"fanout-{new_id()}", handler=self.deliver)
            self._on_bus = True

    def _on_nats(self, pattern: str) -> Callable[[Any], Awaitable[None]]:
        async def on_message(message: Any) -> None:
            try:
                event = BusEvent.decode(message.data)
            except (ValueError, KeyError, TypeError):
                log.warning("fanout.bad_event", subject=getattr(message, "subject", None))
                return
            await self.deliver(event, via=pattern)

        return on_message

    async def deliver(self, event: BusEvent, *, via: str | None = None) -> None:
        """Hand ``event`` to every listener with a pattern matching its topic; ``via`` is the
        pattern of the subscription it came through, if there is one per pattern (NATS)."""
        for name, (patterns, handler) in list(self._listeners.items()):
            first = next((p for p in patterns if topic_matches(p, event.topic)), None)
            if first is None or (via is not None and via != first):
                continue
            try:
                await handler(event)
                FANOUT_DELIVERED.inc()
            except Exception:
                FANOUT_FAILURES.labels(name).inc()
                log.exception(
                    "fanout.listener_failed",
                    listener=name,
                    topic=event.topic,
                    event_id=event.event_id,
                )


def fanout_of(state: Any) -> Fanout:
    """This process's fan-out (made on first use; the app closes it when it shuts down)."""
    fanout = getattr(state, "fanout", None)
    if fanout is None:
        fanout = state.fanout = Fanout(state.bus)
    return cast(Fanout, fanout)

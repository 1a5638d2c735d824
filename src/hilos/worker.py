"""The background worker: relays the outbox to the bus and runs due timers.

One loop, woken early when a request wrote to the outbox. ``hilos serve`` runs it in-process in
the embedded default; ``hilos worker`` runs it alone, several at once on PostgreSQL (rows are
claimed with ``SKIP LOCKED``, so no two workers do the same work).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos import domains  # noqa: F401  (every merge participant and outbox consumer; the app imports this module too)
from hilos.analytics import clv, surveys
from hilos.channels.delivery import deliver_due
from hilos.channels.imap import poll_mailboxes
from hilos.channels.registry import load_adapters
from hilos.commerce import carts, stock
from hilos.conversations.service import wake_snoozed
from hilos.core import metrics
from hilos.core.bus import Bus, NatsBus
from hilos.core.clock import now
from hilos.core.outbox import outbox_backlog, relay
from hilos.engagement import assistant, campaigns, journeys, segments
from hilos.integrations.delivery import send_due as send_webhooks
from hilos.matching import online as matching
from hilos.routing import service as routing
from hilos.routing import sla

log = structlog.get_logger(__name__)

# How often a worker measures the outbox's backlog and asks JetStream for its figures.
OUTBOX_OBSERVE_SECONDS = 5.0
BUS_OBSERVE_SECONDS = 15.0


class Worker:
    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], bus: Bus, interval: float
    ) -> None:
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.interval = interval
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._outbox_observed_at = self._bus_observed_at = -math.inf
        # Providers' APIs; tests swap in a client whose transport is a fake provider.
        self.http: httpx.AsyncClient | None = None
        load_adapters()

    def http_client(self) -> httpx.AsyncClient:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0))
        return self.http

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run_once(self) -> dict[str, int]:
        """Do everything that is due now; return what was done (for tests and logs).

        Each stage runs on even if another fails (logged): a provider's or a mailbox's
        trouble must not hold up the outbox, and the outbox must not hold up replies.
        """
        done: dict[str, int] = {}

        async def stage(name: str, work: Callable[[], Awaitable[Any]]) -> None:
            started = time.perf_counter()
            try:
                # Every line logged during the stage says which stage it was.
                with structlog.contextvars.bound_contextvars(stage=name):
                    result = await work()
            except Exception:
                metrics.WORKER_STAGE_FAILURES.labels(name).inc()
                log.exception("worker.stage_failed", stage=name)
                return
            finally:
                metrics.WORKER_STAGE_SECONDS.labels(name).observe(time.perf_counter() - started)
            if isinstance(result, dict):
                done.update(result)
            else:
                done[name] = int(result)

        async def snoozes() -> int:
            async with self.sessionmaker() as session, session.begin():
                return await wake_snoozed(session)

        async def outbox() -> int:
            await self.observe_outbox()
            published = 0
            while (batch := await relay(self.sessionmaker, self.bus)) > 0:
                published += batch
            return published

        await stage("woken", snoozes)
        await stage("mail_read", lambda: poll_mailboxes(self.sessionmaker, wakeup=self.wake))
        await stage("delivery", lambda: deliver_due(self.sessionmaker, self.http_client()))
        await stage("sla_fired", lambda: sla.fire_due(self.sessionmaker))
        await stage("reservations_expired", lambda: stock.expire_due(self.sessionmaker))
        await stage("carts_abandoned", lambda: carts.abandon_idle(self.sessionmaker))
        await stage("segments_refreshed", lambda: segments.refresh_due(self.sessionmaker))
        await stage("published", outbox)
        await stage(
            "assistant",
            lambda: assistant.answer_due(self.sessionmaker, self.http_client(), wakeup=self.wake),
        )
        # What the relay's routing consumer noted (arrivals, freed capacity), and due timers.
        await stage("routing", lambda: routing.run_due(self.sessionmaker))
        await stage("journey_steps", lambda: journeys.run_due(self.sessionmaker))
        await stage("campaigns", lambda: campaigns.run_due(self.sessionmaker))
        # Survey invitations that are due (the relay's survey consumer made their rows).
        await stage("surveys_sent", lambda: surveys.send_due(self.sessionmaker, wakeup=self.wake))
        # New and changed profiles checked for probable duplicates (suggestions, merges).
        await stage("matching", lambda: matching.check_due(self.sessionmaker))
        # Predicted CLV for the tenants whose KPIs were read for a newer hour (in a thread).
        await stage("clv_fits_started", lambda: clv.fit_due(self.sessionmaker))
        # Webhooks of the events just published (the relay's consumer made their rows).
        await stage("webhooks", lambda: send_webhooks(self.sessionmaker, self.http_client()))
        await stage("bus_observed", self.observe_bus)
        metrics.WORKER_LAST_PASS.set(time.time())
        return done

    async def observe_outbox(self) -> None:
        """Measure the outbox's backlog (for ``hilos_outbox_*``) at most every few seconds: one
        query on the index of unpublished events, before the relay drains them."""
        moment = time.monotonic()
        if moment - self._outbox_observed_at < OUTBOX_OBSERVE_SECONDS:
            return
        self._outbox_observed_at = moment
        async with self.sessionmaker() as session:
            pending, oldest = await outbox_backlog(session)
        metrics.record_outbox_backlog(
            pending, None if oldest is None else (now() - oldest).total_seconds()
        )

    async def observe_bus(self) -> int:
        """Refresh the bus's figures (JetStream stream and consumers) every ``BUS_OBSERVE_SECONDS``:
        they change slowly, and asking the server every pass would be a round trip per pass."""
        moment = time.monotonic()
        if moment - self._bus_observed_at < BUS_OBSERVE_SECONDS:
            return 0
        self._bus_observed_at = moment
        state = await self.bus.state() if isinstance(self.bus, NatsBus) else None
        if state is not None:
            metrics.record_bus_state(state)
        return 0

    async def run_forever(self) -> None:
        log.info("worker.started")
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:
                log.exception("worker.failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
        await self.close()
        log.info("worker.stopped")

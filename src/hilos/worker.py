"""The background worker: relays the outbox to the bus and runs due timers.

One loop, woken early when a request wrote to the outbox. ``hilos serve`` runs it in-process in
the embedded default; ``hilos worker`` runs it alone, several at once on PostgreSQL (rows are
claimed with ``SKIP LOCKED``, so no two workers do the same work).
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.delivery import deliver_due
from hilos.channels.imap import poll_mailboxes
from hilos.channels.registry import load_adapters
from hilos.conversations.service import wake_snoozed
from hilos.core.bus import Bus
from hilos.core.outbox import relay
from hilos.routing import service as routing
from hilos.routing import sla

log = structlog.get_logger(__name__)


class Worker:
    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], bus: Bus, interval: float
    ) -> None:
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.interval = interval
        self._wakeup = asyncio.Event()
        self._stopping = False
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
        """Do everything that is due now; return what was done (for tests and logs)."""
        async with self.sessionmaker() as session, session.begin():
            woken = await wake_snoozed(session)
        try:
            mail_read = await poll_mailboxes(self.sessionmaker, wakeup=self.wake)
        except Exception:  # a mailbox's trouble must not hold up replies and events
            log.exception("worker.imap_failed")
            mail_read = 0
        delivered = await deliver_due(self.sessionmaker, self.http_client())
        sla_fired = await sla.fire_due(self.sessionmaker)
        published = 0
        while True:
            batch = await relay(self.sessionmaker, self.bus)
            published += batch
            if batch == 0:
                break
        # What the relay's routing consumer noted (arrivals, freed capacity), and due timers.
        routed = await routing.run_due(self.sessionmaker)
        return {
            "published": published,
            "woken": woken,
            "mail_read": mail_read,
            "sla_fired": sla_fired,
            **routed,
            **delivered,
        }

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

"""The background worker: relays the outbox to the bus and runs due timers.

One loop, woken early when a request wrote to the outbox. ``hilos serve`` runs it in-process in
the embedded default; ``hilos worker`` runs it alone, several at once on PostgreSQL (rows are
claimed with ``SKIP LOCKED``, so no two workers do the same work).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.service import wake_snoozed
from hilos.core.bus import Bus
from hilos.core.outbox import relay

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

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run_once(self) -> dict[str, int]:
        """Do everything that is due now; return what was done (for tests and logs)."""
        async with self.sessionmaker() as session, session.begin():
            woken = await wake_snoozed(session)
        published = 0
        while True:
            batch = await relay(self.sessionmaker, self.bus)
            published += batch
            if batch == 0:
                break
        return {"published": published, "woken": woken}

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
        log.info("worker.stopped")

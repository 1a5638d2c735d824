"""Rate limits per API key, per console user and per webhook channel: 429 with ``Retry-After``.

Three budgets, each a token bucket per caller, set by the environment (``0`` turns one off):

- ``HILOS_RATE_LIMIT_API_PER_MINUTE`` — every request authenticated by an API key, counted
  against that key (``hilos.core.auth`` admits the caller once it knows the key);
- ``HILOS_RATE_LIMIT_CONSOLE_PER_MINUTE`` — every console page a signed-in user asks for,
  counted against the user;
- ``HILOS_RATE_LIMIT_WEBHOOK_PER_SECOND`` — every request to
  ``/webhooks/{provider}/{channel_id}``, counted against the channel once the provider's
  signature holds (so nobody without the channel's secret can spend its budget, and a flood of
  made-up channel ids fills no table here).

A bucket holds as many requests as the limit and refills at the limit's rate: a caller may
send a whole minute's budget at once, then as fast as it refills. A refused request answers
``429 {"error": {"code": "rate_limited", ...}}`` with ``Retry-After`` (whole seconds until one
more request would be admitted) before the endpoint runs, so it writes nothing. The defaults
are far above what one key or one channel sends in the benchmarks (about 1,500 requests a
second): they stop a runaway client, not a busy business.

Limits are kept in each process's memory: with ``hilos serve --workers N`` a caller gets N
budgets (one per process its requests land on). That is the documented semantics, not an
accident: a limit shared by every process belongs in the load balancer in front of them.

Why no library: ``limits`` (the well-kept choice, also under ``slowapi``) was measured here
first. Its asyncio in-memory storage schedules a task on every hit that walks every key it
holds (about 0.8 ms a request with 10,000 keys, more than a whole inbound message costs); its
threaded storage re-arms a timer thread every 10 ms that does the same walk under the GIL; its
exact moving window keeps one timestamp per admitted request (a list of 300,000 per key at
our defaults), and its sliding-window counter is approximate at window edges. What this
module needs is one float per key and two comparisons — the generic cell rate algorithm
(GCRA) — which fits in a few lines, costs well under a microsecond and needs no background work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from hilos.core.errors import HilosError
from hilos.core.settings import Settings

# The console shows this message on its error page; it is in the translation catalogs.
CONSOLE_MESSAGE = "Too many requests. Wait a few seconds and try again."


class RateLimited(HilosError):
    """The caller used up its budget: 429, with ``Retry-After`` in whole seconds."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after
        # The app's error handler sends these along with the JSON body.
        self.headers = {"Retry-After": str(retry_after)}


class TokenBuckets:
    """One token bucket per key, as GCRA: a key's state is the time its bucket is full again.

    ``limit`` requests fit in the bucket and one more arrives every ``period / limit`` seconds.
    Keys whose bucket is full again carry no information, so they are dropped when the table
    grows past ``max_keys``; should every key still be busy, the table starts afresh (limits
    forgotten for a moment rather than memory without bound).
    """

    def __init__(
        self,
        *,
        limit: int,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if limit <= 0 or period <= 0:
            raise ValueError("a rate limit needs a positive limit and period")
        self.limit = limit
        self.interval = period / limit
        # How far ahead of now a key's "full again" time may be and still admit a request:
        # ``limit`` requests at the same instant fit, the next one waits one interval.
        self.tolerance = period - self.interval
        self.clock = clock
        self.max_keys = max_keys
        self._full_at: dict[str, float] = {}

    def take(self, key: str) -> float:
        """Admit one request of ``key``: 0.0 if admitted, else the seconds until one would be.

        A refused request takes nothing from the bucket, so retrying too early costs nothing
        more than being refused again.
        """
        now = self.clock()
        full_at = max(self._full_at.get(key, now), now)
        wait = full_at - self.tolerance - now
        if wait > 0:
            return wait
        if key not in self._full_at and len(self._full_at) >= self.max_keys:
            self._forget_full(now)
        self._full_at[key] = full_at + self.interval
        return 0.0

    def _forget_full(self, now: float) -> None:
        self._full_at = {key: at for key, at in self._full_at.items() if at > now}
        if len(self._full_at) >= self.max_keys // 2:
            self._full_at.clear()


def _buckets(limit: int, period: float, clock: Callable[[], float]) -> TokenBuckets | None:
    return TokenBuckets(limit=limit, period=period, clock=clock) if limit > 0 else None


class RateLimits:
    """The three budgets of one app (``app.state.rate_limits``), built from its settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self.api_keys = _buckets(settings.rate_limit_api_per_minute, 60.0, clock)
        self.console_users = _buckets(settings.rate_limit_console_per_minute, 60.0, clock)
        self.webhook_channels = _buckets(settings.rate_limit_webhook_per_second, 1.0, clock)

    def admit_api_key(self, key_id: str) -> None:
        wait = self.api_keys.take(key_id) if self.api_keys else 0.0
        if wait:
            raise _refused("this API key", wait)

    def admit_console_user(self, user_id: str) -> None:
        wait = self.console_users.take(user_id) if self.console_users else 0.0
        if wait:
            raise RateLimited(CONSOLE_MESSAGE, retry_after=_whole_seconds(wait))

    def admit_webhook(self, channel_id: str) -> None:
        wait = self.webhook_channels.take(channel_id) if self.webhook_channels else 0.0
        if wait:
            raise _refused(f"the webhooks of channel {channel_id}", wait)


def _whole_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def _refused(whose: str, wait: float) -> RateLimited:
    seconds = _whole_seconds(wait)
    return RateLimited(
        f"too many requests for {whose}: try again in {seconds} s", retry_after=seconds
    )


def rate_limits(app: Any) -> RateLimits:
    """The app's budgets (``create_app`` makes them; a test may swap in its own clock)."""
    limits: RateLimits = app.state.rate_limits
    return limits

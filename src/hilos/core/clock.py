"""The clock: aware UTC datetimes everywhere. Tests may replace ``now`` through ``set_now``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _now()


def set_now(provider: Callable[[], datetime] | None) -> None:
    """Replace the clock (``None`` restores the real one)."""
    global _now
    _now = provider or (lambda: datetime.now(UTC))


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already.

    SQLite gives back naive datetimes, so every read from the database goes through here.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)

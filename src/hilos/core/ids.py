"""Identifiers: 32 hex characters, time-ordered so that sorting by id sorts by creation.

The layout is UUIDv7's (48-bit millisecond timestamp, then random bits). Python 3.11's ``uuid``
module has no ``uuid7``, and the few lines below avoid a dependency for it.
"""

from __future__ import annotations

import os

from hilos.core import clock


def new_id() -> str:
    """A new id whose time part comes from ``hilos.core.clock``, so history imported with its
    own timestamps (and tests that move the clock) get ids in the order of their times."""
    millis = int(clock.now().timestamp() * 1000)
    return f"{millis:012x}{os.urandom(10).hex()}"

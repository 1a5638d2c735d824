"""Identifiers: 32 hex characters, time-ordered so that sorting by id sorts by creation.

The layout is UUIDv7's (48-bit millisecond timestamp, then 80 bits), with the monotonic rule of
its section 6.2: ids made in the same millisecond by one process count up from a random start,
so the outbox relays events in the order they were written. Python 3.11's ``uuid`` module has
no ``uuid7``, and these few lines avoid a dependency for it.

The time part comes from ``hilos.core.clock``, so history imported with its own timestamps
(and tests that move the clock) get ids in the order of their times.
"""

from __future__ import annotations

import os
import threading

from hilos.core import clock

_RANDOM_BITS = 80
_lock = threading.Lock()
_last_millis = -1
_last_random = 0


def new_id() -> str:
    global _last_millis, _last_random
    millis = int(clock.now().timestamp() * 1000)
    with _lock:
        if millis == _last_millis and _last_random + 1 < (1 << _RANDOM_BITS):
            _last_random += 1
        else:
            # A fresh random start, keeping headroom so the counter rarely overflows.
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1
        _last_millis = millis
        return f"{millis:012x}{_last_random:020x}"

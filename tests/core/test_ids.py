"""Ids sort in the order they were made, even many in one millisecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hilos.core import clock
from hilos.core.ids import new_id


def test_ids_made_in_one_millisecond_sort_in_order() -> None:
    moment = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    clock.set_now(lambda: moment)
    try:
        ids = [new_id() for _ in range(2_000)]
    finally:
        clock.set_now(None)
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_ids_follow_the_clock() -> None:
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    later += timedelta(milliseconds=1)
    clock.set_now(lambda: later)
    try:
        second = new_id()
        clock.set_now(lambda: earlier)
        first = new_id()
    finally:
        clock.set_now(None)
    assert first < second

"""Business hours: how much of a span of time a business was open, and when a span ends.

A tenant's ``BusinessCalendar`` is a weekly schedule (one or more intervals per weekday, in the
tenant's local wall-clock time, an interval may end at ``24:00``), holidays (local dates,
closed all day) and an IANA time zone. Two pure functions answer everything SLA timers need,
taking and returning aware UTC datetimes:

- ``business_seconds_between(start, end, calendar)``: open seconds in ``[start, end)``
  (negative when ``end`` is before ``start``);
- ``add_business_seconds(start, seconds, calendar)``: the first moment by which ``seconds`` of
  open time have passed since ``start``; its inverse.

``calendar=None`` means around the clock: plain elapsed time.

Each local day's intervals are turned into UTC instants with the zone's rules of that day, so a
daylight-saving change is exact: Madrid's 00:00–24:00 lasts 23 hours on 2026-03-29 and 25 on
2026-10-25. A wall time the clocks skip (02:30 on a spring-forward night) stands for the first
moment after it, the change itself, so an interval inside the gap is empty; a wall time that
happens twice (autumn) means its first occurrence.

Why not a library: the business-time packages on PyPI (``businesstimedelta``, ``businesstime``)
are built on pytz or naive datetimes, have seen no release in years, and would add pytz beside
the standard ``zoneinfo`` the rest of Hilos uses; ``workalendar``-style packages count whole
working days. What is needed here is a short loop over local days.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
# How far ``add_business_seconds`` looks for open time before it gives up (a calendar that is
# open once a week still finds a year of targets well inside this).
SEARCH_DAYS = 3_660

_TIME_OF_DAY = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")

Interval = tuple[int, int]  # seconds since local midnight: start < end <= 86 400


class CalendarError(ValueError):
    """A schedule that cannot be used, with the field at fault (``weekly.mon.0``, ...)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def parse_time_of_day(text: str, *, field: str = "time") -> int:
    """``"09:30"`` → 34 200 seconds since midnight; ``"24:00"`` is the end of the day."""
    match = _TIME_OF_DAY.match(text) if isinstance(text, str) else None
    if match is None:
        raise CalendarError(
            f"{text!r} is not a time of day: use HH:MM from 00:00 to 24:00", field=field
        )
    hours, minutes = (match[1], match[2]) if match[1] is not None else (match[3], match[4])
    return int(hours) * 3600 + int(minutes) * 60


def format_time_of_day(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise CalendarError(
            f"{name!r} is not an IANA time zone (for example Europe/Madrid)", field=field
        ) from error


def parse_day(intervals: Sequence[Sequence[str]], *, field: str) -> tuple[Interval, ...]:
    """One weekday's intervals, sorted; touching intervals are joined, overlapping refused."""
    parsed: list[tuple[Interval, str]] = []
    for index, interval in enumerate(intervals):
        where = f"{field}.{index}"
        if isinstance(interval, str) or len(interval) != 2:
            raise CalendarError('an interval is a pair ["HH:MM", "HH:MM"]', field=where)
        start = parse_time_of_day(interval[0], field=f"{where}.0")
        end = parse_time_of_day(interval[1], field=f"{where}.1")
        if start == DAY_SECONDS:
            raise CalendarError("24:00 can only end an interval", field=f"{where}.0")
        if end <= start:
            raise CalendarError(
                f"the interval {interval[0]}–{interval[1]} ends before it starts; an interval "
                "past midnight is two intervals, one ending at 24:00 and one from 00:00",
                field=where,
            )
        parsed.append(((start, end), where))
    parsed.sort()
    joined: list[Interval] = []
    for (start, end), where in parsed:
        if joined and start < joined[-1][1]:
            previous = joined[-1]
            raise CalendarError(
                f"the intervals {format_time_of_day(previous[0])}–{format_time_of_day(previous[1])}"
                f" and {format_time_of_day(start)}–{format_time_of_day(end)} overlap",
                field=where,
            )
        if joined and start == joined[-1][1]:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return tuple(joined)


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """When a business is open. Build one with ``BusinessCalendar.build`` (validated)."""

    zone: ZoneInfo
    # Monday first, as ``date.weekday()`` counts.
    weekly: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()

    @classmethod
    def build(
        cls,
        *,
        timezone: str,
        weekly: Mapping[str, Sequence[Sequence[str]]],
        holidays: Iterable[date | str] = (),
    ) -> BusinessCalendar:
        zone = parse_zone(timezone)
        for key in weekly:
            if key not in WEEKDAYS:
                raise CalendarError(
                    f"{key!r} is not a weekday: use {', '.join(WEEKDAYS)}", field=f"weekly.{key}"
                )
        days = tuple(parse_day(weekly.get(key, ()), field=f"weekly.{key}") for key in WEEKDAYS)
        if not any(days):
            raise CalendarError("the week needs at least one open interval", field="weekly")
        closed: set[date] = set()
        for index, holiday in enumerate(holidays):
            try:
                closed.add(holiday if isinstance(holiday, date) else date.fromisoformat(holiday))
            except (TypeError, ValueError) as error:
                raise CalendarError(
                    f"{holiday!r} is not a date (YYYY-MM-DD)", field=f"holidays.{index}"
                ) from error
        return cls(zone=zone, weekly=days, holidays=frozenset(closed))

    @classmethod
    def around_the_clock(cls, timezone: str = "UTC") -> BusinessCalendar:
        return cls(zone=parse_zone(timezone), weekly=(((0, DAY_SECONDS),),) * 7)

    def to_weekly(self) -> dict[str, list[list[str]]]:
        return {
            key: [[format_time_of_day(s), format_time_of_day(e)] for s, e in intervals]
            for key, intervals in zip(WEEKDAYS, self.weekly, strict=True)
        }


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got the naive {value.isoformat()}")


def _offset_at(instant: datetime, zone: ZoneInfo) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _instant(day: date, seconds: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``seconds`` after midnight of ``day``."""
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: a repeated time's first
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # The clocks skip this wall time. fold=0 read it with the offset from before the change
    # (an instant after it), fold=1 with the offset from after (an instant before it): the
    # change lies between, found to the second (tz database changes fall on whole seconds).
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after, offset_after = instant, _offset_at(instant, zone)
    while after - before > timedelta(seconds=1):
        middle = before + timedelta(seconds=(after - before).total_seconds() // 2)
        if _offset_at(middle, zone) == offset_after:
            after = middle
        else:
            before = middle
    return after


@functools.lru_cache(maxsize=4096)
def _open_intervals(calendar: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The day's open intervals as UTC instants (none on a holiday)."""
    if day in calendar.holidays:
        return ()
    return tuple(
        (_instant(day, start, calendar.zone), _instant(day, end, calendar.zone))
        for start, end in calendar.weekly[day.weekday()]
    )


def _local_day(moment: datetime, calendar: BusinessCalendar) -> date:
    return moment.astimezone(calendar.zone).date()


def business_seconds_between(
    start: datetime, end: datetime, calendar: BusinessCalendar | None
) -> float:
    """Open seconds from ``start`` to ``end``; negative when ``end`` comes first."""
    _require_aware("start", start)
    _require_aware("end", end)
    if calendar is None:
        return (end - start).total_seconds()
    if end < start:
        return -business_seconds_between(end, start, calendar)
    total = timedelta()
    day, last = _local_day(start, calendar), _local_day(end, calendar)
    while day <= last:
        for opens, closes in _open_intervals(calendar, day):
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta():
                total += overlap
        day += timedelta(days=1)
    return total.total_seconds()


def add_business_seconds(
    start: datetime, seconds: float, calendar: BusinessCalendar | None
) -> datetime:
    """The first moment by which ``seconds`` of open time have passed since ``start`` (UTC).

    When the time runs out exactly at a closing time, that closing time is the answer, not
    the next opening.
    """
    _require_aware("start", start)
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds!r}")
    remaining = timedelta(seconds=seconds)
    start = start.astimezone(UTC)
    if calendar is None or remaining == timedelta():
        return start + remaining
    day = _local_day(start, calendar)
    for _ in range(SEARCH_DAYS):
        for opens, closes in _open_intervals(calendar, day):
            opens = max(opens, start)
            if closes <= opens:
                continue
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        day += timedelta(days=1)
    raise ValueError(f"the calendar has no open time in the {SEARCH_DAYS} days after {start}")


def is_open(moment: datetime, calendar: BusinessCalendar | None) -> bool:
    """Whether the business is open at ``moment`` (always, without a calendar)."""
    _require_aware("moment", moment)
    if calendar is None:
        return True
    return any(
        opens <= moment < closes
        for opens, closes in _open_intervals(calendar, _local_day(moment, calendar))
    )

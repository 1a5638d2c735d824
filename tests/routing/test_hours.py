"""Business-hours arithmetic: edges of the day, holidays, daylight-saving changes, inverses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilos.routing.hours import (
    WEEKDAYS,
    BusinessCalendar,
    CalendarError,
    add_business_seconds,
    business_seconds_between,
    is_open,
)

MADRID = ZoneInfo("Europe/Madrid")
HOUR = 3600.0

# A shop in Madrid: split shift on weekdays, Saturday mornings, and Christmas off.
SHOP = BusinessCalendar.build(
    timezone="Europe/Madrid",
    weekly={
        **{day: [["09:00", "14:00"], ["16:00", "19:00"]] for day in WEEKDAYS[:5]},
        "sat": [["10:00", "14:00"]],
    },
    holidays=["2026-12-25", "2026-03-30"],
)
# Open all day every day, in Madrid's wall-clock time.
ALL_DAY = BusinessCalendar.build(
    timezone="Europe/Madrid", weekly={day: [["00:00", "24:00"]] for day in WEEKDAYS}
)
# Evenings that run past midnight, written as two intervals.
LATE = BusinessCalendar.build(
    timezone="Europe/Madrid",
    weekly={"fri": [["20:00", "24:00"]], "sat": [["00:00", "02:00"], ["20:00", "24:00"]]},
)


def madrid(*parts: int) -> datetime:
    """A Madrid wall-clock time, as the UTC instant the functions take."""
    return datetime(*parts, tzinfo=MADRID).astimezone(UTC)  # type: ignore[misc]


def test_split_shift_counts_only_open_time() -> None:
    # Monday 13:00 → 17:00: one hour before lunch, one after.
    start, end = madrid(2026, 11, 23, 13, 0), madrid(2026, 11, 23, 17, 0)
    assert business_seconds_between(start, end, SHOP) == 2 * HOUR
    # Two business hours from Monday 13:00 end at 17:00, lunch skipped.
    assert add_business_seconds(start, 2 * HOUR, SHOP) == end
    # Closed at lunch, open after.
    assert not is_open(madrid(2026, 11, 23, 15, 0), SHOP)
    assert is_open(madrid(2026, 11, 23, 16, 0), SHOP)


def test_time_running_out_at_closing_ends_there_not_at_the_next_opening() -> None:
    assert add_business_seconds(madrid(2026, 11, 23, 18, 0), HOUR, SHOP) == madrid(
        2026, 11, 23, 19, 0
    )
    # One second more carries into Tuesday morning.
    assert add_business_seconds(madrid(2026, 11, 23, 18, 0), HOUR + 1, SHOP) == madrid(
        2026, 11, 24, 9, 0, 1
    )


def test_a_target_set_outside_hours_starts_counting_at_the_next_opening() -> None:
    # Friday 18:30, four business hours: half an hour on Friday, three and a half on Saturday.
    start = madrid(2026, 11, 27, 18, 30)
    assert add_business_seconds(start, 4 * HOUR, SHOP) == madrid(2026, 11, 28, 13, 30)
    # Saturday 15:00 (closed until Monday): one hour lands on Monday 10:00.
    assert add_business_seconds(madrid(2026, 11, 28, 15, 0), HOUR, SHOP) == madrid(
        2026, 11, 30, 10, 0
    )
    assert (
        business_seconds_between(madrid(2026, 11, 28, 15, 0), madrid(2026, 11, 30, 9, 0), SHOP) == 0
    )


def test_a_holiday_is_closed_all_day() -> None:
    # Christmas 2026 is a Friday: Thursday 18:00 + 2 h goes to Saturday 11:00.
    assert add_business_seconds(madrid(2026, 12, 24, 18, 0), 2 * HOUR, SHOP) == madrid(
        2026, 12, 26, 11, 0
    )
    assert (
        business_seconds_between(madrid(2026, 12, 25, 0, 0), madrid(2026, 12, 26, 0, 0), SHOP) == 0
    )


def test_daylight_saving_spring_forward_in_madrid() -> None:
    """2026-03-29 02:00 → 03:00: the day has 23 hours, and wall-clock hours keep their place."""
    midnight, next_midnight = madrid(2026, 3, 29, 0, 0), madrid(2026, 3, 30, 0, 0)
    assert business_seconds_between(midnight, next_midnight, ALL_DAY) == 23 * HOUR
    assert add_business_seconds(midnight, 23 * HOUR, ALL_DAY) == next_midnight
    # Friday 18:00 + 6 h on the split shift, over the weekend of the change: 1 h on Friday,
    # 4 h on Saturday, Monday 30 March (a holiday here) skipped, 1 h on Tuesday.
    assert add_business_seconds(madrid(2026, 3, 27, 18, 0), 6 * HOUR, SHOP) == madrid(
        2026, 3, 31, 10, 0
    )
    # An interval inside the hour the clocks skip is empty.
    night = BusinessCalendar.build(timezone="Europe/Madrid", weekly={"sun": [["01:00", "03:00"]]})
    assert business_seconds_between(midnight, next_midnight, night) == HOUR


def test_daylight_saving_fall_back_in_madrid() -> None:
    """2026-10-25 03:00 → 02:00: the day has 25 hours."""
    midnight, next_midnight = madrid(2026, 10, 25, 0, 0), madrid(2026, 10, 26, 0, 0)
    assert business_seconds_between(midnight, next_midnight, ALL_DAY) == 25 * HOUR
    assert add_business_seconds(midnight, 25 * HOUR, ALL_DAY) == next_midnight
    # Saturday 13:00 + 2 business hours: Saturday's last hour, then Monday 09:00–10:00; the
    # extra hour of Sunday night changes nothing.
    assert add_business_seconds(madrid(2026, 10, 24, 13, 0), 2 * HOUR, SHOP) == madrid(
        2026, 10, 26, 10, 0
    )
    # Open 01:00–03:00 on that Sunday: three hours pass on the clock.
    night = BusinessCalendar.build(timezone="Europe/Madrid", weekly={"sun": [["01:00", "03:00"]]})
    assert business_seconds_between(midnight, next_midnight, night) == 3 * HOUR


def test_intervals_ending_at_midnight_run_into_the_next_day() -> None:
    friday_23 = madrid(2026, 11, 27, 23, 0)
    # 1 h to midnight, then Saturday 00:00–02:00.
    assert add_business_seconds(friday_23, 2 * HOUR, LATE) == madrid(2026, 11, 28, 1, 0)
    assert business_seconds_between(friday_23, madrid(2026, 11, 28, 21, 0), LATE) == 4 * HOUR
    assert is_open(madrid(2026, 11, 28, 0, 0), LATE)
    assert not is_open(madrid(2026, 11, 28, 2, 0), LATE)


def test_without_a_calendar_time_runs_around_the_clock() -> None:
    start = madrid(2026, 3, 28, 12, 0)
    assert business_seconds_between(start, start + timedelta(days=2), None) == 48 * HOUR
    assert add_business_seconds(start, 90.5, None) == start + timedelta(seconds=90.5)
    assert is_open(start, None)


def test_spans_run_backwards_as_negative_and_naive_times_are_refused() -> None:
    start, end = madrid(2026, 11, 23, 13, 0), madrid(2026, 11, 23, 17, 0)
    assert business_seconds_between(end, start, SHOP) == -2 * HOUR
    with pytest.raises(ValueError, match="aware"):
        business_seconds_between(datetime(2026, 1, 1), end, SHOP)  # noqa: DTZ001
    with pytest.raises(ValueError, match="must not be negative"):
        add_business_seconds(start, -1, SHOP)


@pytest.mark.parametrize(
    ("weekly", "holidays", "timezone", "field", "message"),
    [
        ({"mon": [["25:00", "26:00"]]}, [], "UTC", "weekly.mon.0.0", "not a time of day"),
        ({"mon": [["09:00", "9:30"]]}, [], "UTC", "weekly.mon.0.1", "not a time of day"),
        ({"tue": [["14:00", "09:00"]]}, [], "UTC", "weekly.tue.0", "ends before it starts"),
        ({"tue": [["24:00", "24:00"]]}, [], "UTC", "weekly.tue.0.0", "24:00 can only end"),
        ({"wed": [["09:00", "14:00"], ["13:00", "15:00"]]}, [], "UTC", "weekly.wed.1", "overlap"),
        ({"monday": [["09:00", "14:00"]]}, [], "UTC", "weekly.monday", "not a weekday"),
        ({"mon": []}, [], "UTC", "weekly", "at least one open interval"),
        ({"mon": [["09:00", "14:00"]]}, ["2026-02-30"], "UTC", "holidays.0", "not a date"),
        ({"mon": [["09:00", "14:00"]]}, [], "Europe/Atlantis", "timezone", "IANA time zone"),
    ],
)
def test_an_unusable_schedule_names_the_field(
    weekly: dict[str, list[list[str]]],
    holidays: list[str],
    timezone: str,
    field: str,
    message: str,
) -> None:
    with pytest.raises(CalendarError, match=message) as raised:
        BusinessCalendar.build(timezone=timezone, weekly=weekly, holidays=holidays)
    assert raised.value.field == field


def test_touching_intervals_join() -> None:
    calendar = BusinessCalendar.build(
        timezone="UTC", weekly={"mon": [["14:00", "19:00"], ["09:00", "14:00"]]}
    )
    assert calendar.to_weekly()["mon"] == [["09:00", "19:00"]]


# --- properties -----------------------------------------------------------------------------

CALENDARS = st.sampled_from([SHOP, ALL_DAY, LATE, None])
# Around both of Madrid's 2026 changes, and a Christmas.
MOMENTS = st.sampled_from(
    [madrid(2026, 3, 26, 0, 0), madrid(2026, 10, 22, 0, 0), madrid(2026, 12, 22, 0, 0)]
).flatmap(
    lambda base: st.integers(min_value=0, max_value=8 * 86_400 * 1000).map(
        lambda ms: base + timedelta(milliseconds=ms)
    )
)
SPANS = st.integers(min_value=0, max_value=30 * 3600 * 1000).map(lambda ms: ms / 1000)


@settings(max_examples=300, deadline=None)
@given(calendar=CALENDARS, start=MOMENTS, seconds=SPANS)
def test_adding_then_measuring_gives_the_seconds_back(
    calendar: BusinessCalendar | None, start: datetime, seconds: float
) -> None:
    end = add_business_seconds(start, seconds, calendar)
    assert end >= start
    assert business_seconds_between(start, end, calendar) == pytest.approx(seconds, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(calendar=CALENDARS, start=MOMENTS, first=SPANS, second=SPANS)
def test_more_seconds_never_end_earlier(
    calendar: BusinessCalendar | None, start: datetime, first: float, second: float
) -> None:
    low, high = sorted((first, second))
    assert add_business_seconds(start, low, calendar) <= add_business_seconds(start, high, calendar)


@settings(max_examples=200, deadline=None)
@given(calendar=CALENDARS, start=MOMENTS, first=SPANS, second=SPANS)
def test_measured_time_adds_up_and_never_exceeds_the_clock(
    calendar: BusinessCalendar | None, start: datetime, first: float, second: float
) -> None:
    middle = start + timedelta(seconds=first)
    end = middle + timedelta(seconds=second)
    whole = business_seconds_between(start, end, calendar)
    assert whole == pytest.approx(
        business_seconds_between(start, middle, calendar)
        + business_seconds_between(middle, end, calendar),
        abs=1e-6,
    )
    assert 0 <= whole <= (end - start).total_seconds() + 1e-6
    if calendar is ALL_DAY or calendar is None:
        assert whole == pytest.approx((end - start).total_seconds(), abs=1e-6)


def open_minutes_by_looking_at_each_minute(
    start: datetime, minutes: int, calendar: BusinessCalendar
) -> int:
    """An independent count: is the local wall-clock time of each minute inside an interval?"""
    count = 0
    for step in range(minutes):
        local = (start + timedelta(minutes=step)).astimezone(calendar.zone)
        if local.date() in calendar.holidays:
            continue
        second = local.hour * 3600 + local.minute * 60
        if any(s <= second < e for s, e in calendar.weekly[local.weekday()]):
            count += 1
    return count


@settings(max_examples=60, deadline=None)
@given(
    base=st.sampled_from([madrid(2026, 3, 27, 0, 0), madrid(2026, 10, 23, 0, 0)]),
    offset=st.integers(min_value=0, max_value=4 * 24 * 60),
    minutes=st.integers(min_value=0, max_value=3 * 24 * 60),
    calendar=st.sampled_from([SHOP, ALL_DAY, LATE]),
)
def test_agrees_with_counting_minute_by_minute(
    base: datetime, offset: int, minutes: int, calendar: BusinessCalendar
) -> None:
    start = base + timedelta(minutes=offset)
    expected = open_minutes_by_looking_at_each_minute(start, minutes, calendar) * 60
    assert business_seconds_between(start, start + timedelta(minutes=minutes), calendar) == expected


def test_holidays_are_local_dates() -> None:
    # 2026-12-25 00:30 in Madrid is still the 24th in UTC: it is the holiday all the same.
    calendar = BusinessCalendar.build(
        timezone="Europe/Madrid",
        weekly={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        holidays=[date(2026, 12, 25)],
    )
    assert not is_open(madrid(2026, 12, 25, 0, 30), calendar)
    assert is_open(madrid(2026, 12, 24, 23, 30), calendar)

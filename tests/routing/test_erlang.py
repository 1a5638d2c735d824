"""Erlang C staffing figures: textbook values, an independent formula, limits and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hilos.routing import erlang


def erlang_c_by_factorials(traffic: Fraction, agents: int) -> Fraction:
    """The textbook form, in exact rational arithmetic: only usable for small pools."""
    top = traffic**agents / math.factorial(agents) * Fraction(agents) / (agents - traffic)
    bottom = sum(traffic**k / math.factorial(k) for k in range(agents)) + top
    return top / bottom


def test_the_textbook_example() -> None:
    """100 calls in 30 minutes, 3-minute calls (10 erlangs), answered within 20 seconds: the
    worked example of call-centre staffing guides gives 39.0 %, 64.0 %, 79.6 % and 88.8 % for
    11 to 14 agents, so 14 agents are needed for 80/20, and the wait then averages 7.8 s."""
    levels = [erlang.service_level(100, 1800, 180, n, 20) for n in (11, 12, 13, 14)]
    assert levels == pytest.approx([0.3896, 0.6402, 0.7956, 0.8884], abs=5e-4)
    assert erlang.agents_needed(100, 1800, 180, 20, 0.8) == 14
    assert erlang.average_speed_of_answer(100, 1800, 180, 14) == pytest.approx(7.84, abs=0.01)
    assert erlang.erlang_c(10, 11) == pytest.approx(0.6821, abs=5e-4)


@pytest.mark.parametrize(("traffic", "agents"), [(1, 2), (2.5, 3), (10, 11), (10, 14), (17, 25)])
def test_the_recursion_agrees_with_the_factorial_formula(traffic: float, agents: int) -> None:
    exact = erlang_c_by_factorials(Fraction(traffic), agents)
    assert erlang.erlang_c(traffic, agents) == pytest.approx(float(exact), rel=1e-12)
    calls, period, aht, target = traffic * 3600 / 240, 3600, 240, 30
    expected = 1 - float(exact) * math.exp(-(agents - traffic) * target / aht)
    assert erlang.service_level(calls, period, aht, agents, target) == pytest.approx(expected)


def test_large_pools_stay_finite_and_sensible() -> None:
    """5 000 erlangs: the textbook A^N / N! overflows a float; the recursion does not."""
    needed = erlang.agents_needed(100_000, 3600, 180, 20, 0.9)
    assert 5000 < needed < 5100
    assert erlang.service_level(100_000, 3600, 180, needed, 20) >= 0.9
    assert erlang.service_level(100_000, 3600, 180, needed - 1, 20) < 0.9
    assert 0 < erlang.erlang_c(5000, 5050) < 1


def test_limits() -> None:
    assert erlang.service_level(0, 1800, 180, 0, 20) == 1.0  # no calls: nobody waits
    assert erlang.service_level(100, 1800, 180, 10, 20) == 0.0  # agents == traffic
    assert erlang.service_level(100, 1800, 180, 3, 20) == 0.0  # agents < traffic
    assert erlang.erlang_c(10, 10) == 1.0
    assert erlang.erlang_c(0, 3) == 0.0
    assert erlang.average_speed_of_answer(100, 1800, 180, 10) == math.inf
    assert erlang.agents_needed(0, 1800, 180, 20, 0.8) == 0
    # A zero-second target counts only calls answered at once: 1 - C.
    assert erlang.service_level(100, 1800, 180, 12, 0) == pytest.approx(1 - erlang.erlang_c(10, 12))


@given(
    calls=st.floats(min_value=1, max_value=2000),
    aht=st.floats(min_value=10, max_value=900),
    target=st.floats(min_value=0, max_value=120),
)
def test_more_agents_never_serve_worse(calls: float, aht: float, target: float) -> None:
    load = calls * aht / 3600
    start = math.floor(load) + 1
    levels = [erlang.service_level(calls, 3600, aht, n, target) for n in range(start, start + 30)]
    assert all(0 <= level <= 1 for level in levels)
    assert levels == sorted(levels)
    needed = erlang.agents_needed(calls, 3600, aht, target, 0.8)
    assert erlang.service_level(calls, 3600, aht, needed, target) >= 0.8
    assert needed == start or erlang.service_level(calls, 3600, aht, needed - 1, target) < 0.8


@given(target=st.floats(min_value=0, max_value=600))
def test_a_longer_target_is_met_more_often(target: float) -> None:
    assert erlang.service_level(100, 1800, 180, 12, target) <= erlang.service_level(
        100, 1800, 180, 12, target + 10
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((100, 0, 180, 11, 20), "period_seconds must be greater than 0"),
        ((100, 1800, -1, 11, 20), "aht_seconds must be greater than 0"),
        ((-5, 1800, 180, 11, 20), "calls must not be negative"),
        ((100, 1800, 180, -1, 20), "agents must not be negative"),
        ((100, 1800, 180, 2.5, 20), "agents must be a whole number"),
        ((100, 1800, 180, 11, -3), "target_seconds must not be negative"),
        ((float("nan"), 1800, 180, 11, 20), "calls must be a number"),
        ((100, math.inf, 180, 11, 20), "period_seconds must be finite"),
        (("100", 1800, 180, 11, 20), "calls must be a number"),
    ],
)
def test_bad_input_says_what_is_wrong(arguments: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        erlang.service_level(*arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.2])
def test_a_target_service_level_outside_0_and_1_is_refused(level: float) -> None:
    with pytest.raises(ValueError, match="target_service_level must be between 0 and 1"):
        erlang.agents_needed(100, 1800, 180, 20, level)

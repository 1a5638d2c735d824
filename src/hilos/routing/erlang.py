"""Staffing arithmetic: Erlang C for a queue of calls (or chats) served by a pool of agents.

The model (M/M/N): arrivals are Poisson, handle times exponential, a caller waits as long as it
takes. With ``calls`` arriving in ``period_seconds`` and an average handle time ``aht_seconds``
the offered traffic is ``A = calls * aht / period`` erlangs. With ``N`` agents:

- Erlang B (blocking) by its recursion ``B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1))``, which
  stays between 0 and 1 at every step, so it is exact for thousands of agents where the textbook
  form ``A^N / N!`` overflows a float long before;
- Erlang C (probability of waiting) ``C = N·B / (N - A·(1 - B))`` when ``N > A``; with ``N <= A``
  the queue grows without bound and every caller waits (``C = 1``);
- service level (share answered within ``t``) ``SL = 1 - C·exp(-(N - A)·t / aht)``;
- average speed of answer ``ASA = C·aht / (N - A)``.

These are a dozen lines, so they live here rather than in a dependency: the workforce libraries
on PyPI are unmaintained or pull in a scientific stack for what ``math.exp`` does.
"""

from __future__ import annotations

import math


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check(name: str, value: float, *, positive: bool = False) -> float:
    value = _number(name, value)
    if positive and value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


def _check_agents(agents: int) -> int:
    if isinstance(agents, bool) or not isinstance(agents, int):
        raise ValueError(f"agents must be a whole number, got {agents!r}")
    if agents < 0:
        raise ValueError(f"agents must not be negative, got {agents!r}")
    return agents


def traffic(calls: float, period_seconds: float, aht_seconds: float) -> float:
    """Offered traffic in erlangs: how many agents would be busy on average."""
    calls = _check("calls", calls)
    period_seconds = _check("period_seconds", period_seconds, positive=True)
    aht_seconds = _check("aht_seconds", aht_seconds, positive=True)
    return calls * aht_seconds / period_seconds


def erlang_b(traffic: float, agents: int) -> float:
    """Probability that a call finding all ``agents`` busy would be lost (Erlang B)."""
    traffic = _check("traffic", traffic)
    agents = _check_agents(agents)
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def erlang_c(traffic: float, agents: int) -> float:
    """Probability that a call has to wait (Erlang C); 1 when ``agents <= traffic``."""
    traffic = _check("traffic", traffic)
    agents = _check_agents(agents)
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    return _erlang_c_from_b(traffic, agents, erlang_b(traffic, agents))


def _erlang_c_from_b(traffic: float, agents: int, blocking: float) -> float:
    return agents * blocking / (agents - traffic * (1.0 - blocking))


def _service_level(traffic: float, agents: int, wait: float, aht: float, target: float) -> float:
    if traffic == 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return max(0.0, 1.0 - wait * math.exp(-(agents - traffic) * target / aht))


def service_level(
    calls: float, period_seconds: float, aht_seconds: float, agents: int, target_seconds: float
) -> float:
    """Share of calls answered within ``target_seconds`` (0..1) by ``agents`` agents.

    No calls: 1.0 (nobody waits). ``agents <= traffic``: 0.0 (the queue never drains).
    """
    load = traffic(calls, period_seconds, aht_seconds)
    agents = _check_agents(agents)
    target_seconds = _check("target_seconds", target_seconds)
    return _service_level(load, agents, erlang_c(load, agents), aht_seconds, target_seconds)


def average_speed_of_answer(
    calls: float, period_seconds: float, aht_seconds: float, agents: int
) -> float:
    """Mean wait in seconds before a call is answered; ``inf`` when ``agents <= traffic``."""
    load = traffic(calls, period_seconds, aht_seconds)
    agents = _check_agents(agents)
    if load == 0:
        return 0.0
    if agents <= load:
        return math.inf
    return erlang_c(load, agents) * aht_seconds / (agents - load)


def agents_needed(
    calls: float,
    period_seconds: float,
    aht_seconds: float,
    target_seconds: float,
    target_service_level: float,
) -> int:
    """The fewest agents whose service level reaches ``target_service_level`` (0 < x < 1).

    Erlang B is carried from one agent count to the next, so the search costs one step per
    agent rather than one recursion per candidate.
    """
    load = traffic(calls, period_seconds, aht_seconds)
    target_seconds = _check("target_seconds", target_seconds)
    target_service_level = _number("target_service_level", target_service_level)
    if not 0 < target_service_level < 1:
        raise ValueError(
            "target_service_level must be between 0 and 1 (exclusive), "
            f"got {target_service_level!r}"
        )
    if load == 0:
        return 0
    blocking, agents = 1.0, 0
    while True:
        agents += 1
        blocking = load * blocking / (agents + load * blocking)
        if agents <= load:
            continue
        wait = _erlang_c_from_b(load, agents, blocking)
        if _service_level(load, agents, wait, aht_seconds, target_seconds) >= target_service_level:
            return agents

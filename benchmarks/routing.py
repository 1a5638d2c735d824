"""Routing: time per decision at contact-center scale, and a call queue checked against Erlang C.

Both parts drive ``hilos.routing.engine.RoutingState``, the object ``routing.service`` loads a
tenant's state into and asks for every decision, in virtual time (``now`` is a number of
seconds; nothing sleeps, no database, no server: the engine is pure, so what is measured is the
decision itself).

(a) **Decisions.** A tenant with 1 000 agents (languages es/en with levels, one to three of
four product areas at levels 1–5, secondary skills, capacity per channel kind with and without
voice, presence 75 % online / 15 % away / 10 % offline, most online agents full) and 10 000
waiting conversations over 12 queues (per language: four product-area queues with two rings,
secondary skills and overflow; a phone queue; a general overflow queue), with sticky agents,
passes, customer tiers and SLA due times. Two decisions are timed one call at a time:
``choose_agent`` (a new conversation arrives: which agent?) and ``choose_conversation`` (an
agent finishes something: which waiting conversation?). Each decision is undone after it is
timed (the offer taken back, the agent's idle time restored), so every decision sees the same
picture. The state is warmed first (the engine caches who qualifies for each queue and ring);
a fresh state, as ``routing.service`` builds one per routing round, is timed separately.
Target (the project's issue): median ≤ 1 ms.

(b) **Simulation.** One queue, ``--agents`` identical agents each able to take one call
(capacity ``phone: 1``), Poisson arrivals and exponential handle times: the M/M/N queue that
Erlang C describes. A discrete-event loop (a heap of the agents' finishing times and the next
arrival) adds each call to the engine and asks ``choose_agent``; when an agent finishes it calls
``finish`` and ``choose_conversation``, and the offer is accepted at once (``assign``). The
share of calls answered within ``--target-seconds`` is compared with
``hilos.routing.erlang.service_level`` for the same load, at several occupancies, with a 95 %
confidence interval from batch means (``--batches`` consecutive batches of calls after a
warm-up). 2 000 000 measured calls per load by default: near saturation the waits of successive
calls are strongly correlated (a queue that builds up takes thousands of calls to drain), and
with 20 agents at 95 % occupancy 200 000 calls leave an interval of about ±5 pp, 2 000 000 about
±1.2 pp. Target (the project's issue): within 2 percentage points at each load.

    .venv/bin/python benchmarks/routing.py            # the full run (about a minute)
    .venv/bin/python benchmarks/routing.py --quick    # a smoke run: fewer decisions and calls
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from _common import Column, console, machine_facts, print_table, write_results

from hilos.routing import erlang
from hilos.routing.engine import (
    DEFAULT_CAPACITY,
    VOICE,
    Agent,
    Queue,
    Ring,
    RoutingState,
    Waiting,
    rank_of,
)

TARGET_MEDIAN_US = 1000.0
TARGET_PP = 2.0
# Student's t quantiles (0.975) by degrees of freedom, for the batch-means interval.
T_975 = {9: 2.262, 14: 2.145, 19: 2.093, 24: 2.064, 29: 2.045, 39: 2.023, 49: 2.010}

# --- (a) a contact center's routing state -----------------------------------------------------

LANGUAGES = ("es", "en")
AREAS = ("billing", "orders", "tech", "returns")
DIGITAL = ("whatsapp", "web_chat", "email", "instagram")
# How often each channel kind is the one a conversation arrives by (when its queue serves it).
KIND_WEIGHTS = {"whatsapp": 40, "web_chat": 25, "email": 25, "instagram": 10, VOICE: 30}
AGEING_STEP = 120.0  # routing.models.DEFAULT_AGEING_SECONDS
TIER_POINTS = (0, 1, 2, 3)
TIER_WEIGHTS = (70, 15, 10, 5)


def build_queues(rng: random.Random, agent_ids: Sequence[str]) -> list[Queue]:
    """Per language: four product-area queues (two rings, secondary skills after 3 minutes,
    overflow to the general queue after 15), a phone queue (one ring, overflow after 5
    minutes) and the general queue; a few agents are members of the area queues by hand."""
    queues: list[Queue] = []
    for language in LANGUAGES:
        general = Queue(
            id=f"q-general-{language}",
            name=f"General {language.upper()}",
            channel_kinds=frozenset((*DIGITAL, VOICE)),
            skills={language: 1},
        )
        phone = Queue(
            id=f"q-phone-{language}",
            name=f"Phone {language.upper()}",
            channel_kinds=frozenset({VOICE}),
            skills={language: 3},
            priority=2,
            offer_timeout=15.0,
            rings=(Ring(after=60.0, skills={language: 2}),),
            overflow_queue_id=general.id,
            overflow_after=300.0,
        )
        queues += [general, phone]
        for index, area in enumerate(AREAS):
            queues.append(
                Queue(
                    id=f"q-{area}-{language}",
                    name=f"{area.title()} {language.upper()}",
                    channel_kinds=frozenset(DIGITAL),
                    skills={language: 2, area: 3},
                    priority=index % 2,
                    rings=(
                        Ring(after=120.0, skills={language: 2, area: 1}),
                        Ring(after=300.0, skills={language: 1, area: 1}),
                    ),
                    secondary_after=180.0,
                    overflow_queue_id=general.id,
                    overflow_after=900.0,
                    members=frozenset(rng.sample(list(agent_ids), 5)),
                )
            )
    return queues


def build_agents(rng: random.Random, count: int, *, now: float) -> list[Agent]:
    agents = []
    for number in range(count):
        draw = rng.random()
        languages = ("es",) if draw < 0.6 else ("en",) if draw < 0.85 else ("es", "en")
        skills = {language: rng.randint(1, 5) for language in languages}
        for area in rng.sample(AREAS, rng.randint(1, 3)):
            skills[area] = rng.randint(1, 5)
        others = [area for area in AREAS if area not in skills]
        secondary = {area: rng.randint(1, 3) for area in rng.sample(others, min(len(others), 2))}
        capacity = dict(DEFAULT_CAPACITY)
        voice = rng.random() < 0.3
        if not voice:
            capacity[VOICE] = 0
        if rng.random() < 0.1:
            capacity.update(whatsapp=4, web_chat=4, email=8)
        online = rng.choices(("online", "away", "offline"), (75, 15, 10))[0] == "online"
        load: dict[str, int] = {}
        if online:
            # Busy: most slots taken (that is why 10 000 conversations wait), some room here
            # and there, some agents on a call (which blocks everything else).
            if voice and rng.random() < 0.6:
                load[VOICE] = 1
            for kind in DIGITAL:
                slots = capacity[kind]
                load[kind] = slots if rng.random() < 0.85 else rng.randrange(slots)
        agents.append(
            Agent(
                id=f"agent-{number:04d}",
                name=f"Agent {number}",
                skills=skills,
                secondary_skills=secondary,
                capacity=capacity,
                load=load,
                idle_since=now - rng.uniform(0, 3600),
                online=online,
            )
        )
    return agents


class Arrivals:
    """Conversations as the service would load them: queue, channel kind, rank, sticky agent,
    passes. ``waited`` 0 is a conversation arriving now."""

    def __init__(self, rng: random.Random, queues: Sequence[Queue], agent_ids: Sequence[str]):
        self.rng = rng
        self.queues = {queue.id: queue for queue in queues}
        self.agent_ids = list(agent_ids)
        weights = {"general": 3, "phone": 8}
        self.queue_ids = [queue.id for queue in queues]
        self.queue_weights = [
            weights.get(queue.id.split("-")[1], 10) * (2 if queue.id.endswith("-es") else 1)
            for queue in queues
        ]
        self.number = 0

    def make(self, *, now: float, waited: float) -> Waiting:
        rng = self.rng
        queue = self.queues[rng.choices(self.queue_ids, self.queue_weights)[0]]
        kinds = sorted(queue.channel_kinds)
        kind = rng.choices(kinds, [KIND_WEIGHTS[k] for k in kinds])[0]
        arrived = now - waited
        queued_at = arrived
        if queue.overflow_after is not None and waited > queue.overflow_after:
            # It would have moved to the overflow queue by now (routing.service's timer).
            queued_at = arrived + queue.overflow_after
            queue = self.queues[queue.overflow_queue_id or ""]
            if kind not in queue.channel_kinds:
                kind = "whatsapp"
        points = queue.priority + rng.choices(TIER_POINTS, TIER_WEIGHTS)[0]
        sla_due = None
        if rng.random() < 0.5:
            sla_due = arrived + (3600.0 if kind == "email" else 300.0)
        self.number += 1
        return Waiting(
            conversation_id=f"conv-{self.number:06d}",
            queue_id=queue.id,
            channel_kind=kind,
            rank=rank_of(
                waiting_since=arrived, priority=points, ageing_step=AGEING_STEP, sla_due=sla_due
            ),
            queued_at=queued_at,
            sticky_agent_id=rng.choice(self.agent_ids) if rng.random() < 0.3 else None,
            passed={rng.choice(self.agent_ids): now + 20.0} if rng.random() < 0.05 else {},
        )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def summary_us(nanoseconds: list[int]) -> dict[str, float]:
    values = sorted(ns / 1000 for ns in nanoseconds)
    return {
        "median_us": statistics.median(values),
        "p99_us": percentile(values, 0.99),
        "max_us": values[-1],
    }


def undo_offer(state: RoutingState, conversation_id: str, idle: dict[str, float]) -> str | None:
    """Take an offer back as if it had never been made (the slot freed, idle time restored)."""
    agent_id = state.release(conversation_id, now=0.0, pass_until=None)
    if agent_id is not None:
        state.agents[agent_id].idle_since = idle[agent_id]
    return agent_id


def time_choose_agent(
    state: RoutingState, arrivals: Arrivals, *, now: float, count: int, idle: dict[str, float]
) -> tuple[list[int], Counter[str]]:
    timings: list[int] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter_ns
    for _ in range(count):
        arriving = arrivals.make(now=now, waited=0.0)
        state.add(arriving)
        started = clock()
        offer = state.choose_agent(arriving.conversation_id, now=now)
        timings.append(clock() - started)
        outcomes[offer.rule if offer else "none"] += 1
        if offer is not None:
            undo_offer(state, arriving.conversation_id, idle)
        state.remove(arriving.conversation_id)
    return timings, outcomes


def time_choose_conversation(
    state: RoutingState,
    rng: random.Random,
    *,
    now: float,
    count: int,
    idle: dict[str, float],
) -> tuple[list[int], Counter[str]]:
    """An online agent finishes one of the things they hold (a call, a chat, an email; picked
    by weight of what they hold) and is offered the best waiting conversation."""
    online = [agent for agent in state.agents.values() if agent.online]
    timings: list[int] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter_ns
    for _ in range(count):
        agent = rng.choice(online)
        held = [kind for kind, load in agent.load.items() for _ in range(load)]
        kind = rng.choice(held) if held else None
        if kind is not None:
            state.finish(agent.id, kind, now=now)
        started = clock()
        offer = state.choose_conversation(agent.id, now=now)
        timings.append(clock() - started)
        outcomes[offer.rule if offer else "none"] += 1
        if offer is not None:
            undo_offer(state, offer.conversation_id, idle)
        if kind is not None:
            agent.load[kind] += 1
        agent.idle_since = idle[agent.id]
    return timings, outcomes


def time_fresh_states(
    queues: Sequence[Queue],
    agents: Sequence[Agent],
    waiting: Sequence[Waiting],
    rng: random.Random,
    *,
    now: float,
    repeats: int,
    idle: dict[str, float],
) -> dict[str, float]:
    """Build a new state from the same lists (as each routing round of ``routing.service``
    does) and take one decision of each kind on it: the cold cost, caches empty."""
    build, first_agent, first_conversation = [], [], []
    online = [agent for agent in agents if agent.online]
    arrivals = Arrivals(rng, queues, [agent.id for agent in agents])
    arrivals.number = 10_000_000
    clock = time.perf_counter
    for _ in range(repeats):
        shuffled = list(waiting)
        rng.shuffle(shuffled)  # rows come from the database in no particular order
        started = clock()
        state = RoutingState(queues=queues, agents=agents, waiting=shuffled)
        build.append(clock() - started)
        arriving = arrivals.make(now=now, waited=0.0)
        state.add(arriving)
        started = clock()
        offer = state.choose_agent(arriving.conversation_id, now=now)
        first_agent.append(clock() - started)
        if offer is not None:
            undo_offer(state, arriving.conversation_id, idle)
        state.remove(arriving.conversation_id)
        state = RoutingState(queues=queues, agents=agents, waiting=shuffled)
        agent = rng.choice(online)
        started = clock()
        offer = state.choose_conversation(agent.id, now=now)
        first_conversation.append(clock() - started)
        if offer is not None:
            undo_offer(state, offer.conversation_id, idle)
    return {
        "build_ms": statistics.median(build) * 1000,
        "first_choose_agent_ms": statistics.median(first_agent) * 1000,
        "first_choose_conversation_ms": statistics.median(first_conversation) * 1000,
    }


def run_decisions(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(args.seed)
    now = 1_800_000_000.0
    agents = build_agents(rng, args.decision_agents, now=now)
    agent_ids = [agent.id for agent in agents]
    queues = build_queues(rng, agent_ids)
    arrivals = Arrivals(rng, queues, agent_ids)
    # Waited up to half an hour: some are past a ring, the secondary delay or overflow.
    waiting = [arrivals.make(now=now, waited=rng.uniform(0, 1800)) for _ in range(args.waiting)]
    state = RoutingState(queues=queues, agents=agents, waiting=waiting)
    idle = {agent.id: agent.idle_since for agent in agents}
    online = sum(agent.online for agent in agents)
    with_room = sum(
        1 for agent in agents if agent.online and any(agent.free(k) > 0 for k in (*DIGITAL, VOICE))
    )

    warm = max(200, args.decisions // 10)
    time_choose_agent(state, arrivals, now=now, count=warm, idle=idle)
    time_choose_conversation(state, rng, now=now, count=warm, idle=idle)
    agent_ns, agent_outcomes = time_choose_agent(
        state, arrivals, now=now, count=args.decisions, idle=idle
    )
    conversation_ns, conversation_outcomes = time_choose_conversation(
        state, rng, now=now, count=args.decisions, idle=idle
    )
    assert len(state.waiting) == args.waiting, "a timed decision was not undone"
    cold = time_fresh_states(
        queues, agents, waiting, rng, now=now, repeats=args.cold_repeats, idle=idle
    )

    rows = []
    for case, timings, outcomes in (
        ("choose_agent: a new conversation → which agent", agent_ns, agent_outcomes),
        (
            "choose_conversation: an agent frees a slot → which conversation",
            conversation_ns,
            conversation_outcomes,
        ),
    ):
        figures = summary_us(timings)
        met = figures["median_us"] <= TARGET_MEDIAN_US
        offered = args.decisions - outcomes["none"]
        rows.append(
            {
                "part": "(a) decision",
                "case": case,
                "agents": len(agents),
                "waiting": args.waiting,
                "count": len(timings),
                **figures,
                "offered_pct": 100.0 * offered / len(timings),
                "rules": dict(outcomes),
                "target": "median ≤ 1 ms",
                "met": "yes" if met else "NO",
            }
        )
    facts = {
        "queues": len(queues),
        "agents_online": online,
        "agents_online_with_room": with_room,
        **cold,
    }
    return rows, facts


# --- (b) a call queue in virtual time, against Erlang C -----------------------------------------


def simulate(
    *,
    agents: int,
    occupancy: float,
    aht: float,
    target: float,
    calls: int,
    warmup: int,
    batches: int,
    seed: int,
) -> dict[str, Any]:
    """Run ``warmup + calls`` Poisson calls through the engine; statistics on the last
    ``calls`` (in order of arrival)."""
    rng = random.Random(seed)
    traffic = occupancy * agents  # erlangs
    rate = traffic / aht  # calls per second
    queue = Queue(id="calls", name="Calls", channel_kinds=frozenset({VOICE}))
    state = RoutingState(
        queues=[queue],
        agents=[Agent(id=f"agent-{n:03d}", capacity={VOICE: 1}) for n in range(agents)],
    )
    total = warmup + calls
    arrived_at = [0.0] * total
    waits = [0.0] * total
    finishing: list[tuple[float, str]] = []  # (when, agent id): a heap
    busy_seconds = 0.0
    next_arrival = rng.expovariate(rate)
    arrived = answered = 0
    started = time.perf_counter()
    while answered < total:
        if arrived < total and (not finishing or next_arrival < finishing[0][0]):
            now = next_arrival
            number = arrived
            arrived += 1
            next_arrival = now + rng.expovariate(rate)
            arrived_at[number] = now
            conversation_id = str(number)
            state.add(
                Waiting(
                    conversation_id=conversation_id,
                    queue_id=queue.id,
                    channel_kind=VOICE,
                    rank=now,
                    queued_at=now,
                )
            )
            offer = state.choose_agent(conversation_id, now=now)
        else:
            now, agent_id = heapq.heappop(finishing)
            state.finish(agent_id, VOICE, now=now)
            offer = state.choose_conversation(agent_id, now=now)
        if offer is not None:
            state.assign(offer.conversation_id)
            number = int(offer.conversation_id)
            waits[number] = now - arrived_at[number]
            handle = rng.expovariate(1.0 / aht)
            if number >= warmup:
                busy_seconds += handle
            heapq.heappush(finishing, (now + handle, offer.agent_id))
            answered += 1
    seconds = time.perf_counter() - started

    measured = waits[warmup:]
    size = len(measured) // batches
    batch_levels = [
        sum(1 for wait in measured[b * size : (b + 1) * size] if wait <= target) / size
        for b in range(batches)
    ]
    level = statistics.fmean(batch_levels)
    half_width = T_975[batches - 1] * statistics.stdev(batch_levels) / math.sqrt(batches)
    span = arrived_at[-1] - arrived_at[warmup]
    period = 3600.0
    hourly_calls = rate * period
    predicted = erlang.service_level(hourly_calls, period, aht, agents, target)
    difference = 100.0 * (level - predicted)
    return {
        "part": "(b) simulation",
        "case": f"occupancy {occupancy:.0%}: {traffic:g} erlangs, {agents} agents",
        "agents": agents,
        "occupancy": occupancy,
        "traffic_erlangs": traffic,
        "count": calls,
        "warmup_calls": warmup,
        "simulated_sl_pct": 100.0 * level,
        "ci_pp": 100.0 * half_width,
        "erlang_sl_pct": 100.0 * predicted,
        "difference_pp": difference,
        "waited_pct": 100.0 * sum(1 for wait in measured if wait > 0) / len(measured),
        "erlang_c_pct": 100.0 * erlang.erlang_c(traffic, agents),
        "asa_s": statistics.fmean(measured),
        "erlang_asa_s": erlang.average_speed_of_answer(hourly_calls, period, aht, agents),
        "measured_occupancy_pct": 100.0 * busy_seconds / (agents * span) if span else None,
        "seconds": seconds,
        "events_per_s": 2 * total / seconds,
        "seed": seed,
        "target": f"within {TARGET_PP:g} pp",
        "met": "yes" if abs(difference) <= TARGET_PP else "NO",
    }


# --- output ------------------------------------------------------------------------------------

DECISION_COLUMNS = [
    Column("case", "decision"),
    Column("agents", "agents", 0),
    Column("waiting", "waiting", 0),
    Column("count", "decisions", 0),
    Column("median_us", "median µs", 1),
    Column("p99_us", "p99 µs", 1),
    Column("max_us", "max µs", 0),
    Column("offered_pct", "offered %", 1),
    Column("target", "target"),
    Column("met", "met"),
]
SIMULATION_COLUMNS = [
    Column("case", "load"),
    Column("count", "calls", 0),
    Column("simulated_sl_pct", "simulated SL %", 2),
    Column("ci_pp", "95% CI ± pp", 2),
    Column("erlang_sl_pct", "Erlang C SL %", 2),
    Column("difference_pp", "difference pp", 2),
    Column("waited_pct", "waited %", 2),
    Column("erlang_c_pct", "Erlang C P(wait) %", 2),
    Column("asa_s", "ASA s", 1),
    Column("erlang_asa_s", "Erlang C ASA s", 1),
    Column("measured_occupancy_pct", "occupancy %", 1),
    Column("seconds", "wall s", 1),
    Column("met", "within 2 pp"),
]
# RESULTS.md has one table per benchmark: both parts' rows, each filling its own columns.
RESULT_COLUMNS = [
    Column("part", "part"),
    Column("case", "case"),
    Column("count", "decisions / calls", 0),
    Column("median_us", "median µs", 1),
    Column("p99_us", "p99 µs", 1),
    Column("simulated_sl_pct", "simulated SL %", 2),
    Column("ci_pp", "95% CI ± pp", 2),
    Column("erlang_sl_pct", "Erlang C SL %", 2),
    Column("difference_pp", "difference pp", 2),
    Column("target", "target"),
    Column("met", "met"),
]


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    console.print(
        f"(a) {args.decisions:,} decisions of each kind, {args.decision_agents:,} agents, "
        f"{args.waiting:,} waiting conversations…"
    )
    decision_rows, decision_facts = run_decisions(args)
    print_table("(a) Routing decisions through the engine", DECISION_COLUMNS, decision_rows)
    for row in decision_rows:
        console.print(
            f"{row['case'].split(':')[0]}: median {row['median_us']:.1f} µs — target "
            f"≤ {TARGET_MEDIAN_US / 1000:g} ms {'met' if row['met'] == 'yes' else 'NOT met'}"
        )
    console.print(
        f"A fresh state (as each routing round builds one): built in "
        f"{decision_facts['build_ms']:.1f} ms; its first choose_agent "
        f"{decision_facts['first_choose_agent_ms']:.2f} ms, its first choose_conversation "
        f"{decision_facts['first_choose_conversation_ms']:.2f} ms (medians of "
        f"{args.cold_repeats})."
    )

    simulation_rows = []
    for index, occupancy in enumerate(args.occupancies):
        console.print(
            f"(b) occupancy {occupancy:.0%}: {args.warmup + args.calls:,} calls through the engine…"
        )
        simulation_rows.append(
            simulate(
                agents=args.agents,
                occupancy=occupancy,
                aht=args.aht,
                target=args.target_seconds,
                calls=args.calls,
                warmup=args.warmup,
                batches=args.batches,
                seed=args.seed + 1 + index,
            )
        )
    print_table(
        f"(b) Service level (answered within {args.target_seconds:g} s): simulation through "
        "the engine vs Erlang C",
        SIMULATION_COLUMNS,
        simulation_rows,
    )
    for row in simulation_rows:
        console.print(
            f"{row['case']}: simulated {row['simulated_sl_pct']:.2f}% ± {row['ci_pp']:.2f}, "
            f"Erlang C {row['erlang_sl_pct']:.2f}%, difference {row['difference_pp']:+.2f} pp "
            f"— {'within' if row['met'] == 'yes' else 'NOT within'} {TARGET_PP:g} pp"
            + (
                f" (the interval is wider than {TARGET_PP:g} pp: too few calls to judge)"
                if row["ci_pp"] > TARGET_PP
                else ""
            )
        )
    total_seconds = time.perf_counter() - started

    agent_row, conversation_row = decision_rows
    figures: dict[str, Any] = {
        "target_median_us": TARGET_MEDIAN_US,
        "choose_agent_median_us": agent_row["median_us"],
        "choose_agent_p99_us": agent_row["p99_us"],
        "choose_conversation_median_us": conversation_row["median_us"],
        "choose_conversation_p99_us": conversation_row["p99_us"],
        "decision_target_met": all(row["met"] == "yes" for row in decision_rows),
        **{f"fresh_state_{key}": value for key, value in decision_facts.items() if "ms" in key},
        "target_pp": TARGET_PP,
        "simulation_target_met": all(row["met"] == "yes" for row in simulation_rows),
        "max_abs_difference_pp": max(abs(row["difference_pp"]) for row in simulation_rows),
        "total_seconds": total_seconds,
    }
    for row in simulation_rows:
        key = f"occupancy_{round(row['occupancy'] * 100)}"
        figures[f"{key}_simulated_sl_pct"] = row["simulated_sl_pct"]
        figures[f"{key}_erlang_sl_pct"] = row["erlang_sl_pct"]
        figures[f"{key}_difference_pp"] = row["difference_pp"]
    rules_agent = ", ".join(f"{rule} {n:,}" for rule, n in sorted(agent_row["rules"].items()))
    rules_conversation = ", ".join(
        f"{rule} {n:,}" for rule, n in sorted(conversation_row["rules"].items())
    )
    notes = [
        f"(a) {args.decision_agents:,} agents ({decision_facts['agents_online']:,} online, "
        f"{decision_facts['agents_online_with_room']:,} of them with room in some channel kind; "
        "away and offline agents are in the state too, so every scan passes over them), "
        f"{args.waiting:,} waiting conversations in {decision_facts['queues']} queues (per "
        "language es/en: four product-area queues with two rings, secondary skills after "
        "180 s and overflow after 900 s; a phone queue; a general overflow queue); skills: "
        "language and product-area levels 1–5, secondary skills; capacity: the defaults, 30% of "
        "agents take calls, 10% have larger chat and email capacity; 30% of conversations have a "
        "sticky agent, 5% a pass, 50% an SLA due time; customer tiers 0–3.",
        f"(a) Each decision is timed alone (time.perf_counter_ns around the one engine call) and "
        f"undone afterwards, so all {args.decisions:,} see the same state; "
        f"{max(200, args.decisions // 10):,} untimed decisions of each kind first warm the "
        "engine's caches (who qualifies for each queue and ring, each agent's queues). "
        f"Outcomes: choose_agent {rules_agent}; choose_conversation {rules_conversation} "
        "(none = nobody with room qualifies, or the freed slot is blocked by a call).",
        "(a) A fresh state, as routing.service builds one per routing round (only online agents "
        f"there; here all of them): building it from the {args.waiting:,} waiting conversations "
        f"{decision_facts['build_ms']:.1f} ms, its first choose_agent "
        f"{decision_facts['first_choose_agent_ms']:.2f} ms, its first choose_conversation "
        f"{decision_facts['first_choose_conversation_ms']:.2f} ms (it computes who qualifies for "
        f"every queue, ring and secondary tier); medians of {args.cold_repeats}. The database "
        "reads of a round are not included.",
        f"(b) One queue, {args.agents} identical agents with capacity phone 1, Poisson arrivals, "
        f"exponential handle times with mean {args.aht:g} s, first come first served, nobody "
        "abandons: the M/M/N queue of Erlang C. The engine decides every answer (choose_agent "
        "on arrival, finish + choose_conversation when an agent hangs up; offers accepted at "
        f"once). {args.warmup:,} warm-up calls, then {args.calls:,} measured calls per load; "
        f"95% confidence interval from {args.batches} batch means (Student's t). Seeds "
        f"{', '.join(str(row['seed']) for row in simulation_rows)} (one per load). SL = share "
        f"answered within {args.target_seconds:g} s; "
        "Erlang C figures from hilos.routing.erlang for the nominal load.",
        f"Targets (the project's issue): decision median ≤ 1 ms — "
        f"{'met' if figures['decision_target_met'] else 'NOT met'}; simulated service level "
        f"within {TARGET_PP:g} pp of Erlang C at every load — "
        f"{'met' if figures['simulation_target_met'] else 'NOT met'} (largest difference "
        f"{figures['max_abs_difference_pp']:.2f} pp). Whole run {total_seconds:.0f} s.",
        "The engine is pure Python in one process: figures are per core; the machine is shared, "
        "so the p99 includes other processes' interference.",
    ]
    path = write_results(
        "routing",
        title="Routing decisions and the Erlang C simulation (benchmarks/routing.py)",
        columns=RESULT_COLUMNS,
        rows=[*decision_rows, *simulation_rows],
        figures=figures,
        notes=notes,
        facts=machine_facts(),
    )
    console.print(f"written {path} and RESULTS.md ({total_seconds:.0f} s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions and calls")
    parser.add_argument("--decisions", type=int, help="timed decisions of each kind (20,000)")
    parser.add_argument("--decision-agents", type=int, default=1000)
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, help="measured calls per load (2,000,000)")
    parser.add_argument("--warmup", type=int, help="uncounted calls first (20,000)")
    parser.add_argument("--agents", type=int, default=20, help="agents in the simulation")
    parser.add_argument("--aht", type=float, default=180.0, help="mean handle time, seconds")
    parser.add_argument("--target-seconds", type=float, default=20.0)
    parser.add_argument(
        "--occupancies",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.70, 0.85, 0.95],
        help="comma-separated loads as occupancy (traffic / agents), e.g. 0.7,0.85,0.95",
    )
    parser.add_argument("--batches", type=int, default=20, choices=sorted(k + 1 for k in T_975))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    quick = args.quick
    if args.decisions is None:
        args.decisions = 2000 if quick else 20_000
    if args.calls is None:
        args.calls = 100_000 if quick else 2_000_000
    if args.warmup is None:
        args.warmup = 5000 if quick else 20_000
    if not all(0 < occupancy < 1 for occupancy in args.occupancies):
        parser.error("--occupancies must be between 0 and 1 (exclusive): the queue must drain")
    if args.decisions < 1 or args.waiting < 1 or args.calls < args.batches * 10:
        parser.error("need --decisions >= 1, --waiting >= 1, --calls >= 10 x --batches")
    if args.decision_agents < 5 or args.agents < 1 or args.cold_repeats < 1:
        parser.error("need --decision-agents >= 5, --agents >= 1, --cold-repeats >= 1")
    return args


if __name__ == "__main__":
    main(parse_args())

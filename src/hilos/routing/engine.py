"""The routing engine: which agent is offered which waiting conversation, decided in memory.

Pure: no database, no clock, no I/O. ``routing.service`` loads a tenant's queues, its online
agents (with their current load) and its waiting conversations into a ``RoutingState``, asks it
for decisions and stores them; the benchmark and the simulation drive the same object in
virtual time (``now`` is a number of seconds). A decision changes the state it was taken on (an
offer takes a slot of the agent's capacity and makes them the most recently busy), so decisions
taken in a row see each other.

The rules:

- **Place in line.** Every waiting conversation has a ``rank``, a moment: when it started
  waiting, moved earlier by the tenant's ageing step for each priority point (queue priority,
  customer tier, negative sentiment), or ``SLA_LEAD`` seconds before its SLA falls due if that
  is earlier. Lower goes first. Because the rank never changes while the conversation waits, a
  low-priority conversation that has waited longer than the boost of a fresh high-priority one
  goes before it: that is the ageing that keeps anything from starving, at the price of
  nothing (the lines stay sorted without re-scoring).
- **One agent at a time.** A conversation is offered first to its sticky agent (the last agent
  who served the customer, found by the service within the tenant's window) when they are
  online, belong to the queue and have room; otherwise to the qualified agent with the most
  free capacity in the conversation's channel kind, then the longest idle (ties: the lower id).
- **Qualified.** Explicit members of the queue, and agents whose primary skills meet the
  queue's required levels. Rings (bullseye routing) replace the requirement after a
  conversation has spent ``ring.after`` seconds in the queue, usually with fewer or lower
  skills. Secondary skills count only after ``secondary_after`` seconds, and only when no agent
  qualified by primary skills has room.
- **Capacity** is per channel kind (``DEFAULT_CAPACITY``); a voice call (``phone``) blocks
  every other kind while it lasts. An outstanding offer holds a slot.
- **Passing.** An agent who rejected a conversation or let the offer lapse is not offered it
  again before ``passed[agent]`` (the service uses one offer timeout), so the next agent gets it
  and, when nobody else can take it, the same agent gets it again later rather than never.
- **Overflow.** A conversation that has waited ``overflow_after`` seconds in its queue without
  an offer moves to the overflow queue, keeping its rank (its seniority).
- **Freed capacity.** When an agent comes online or finishes something,
  ``choose_conversation`` finds the best waiting conversation they qualify for, walking each
  of their queues' lines (one per queue and channel kind) from the front.

Speed: the agents who qualify for a queue at each ring are computed once per state and cached,
the lines are sorted lists kept with ``bisect``, so a decision is one pass over the qualified
agents (conversation → agent) or a walk from the front of a few lines (agent → conversation).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

VOICE = "phone"
MESSAGING_KINDS = ("web_chat", "whatsapp", "messenger", "instagram", "telegram", "sms", "api")
# What an agent can hold at once per channel kind unless configured otherwise. Store visits are
# served at the counter, not routed: no capacity unless an agent is given some.
DEFAULT_CAPACITY: dict[str, int] = {VOICE: 1, "email": 5, **dict.fromkeys(MESSAGING_KINDS, 3)}
# How long before its SLA falls due a conversation is treated as having arrived.
SLA_LEAD = 600.0


@dataclass(frozen=True, slots=True)
class Ring:
    """After ``after`` seconds in the queue, ``skills`` (skill → minimum level) is required."""

    after: float
    skills: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Queue:
    id: str
    name: str
    channel_kinds: frozenset[str]
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    offer_timeout: float = 30.0
    rings: tuple[Ring, ...] = ()
    overflow_queue_id: str | None = None
    overflow_after: float | None = None
    secondary_after: float | None = None
    # Agents added to the queue by hand: they qualify whatever their skills.
    members: frozenset[str] = frozenset()


@dataclass(slots=True)
class Agent:
    id: str
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    secondary_skills: dict[str, int] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    # Conversations held now (assigned and open, or offered) per channel kind.
    load: dict[str, int] = field(default_factory=dict)
    # The last time the agent came online, was offered something or finished something.
    idle_since: float = 0.0
    online: bool = True

    def free(self, kind: str) -> int:
        """Free slots in ``kind``; none at all while the agent is on a call."""
        load = self.load
        if kind != VOICE and load.get(VOICE, 0) > 0:
            return 0
        return self.capacity.get(kind, 0) - load.get(kind, 0)


@dataclass(slots=True)
class Waiting:
    conversation_id: str
    queue_id: str
    channel_kind: str
    rank: float
    # When it entered its current queue: rings, secondary skills and overflow count from here.
    queued_at: float
    sticky_agent_id: str | None = None
    # Agent id → the moment before which they are not offered it again.
    passed: dict[str, float] = field(default_factory=dict)
    # The agent holding an outstanding offer of it, if any.
    offered_to: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """A decision: offer ``conversation_id`` to ``agent_id``, and why."""

    conversation_id: str
    agent_id: str
    queue_id: str
    rule: str  # sticky, skills, member, secondary
    reason: str
    details: dict[str, Any]


def rank_of(
    *,
    waiting_since: float,
    priority: int,
    ageing_step: float,
    sla_due: float | None = None,
) -> float:
    """The place in line (lower first): see the module docstring."""
    rank = waiting_since - priority * ageing_step
    if sla_due is not None:
        rank = min(rank, sla_due - SLA_LEAD)
    return rank


def meets(skills: Mapping[str, int], required: Mapping[str, int]) -> bool:
    return all(skills.get(skill, 0) >= level for skill, level in required.items())


def describe_skills(required: Mapping[str, int]) -> str:
    if not required:
        return "no skills required"
    return "skills " + ", ".join(f"{skill}≥{level}" for skill, level in sorted(required.items()))


def pick_queue(
    queues: Iterable[Queue], *, channel_kind: str, language: str | None, languages: frozenset[str]
) -> tuple[Queue | None, str]:
    """The queue a new conversation joins, and why.

    Among the queues serving its channel kind: one that requires the customer's language first,
    then one that requires no language, and one that requires another language last; then the
    highest priority; then the first created (the lowest id). ``languages`` are the skill names
    that are language codes.
    """
    best: tuple[int, int, str] | None = None
    chosen: Queue | None = None
    for queue in queues:
        if channel_kind not in queue.channel_kinds:
            continue
        spoken = languages.intersection(queue.skills)
        fit = 2 if language in spoken else (1 if not spoken else 0)
        key = (-fit, -queue.priority, queue.id)
        if best is None or key < best:
            best, chosen = key, queue
    if chosen is None:
        return None, f"no queue serves {channel_kind}"
    why = f"channel {channel_kind}"
    if language:
        why += f", language {language}"
    why += f": queue {chosen.name} ({describe_skills(chosen.skills)})"
    return chosen, why


class RoutingState:
    """One tenant's queues, online agents and waiting conversations, and the decisions on them."""

    def __init__(
        self,
        *,
        queues: Iterable[Queue] = (),
        agents: Iterable[Agent] = (),
        waiting: Iterable[Waiting] = (),
    ) -> None:
        self.queues: dict[str, Queue] = {queue.id: queue for queue in queues}
        self.agents: dict[str, Agent] = {agent.id: agent for agent in agents}
        self.waiting: dict[str, Waiting] = {}
        # (queue id, channel kind) → [(rank, conversation id)] of those without an offer, sorted.
        self._lines: dict[tuple[str, str], list[tuple[float, str]]] = {}
        # (queue id, ring, secondary) → the agents qualifying there, and how.
        self._tiers: dict[tuple[str, int, bool], tuple[list[Agent], dict[str, str]]] = {}
        self._queues_of: dict[str, list[Queue]] = {}
        for item in waiting:
            self.add(item)

    # --- changing the state -------------------------------------------------------------------

    def add_agent(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        self._tiers.clear()
        self._queues_of.clear()

    def add(self, waiting: Waiting) -> None:
        self.waiting[waiting.conversation_id] = waiting
        if waiting.offered_to is None:
            insort(self._line(waiting), (waiting.rank, waiting.conversation_id))

    def remove(self, conversation_id: str) -> Waiting | None:
        waiting = self.waiting.pop(conversation_id, None)
        if waiting is not None and waiting.offered_to is None:
            self._leave_line(waiting)
        return waiting

    def assign(self, conversation_id: str) -> Waiting | None:
        """The offer was accepted: the conversation stops waiting; the agent keeps the slot."""
        return self.remove(conversation_id)

    def release(self, conversation_id: str, *, now: float, pass_until: float | None) -> str | None:
        """Take back the outstanding offer (rejected, lapsed, withdrawn); return whose it was.

        With ``pass_until`` the agent is not offered it again before that moment.
        """
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offered_to is None:
            return None
        agent_id = waiting.offered_to
        agent = self.agents.get(agent_id)
        if agent is not None:
            kind = waiting.channel_kind
            agent.load[kind] = max(0, agent.load.get(kind, 0) - 1)
        if pass_until is not None:
            waiting.passed[agent_id] = pass_until
        waiting.offered_to = None
        insort(self._line(waiting), (waiting.rank, waiting.conversation_id))
        return agent_id

    def finish(self, agent_id: str, channel_kind: str, *, now: float) -> None:
        """The agent finished a conversation of ``channel_kind``: one slot is free again."""
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.load[channel_kind] = max(0, agent.load.get(channel_kind, 0) - 1)
            agent.idle_since = now

    def overflow(self, conversation_id: str, *, now: float) -> Queue | None:
        """Move a conversation that waited too long to its queue's overflow queue."""
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offered_to is not None:
            return None
        queue = self.queues[waiting.queue_id]
        target = self.queues.get(queue.overflow_queue_id or "")
        if (
            target is None
            or queue.overflow_after is None
            or now - waiting.queued_at < queue.overflow_after
        ):
            return None
        self._leave_line(waiting)
        waiting.queue_id, waiting.queued_at, waiting.passed = target.id, now, {}
        insort(self._line(waiting), (waiting.rank, waiting.conversation_id))
        return target

    # --- decisions ----------------------------------------------------------------------------

    def choose_agent(self, conversation_id: str, *, now: float) -> Offer | None:
        """Offer a waiting conversation to one agent, or ``None`` when nobody can take it."""
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offered_to is not None:
            return None
        queue = self.queues[waiting.queue_id]
        kind = waiting.channel_kind
        passed = waiting.passed
        sticky = self.agents.get(waiting.sticky_agent_id or "")
        if (
            sticky is not None
            and sticky.online
            and passed.get(sticky.id, 0.0) <= now
            and sticky.free(kind) > 0
            and self.belongs(sticky, queue)
        ):
            free = sticky.free(kind)
            reason = (
                f"sticky: {sticky.name or sticky.id} served this customer last and is online "
                f"with room ({free}/{sticky.capacity.get(kind, 0)} {kind} free)"
            )
            return self._offer(
                waiting, sticky, now=now, rule="sticky", reason=reason, details={"free": free}
            )
        ring, secondary = self._stage(queue, now - waiting.queued_at)
        for tier in (False, True) if secondary else (False,):
            agents, how = self._tier(queue, ring, tier)
            blocks = kind != VOICE
            best: Agent | None = None
            best_free, best_idle, with_room = 0, 0.0, 0
            for agent in agents:
                if not agent.online:
                    continue
                load = agent.load
                free = agent.capacity.get(kind, 0) - load.get(kind, 0)
                if free <= 0 or (blocks and load.get(VOICE, 0) > 0):
                    continue
                if passed and passed.get(agent.id, 0.0) > now:
                    continue
                with_room += 1
                if (
                    free > best_free
                    or (free == best_free and agent.idle_since < best_idle)
                    or (
                        free == best_free
                        and agent.idle_since == best_idle
                        and best is not None
                        and agent.id < best.id
                    )
                ):
                    best, best_free, best_idle = agent, free, agent.idle_since
            if best is not None:
                rule = how[best.id]
                idle = max(0.0, now - best.idle_since)
                reason = (
                    f"{self._requirement(queue, ring, rule)}; most free capacity "
                    f"{best_free}/{best.capacity.get(kind, 0)} {kind}; idle {idle:.0f} s; "
                    f"{with_room} agent{'s' if with_room != 1 else ''} with room"
                )
                details = {"ring": ring, "free": best_free, "idle_seconds": round(idle)}
                details["with_room"] = with_room
                return self._offer(
                    waiting, best, now=now, rule=rule, reason=reason, details=details
                )
        return None

    def choose_conversation(self, agent_id: str, *, now: float) -> Offer | None:
        """The best waiting conversation for an agent who has room, offered to them."""
        agent = self.agents.get(agent_id)
        if agent is None or not agent.online:
            return None
        best: Waiting | None = None
        best_rank = 0.0
        best_how = ""
        for queue in self.queues_of(agent):
            for kind in queue.channel_kinds:
                line = self._lines.get((queue.id, kind))
                if not line or agent.free(kind) <= 0:
                    continue
                for rank, conversation_id in line:
                    if best is not None and rank >= best_rank:
                        break
                    waiting = self.waiting[conversation_id]
                    if waiting.passed and waiting.passed.get(agent_id, 0.0) > now:
                        continue
                    how = self.qualifies(agent, queue, waited=now - waiting.queued_at)
                    if how is not None:
                        best, best_rank, best_how = waiting, rank, how
                        break
        if best is None:
            return None
        queue = self.queues[best.queue_id]
        kind = best.channel_kind
        ring, _ = self._stage(queue, now - best.queued_at)
        free = agent.free(kind)
        waited = max(0.0, now - best.queued_at)
        reason = (
            f"{agent.name or agent.id} has room ({free}/{agent.capacity.get(kind, 0)} {kind} "
            f"free); first in line of {queue.name} they qualify for "
            f"({self._requirement(queue, ring, best_how)}), waited {waited:.0f} s"
        )
        details = {"ring": ring, "free": free, "waited_seconds": round(waited)}
        return self._offer(best, agent, now=now, rule=best_how, reason=reason, details=details)

    def explain_wait(self, conversation_id: str, *, now: float) -> str:
        """Why nobody was offered a conversation (for the routing log)."""
        waiting = self.waiting[conversation_id]
        queue = self.queues[waiting.queue_id]
        ring, secondary = self._stage(queue, now - waiting.queued_at)
        qualified = list(self._tier(queue, ring, False)[0])
        if secondary:
            qualified += self._tier(queue, ring, True)[0]
        online = [agent for agent in qualified if agent.online]
        return (
            f"waiting in {queue.name}: {self._requirement(queue, ring, 'skills')}; "
            f"{len(online)} qualified agent{'s' if len(online) != 1 else ''} online, none with "
            f"room in {waiting.channel_kind}"
        )

    def next_change(self, conversation_id: str, *, now: float) -> float | None:
        """The next moment a waiting conversation's chances change (a ring, secondary skills,
        overflow, an agent's pass running out): when the service's timer looks at it again."""
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offered_to is not None:
            return None
        queue = self.queues[waiting.queue_id]
        start = waiting.queued_at
        moments = [start + ring.after for ring in queue.rings]
        if queue.secondary_after is not None:
            moments.append(start + queue.secondary_after)
        if queue.overflow_after is not None and queue.overflow_queue_id in self.queues:
            moments.append(start + queue.overflow_after)
        moments.extend(waiting.passed.values())
        later = [moment for moment in moments if moment > now]
        return min(later) if later else None

    # --- who qualifies ------------------------------------------------------------------------

    def belongs(self, agent: Agent, queue: Queue) -> bool:
        """A member of the queue: added by hand, or skilled for its base requirement (by
        secondary skills too when the queue accepts them)."""
        if agent.id in self._tier(queue, 0, False)[1]:
            return True
        return queue.secondary_after is not None and agent.id in self._tier(queue, 0, True)[1]

    def qualifies(self, agent: Agent, queue: Queue, *, waited: float) -> str | None:
        """How ``agent`` qualifies for a conversation of ``queue`` that waited ``waited`` s."""
        ring, secondary = self._stage(queue, waited)
        how = self._rule(agent, queue, ring, secondary=False)
        if how is None and secondary:
            how = self._rule(agent, queue, ring, secondary=True)
        return how

    def queues_of(self, agent: Agent) -> list[Queue]:
        """Every queue the agent can serve at some ring, primary or secondary."""
        queues = self._queues_of.get(agent.id)
        if queues is None:
            # This agent's own skills against each queue: a state is built per routing round,
            # and computing every queue's whole tier here made the first call cost 45 ms at
            # 1 000 agents.
            queues = [
                queue
                for queue in self.queues.values()
                if any(
                    self._rule(agent, queue, ring, secondary=secondary) is not None
                    for ring in range(len(queue.rings) + 1)
                    for secondary in (False, True)
                )
            ]
            self._queues_of[agent.id] = queues
        return queues

    def _stage(self, queue: Queue, waited: float) -> tuple[int, bool]:
        ring = 0
        for step in queue.rings:
            if waited < step.after:
                break
            ring += 1
        secondary = queue.secondary_after is not None and waited >= queue.secondary_after
        return ring, secondary

    def _tier(self, queue: Queue, ring: int, secondary: bool) -> tuple[list[Agent], dict[str, str]]:
        key = (queue.id, ring, secondary)
        tier = self._tiers.get(key)
        if tier is None:
            how: dict[str, str] = {}
            for agent in self.agents.values():
                rule = self._rule(agent, queue, ring, secondary=secondary)
                if rule is not None:
                    how[agent.id] = rule
            tier = ([self.agents[agent_id] for agent_id in how], how)
            self._tiers[key] = tier
        return tier

    @staticmethod
    def _rule(agent: Agent, queue: Queue, ring: int, *, secondary: bool) -> str | None:
        """How ``agent`` qualifies for ``queue`` at ``ring``: as a member, by primary skills,
        or (``secondary``) only by secondary skills; ``None`` if not."""
        required = queue.skills if ring == 0 else queue.rings[ring - 1].skills
        primary = agent.id in queue.members or meets(agent.skills, required)
        if not secondary:
            if not primary:
                return None
            return "member" if agent.id in queue.members else "skills"
        if primary:
            return None
        combined = {**agent.secondary_skills}
        for skill, level in agent.skills.items():
            combined[skill] = max(level, combined.get(skill, 0))
        return "secondary" if meets(combined, required) else None

    def _requirement(self, queue: Queue, ring: int, rule: str) -> str:
        required = queue.skills if ring == 0 else queue.rings[ring - 1].skills
        text = describe_skills(required)
        if ring:
            text = f"ring {ring} after {queue.rings[ring - 1].after:.0f} s: {text}"
        if rule == "member":
            text = f"member of {queue.name}; {text}"
        elif rule == "secondary":
            text = f"secondary skills after {queue.secondary_after or 0:.0f} s: {text}"
        return text

    # --- bookkeeping --------------------------------------------------------------------------

    def _line(self, waiting: Waiting) -> list[tuple[float, str]]:
        return self._lines.setdefault((waiting.queue_id, waiting.channel_kind), [])

    def _leave_line(self, waiting: Waiting) -> None:
        line = self._line(waiting)
        entry = (waiting.rank, waiting.conversation_id)
        index = bisect_left(line, entry)
        if index < len(line) and line[index] == entry:
            del line[index]

    def _offer(
        self,
        waiting: Waiting,
        agent: Agent,
        *,
        now: float,
        rule: str,
        reason: str,
        details: dict[str, Any],
    ) -> Offer:
        self._leave_line(waiting)
        waiting.offered_to = agent.id
        kind = waiting.channel_kind
        agent.load[kind] = agent.load.get(kind, 0) + 1
        agent.idle_since = now
        return Offer(
            conversation_id=waiting.conversation_id,
            agent_id=agent.id,
            queue_id=waiting.queue_id,
            rule=rule,
            reason=reason,
            details=details,
        )

"""Sourcing: which locations ship an order's lines. Pure functions over a snapshot of stock.

The rules (``OrderSettings.sourcing_rule``):

- ``single_location_first`` (the default): if one location can fill every ship line, the
  nearest such location ships it all (one parcel); otherwise the split with the fewest
  shipments.
- ``fewest_shipments``: the split with the fewest locations, nearest first among equals, even
  when that means a farther location.
- ``nearest``: each line from the nearest location that can fill it; lines that fall on the
  same location travel together.

A line is split across locations only when no single location has its whole quantity.
"Nearest" is by great-circle distance to ``ship_to`` when the customer's position is known;
without it, warehouses come before stores (a store's stock also serves walk-in customers),
then the location with the most of the order's units, then the code, so decisions are stable.

The fewest-shipments split is a set cover: exact for orders of up to ``EXACT_SEARCH_LINES``
ship lines over at most ``EXACT_SEARCH_LOCATIONS`` candidates (every combination is tried,
smallest first), greedy beyond that (the location covering most remaining lines first), which
is what order-management systems do for large baskets.

Reservations are taken afterwards by conditional updates, so a snapshot that went stale
between reading and reserving can at worst make the reservation fail (and the order is then
sourced again from a fresh snapshot), never oversell.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

RULES = ("single_location_first", "fewest_shipments", "nearest")
DEFAULT_RULE = "single_location_first"
EXACT_SEARCH_LINES = 8
EXACT_SEARCH_LOCATIONS = 12


@dataclass(frozen=True, slots=True)
class Candidate:
    """A location that may ship: its code, kind, distance (km, None when unknown) and the
    quantity it can promise of each SKU of the order."""

    code: str
    kind: str
    distance_km: float | None
    available: dict[str, int]


@dataclass(frozen=True, slots=True)
class Allocation:
    """``quantity`` of the ship line at ``line`` (its index) from ``location``."""

    line: int
    location: str
    quantity: int


@dataclass(slots=True)
class Plan:
    allocations: list[Allocation] = field(default_factory=list)
    reason: str = ""

    @property
    def shipments(self) -> list[str]:
        return sorted({a.location for a in self.allocations})


class Unfillable(Exception):
    """No combination of locations has enough of ``sku``."""

    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: {wanted} wanted, {available} available")
        self.sku, self.wanted, self.available = sku, wanted, available


def _rank(candidate: Candidate, lines: list[tuple[str, int]]) -> tuple[Any, ...]:
    distance = candidate.distance_km if candidate.distance_km is not None else math.inf
    units = sum(min(candidate.available.get(sku, 0), qty) for sku, qty in lines)
    return (distance, candidate.kind != "warehouse", -units, candidate.code)


def _fills(candidate: Candidate, sku: str, quantity: int) -> bool:
    return candidate.available.get(sku, 0) >= quantity


def plan(rule: str, lines: list[tuple[str, int]], candidates: list[Candidate]) -> Plan:
    """Allocate ship ``lines`` ``[(sku, quantity)]`` (one entry per line, SKUs may repeat)."""
    if rule not in RULES:
        raise ValueError(f"unknown sourcing rule {rule!r}")
    _check_enough(lines, candidates)
    ordered = sorted(candidates, key=lambda c: _rank(c, lines))
    if rule == "nearest":
        return _nearest(lines, ordered)
    if rule == "single_location_first":
        single = [c for c in ordered if _fills_all(c, lines)]
        if single:
            chosen = single[0]
            return Plan(
                [Allocation(n, chosen.code, qty) for n, (_, qty) in enumerate(lines)],
                reason=f"{chosen.code} can fill every line"
                + (f" (nearest of {len(single)} that can)" if len(single) > 1 else ""),
            )
    return _fewest(lines, ordered)


def _fills_all(candidate: Candidate, lines: list[tuple[str, int]]) -> bool:
    needed: dict[str, int] = {}
    for sku, qty in lines:
        needed[sku] = needed.get(sku, 0) + qty
    return all(_fills(candidate, sku, qty) for sku, qty in needed.items())


def _check_enough(lines: list[tuple[str, int]], candidates: list[Candidate]) -> None:
    needed: dict[str, int] = {}
    for sku, qty in lines:
        needed[sku] = needed.get(sku, 0) + qty
    for sku, qty in needed.items():
        total = sum(c.available.get(sku, 0) for c in candidates)
        if total < qty:
            raise Unfillable(sku, qty, total)


def _nearest(lines: list[tuple[str, int]], ordered: list[Candidate]) -> Plan:
    remaining = {c.code: dict(c.available) for c in ordered}
    allocations: list[Allocation] = []
    for index, (sku, qty) in enumerate(lines):
        whole = next((c for c in ordered if remaining[c.code].get(sku, 0) >= qty), None)
        if whole is not None:
            remaining[whole.code][sku] -= qty
            allocations.append(Allocation(index, whole.code, qty))
            continue
        allocations.extend(_split(index, sku, qty, ordered, remaining))
    return Plan(allocations, reason="each line from the nearest location that has it")


def _split(
    index: int,
    sku: str,
    quantity: int,
    ordered: list[Candidate],
    remaining: dict[str, dict[str, int]],
) -> list[Allocation]:
    """One line's quantity from several locations, nearest first."""
    allocations = []
    for candidate in ordered:
        if quantity == 0:
            break
        take = min(remaining[candidate.code].get(sku, 0), quantity)
        if take > 0:
            remaining[candidate.code][sku] -= take
            quantity -= take
            allocations.append(Allocation(index, candidate.code, take))
    if quantity:
        total = sum(a.quantity for a in allocations) + quantity
        raise Unfillable(sku, total, total - quantity)
    return allocations


def _fewest(lines: list[tuple[str, int]], ordered: list[Candidate]) -> Plan:
    best = None
    if len(lines) <= EXACT_SEARCH_LINES:
        best = _exact_cover(lines, ordered[:EXACT_SEARCH_LOCATIONS])
    if best is None:
        best = _greedy_cover(lines, ordered)
    locations = sorted({a.location for a in best})
    return Plan(
        best,
        reason=(
            f"no single location can fill every line; {len(locations)} shipments "
            f"({', '.join(locations)}) is the fewest"
        ),
    )


def _assign(lines: list[tuple[str, int]], chosen: tuple[Candidate, ...]) -> list[Allocation] | None:
    """Every line whole from one of ``chosen`` (nearest first), or None if one cannot be."""
    remaining = {c.code: dict(c.available) for c in chosen}
    allocations = []
    for index, (sku, qty) in enumerate(lines):
        source = next((c for c in chosen if remaining[c.code].get(sku, 0) >= qty), None)
        if source is None:
            return None
        remaining[source.code][sku] -= qty
        allocations.append(Allocation(index, source.code, qty))
    if len({a.location for a in allocations}) < len(chosen):
        return None
    return allocations


def _exact_cover(lines: list[tuple[str, int]], ordered: list[Candidate]) -> list[Allocation] | None:
    for size in range(1, min(len(lines), len(ordered)) + 1):
        for chosen in itertools.combinations(ordered, size):
            found = _assign(lines, chosen)
            if found is not None:
                return found
    return None


def _greedy_cover(lines: list[tuple[str, int]], ordered: list[Candidate]) -> list[Allocation]:
    remaining = {c.code: dict(c.available) for c in ordered}
    pending = list(enumerate(lines))
    allocations: list[Allocation] = []
    while pending:
        best: Candidate | None = None
        covered: list[tuple[int, str, int]] = []
        for candidate in ordered:
            stock = dict(remaining[candidate.code])
            these = []
            for index, (sku, qty) in pending:
                if stock.get(sku, 0) >= qty:
                    stock[sku] -= qty
                    these.append((index, sku, qty))
            if len(these) > len(covered):
                best, covered = candidate, these
        if best is None:
            # What is left cannot go whole from anywhere: split it, nearest first.
            for index, (sku, qty) in pending:
                allocations.extend(_split(index, sku, qty, ordered, remaining))
            break
        for index, sku, qty in covered:
            remaining[best.code][sku] -= qty
            allocations.append(Allocation(index, best.code, qty))
        done = {index for index, _, _ in covered}
        pending = [(index, line) for index, line in pending if index not in done]
    return sorted(allocations, key=lambda a: a.line)

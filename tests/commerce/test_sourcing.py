"""The sourcing rules on their own: which locations ship a basket."""

from __future__ import annotations

import pytest

from hilos.commerce.sourcing import Candidate, Unfillable, plan


def candidate(
    code: str, distance: float | None, kind: str = "warehouse", **stock: int
) -> Candidate:
    return Candidate(code=code, kind=kind, distance_km=distance, available=stock)


def sources(found: object) -> list[tuple[int, str, int]]:
    return [(a.line, a.location, a.quantity) for a in found.allocations]  # type: ignore[attr-defined]


def test_one_location_for_everything_beats_a_nearer_one_for_part() -> None:
    near = candidate("NEAR", 1, A=5)
    far = candidate("FAR", 100, A=5, B=5)
    assert sources(plan("single_location_first", [("A", 1), ("B", 1)], [near, far])) == [
        (0, "FAR", 1),
        (1, "FAR", 1),
    ]
    # "nearest" takes each line from the nearest that has it.
    assert sources(plan("nearest", [("A", 1), ("B", 1)], [near, far])) == [
        (0, "NEAR", 1),
        (1, "FAR", 1),
    ]


def test_the_nearest_of_several_complete_locations_is_chosen() -> None:
    found = plan(
        "single_location_first",
        [("A", 2)],
        [candidate("X", 50, A=2), candidate("Y", 5, A=2), candidate("Z", None, A=9)],
    )
    assert found.shipments == ["Y"]
    assert "nearest of 3" in found.reason


def test_without_a_position_warehouses_come_before_stores() -> None:
    found = plan(
        "single_location_first",
        [("A", 1)],
        [candidate("TIENDA", None, "store", A=9), candidate("ALM", None, A=1)],
    )
    assert found.shipments == ["ALM"]


def test_the_fewest_shipments_even_when_the_nearest_would_start_differently() -> None:
    lines = [("A", 1), ("B", 1), ("C", 1)]
    found = plan(
        "fewest_shipments",
        lines,
        [
            candidate("N", 1, A=1),
            candidate("S", 2, B=1),
            candidate("E", 3, A=1, C=1),
        ],
    )
    assert found.shipments == ["E", "S"]


def test_a_line_no_location_can_fill_alone_is_split_nearest_first() -> None:
    found = plan(
        "single_location_first",
        [("A", 5)],
        [candidate("N", 1, A=2), candidate("M", 2, A=2), candidate("F", 3, A=9)],
    )
    assert found.shipments == ["F"]
    split = plan(
        "single_location_first", [("A", 5)], [candidate("N", 1, A=3), candidate("M", 2, A=3)]
    )
    assert sources(split) == [(0, "N", 3), (0, "M", 2)]


def test_not_enough_anywhere_names_the_sku() -> None:
    with pytest.raises(Unfillable) as raised:
        plan("nearest", [("A", 1), ("B", 4)], [candidate("N", 1, A=1, B=3)])
    assert (raised.value.sku, raised.value.wanted, raised.value.available) == ("B", 4, 3)


def test_the_same_sku_on_two_lines_counts_once_per_unit() -> None:
    found = plan(
        "single_location_first",
        [("A", 2), ("A", 2)],
        [candidate("N", 1, A=3), candidate("F", 9, A=4)],
    )
    assert found.shipments == ["F"]

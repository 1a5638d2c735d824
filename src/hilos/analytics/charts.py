"""Charts as inline SVG, drawn on the server: time series (lines), breakdowns (horizontal bars)
and a heat map (cohort retention).

What it owns: turning numbers and their labels into an accessible ``<svg>`` string. Each chart
is an image with a ``<title>`` and a ``<desc>`` (``role="img"``, ``aria-labelledby``), writes
its axis values and its labels as text, and gives each point, bar and cell a ``<title>`` that a
pointer shows as a tooltip; the page also prints the same numbers as a table (with its CSV).
Colours come from CSS classes (``series-0``, ``bar``, ``cell``...), so the console's stylesheet
and its print stylesheet decide them; a heat map's cell carries its shade as ``fill-opacity``.

Why our own few functions rather than a charting library: the console must work offline and
under a ``default-src 'self'`` content security policy. JavaScript charting libraries run in
the browser (and are often served from a CDN); pygal, the maintained Python one, draws SVG but
links its tooltips script from a CDN by default and styles charts inline. Three chart shapes
drawn with plain SVG elements need neither, nor a dependency.

Values are floats; ``None`` is a gap (no point drawn, an empty cell). Formatting a value for
people (a percentage, a duration, money) is the caller's: each chart takes a ``fmt`` function.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

Format = Callable[[float], str]

_ids = itertools.count(1)


def _plain(value: float) -> str:
    return f"{value:g}"


def _num(value: float) -> str:
    """A coordinate: one decimal is plenty on screen and on paper."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return float(step * power)
    return float(10 * power)


def _frame(
    *, width: int, height: int, title: str, description: str, css_class: str, body: list[str]
) -> Markup:
    number = next(_ids)
    title_id, desc_id = f"chart-{number}-title", f"chart-{number}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{title_id} {desc_id}">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)}</desc>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a time series: a name and one value (or ``None``) per label."""

    name: str
    values: Sequence[float | None]


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Format = _plain,
    empty: str = "",
    width: int = 640,
    height: int = 240,
    counts: bool = False,
) -> Markup:
    """Lines over ``labels`` (days, months), on a y axis from zero, with a legend. With
    ``counts`` the axis marks whole numbers only."""
    left, right, top, bottom = 56, 12, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [v for s in series for v in s.values if v is not None]
    ceiling = nice_ceiling(max(known, default=0.0))
    if counts:
        ceiling = float(max(4, math.ceil(ceiling / 4) * 4))
    body: list[str] = []
    for step in range(5):
        tick = ceiling * step / 4
        y = top + plot_h - plot_h * step / 4
        body.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text class="axis" x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">'
            f"{escape(fmt(tick))}</text>"
        )
    count = len(labels)

    def x_of(index: int) -> float:
        return left + (plot_w / 2 if count == 1 else plot_w * index / (count - 1))

    shown = max(1, math.ceil(count / 8))
    for index, label in enumerate(labels):
        # Every ``shown``-th label, and the last one unless the previous shown one is too close.
        last = index == count - 1 and index % shown >= shown / 2
        if index % shown == 0 or last:
            body.append(
                f'<text class="axis" x="{_num(x_of(index))}" y="{top + plot_h + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    if not known and empty:
        body.append(
            f'<text class="empty" x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
            f'text-anchor="middle">{escape(empty)}</text>'
        )
    for number, line in enumerate(series):
        points = []
        segments: list[list[str]] = [[]]
        for index, value in enumerate(line.values):
            if value is None:
                segments.append([])
                continue
            x, y = x_of(index), top + plot_h - plot_h * value / ceiling
            segments[-1].append(f"{_num(x)},{_num(y)}")
            label = labels[index] if index < count else ""
            points.append(
                f'<circle class="point series-{number}" cx="{_num(x)}" cy="{_num(y)}" r="3">'
                f"<title>{escape(line.name)} · {escape(label)}: {escape(fmt(value))}</title>"
                "</circle>"
            )
        for segment in segments:
            if len(segment) > 1:
                body.append(
                    f'<polyline class="line series-{number}" fill="none" '
                    f'points="{" ".join(segment)}"/>'
                )
        body.extend(points)
        legend_x = left + number * 170
        body.append(
            f'<rect class="swatch series-{number}" x="{legend_x}" y="{height - 14}" '
            f'width="10" height="10"/>'
            f'<text class="legend" x="{legend_x + 14}" y="{height - 5}">'
            f"{escape(line.name)}</text>"
        )
    description = "; ".join(
        f"{s.name}: "
        + ", ".join(
            f"{labels[i]} {fmt(v)}" for i, v in enumerate(s.values) if v is not None and i < count
        )
        for s in series
    )
    return _frame(
        width=width,
        height=height,
        title=title,
        description=description or empty,
        css_class="line-chart",
        body=body,
    )


def bar_chart(
    *,
    title: str,
    bars: Sequence[tuple[str, float | None]],
    fmt: Format = _plain,
    empty: str = "",
    width: int = 480,
    bar_height: int = 22,
) -> Markup:
    """Horizontal bars, one per label, longest value full width, each value written beside."""
    longest = max((len(label) for label, _ in bars), default=0)
    # Room for the labels at about 7 px a character, within reason.
    left, right, gap = min(width // 2, max(60, 7 * longest + 12)), 72, 8
    height = max(1, len(bars)) * (bar_height + gap) + gap
    plot_w = width - left - right
    known = [v for _, v in bars if v is not None]
    ceiling = max(known, default=0.0) or 1.0
    body: list[str] = []
    if not bars and empty:
        body.append(
            f'<text class="empty" x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle">'
            f"{escape(empty)}</text>"
        )
    for index, (label, value) in enumerate(bars):
        y = gap + index * (bar_height + gap)
        text_y = _num(y + bar_height / 2 + 4)
        body.append(
            f'<text class="label" x="{left - 8}" y="{text_y}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        if value is None:
            body.append(f'<text class="value" x="{left + 4}" y="{text_y}">—</text>')
            continue
        length = max(1.0, plot_w * value / ceiling) if value > 0 else 0.0
        body.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{_num(length)}" height="{bar_height}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
            f'<text class="value" x="{_num(left + length + 6)}" y="{text_y}">'
            f"{escape(fmt(value))}</text>"
        )
    description = "; ".join(f"{label}: {fmt(v) if v is not None else '—'}" for label, v in bars)
    return _frame(
        width=width,
        height=height,
        title=title,
        description=description or empty,
        css_class="bar-chart",
        body=body,
    )


def heat_map(
    *,
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    fmt: Format = _plain,
    empty: str = "",
    cell_width: int = 52,
    cell_height: int = 26,
) -> Markup:
    """A grid of shaded cells (``values[row][column]``, 0–1: the shade's strength), each with
    its value written in it; ``None`` is an empty cell (a month still to come)."""
    left, top = 96, 24
    width = left + max(1, len(columns)) * cell_width + 8
    height = top + max(1, len(rows)) * cell_height + 8
    body: list[str] = []
    for index, column in enumerate(columns):
        body.append(
            f'<text class="axis" x="{_num(left + index * cell_width + cell_width / 2)}" y="16" '
            f'text-anchor="middle">{escape(column)}</text>'
        )
    if not rows and empty:
        body.append(
            f'<text class="empty" x="{width / 2}" y="{top + 16}" text-anchor="middle">'
            f"{escape(empty)}</text>"
        )
    for r, row in enumerate(rows):
        y = top + r * cell_height
        body.append(
            f'<text class="label" x="{left - 8}" y="{_num(y + cell_height / 2 + 4)}" '
            f'text-anchor="end">{escape(row)}</text>'
        )
        for c, value in enumerate(values[r] if r < len(values) else []):
            if value is None or c >= len(columns):
                continue
            x = left + c * cell_width
            shade = 0.08 + 0.92 * min(1.0, max(0.0, value))
            strong = " strong" if shade > 0.55 else ""
            body.append(
                f'<rect class="cell" x="{x + 1}" y="{y + 1}" width="{cell_width - 2}" '
                f'height="{cell_height - 2}" fill-opacity="{shade:.2f}">'
                f"<title>{escape(row)} · {escape(columns[c])}: {escape(fmt(value))}</title>"
                "</rect>"
                f'<text class="cell-value{strong}" x="{_num(x + cell_width / 2)}" '
                f'y="{_num(y + cell_height / 2 + 4)}" text-anchor="middle">'
                f"{escape(fmt(value))}</text>"
            )
    description = "; ".join(
        f"{row}: "
        + ", ".join(
            f"{columns[c]} {fmt(v)}"
            for c, v in enumerate(values[r] if r < len(values) else [])
            if v is not None and c < len(columns)
        )
        for r, row in enumerate(rows)
    )
    return _frame(
        width=width,
        height=height,
        title=title,
        description=description or empty,
        css_class="heat-map",
        body=body,
    )

"""The chart of a session's value over its steps, as the page draws it: points, round ticks and a note.

Why no plotting library: plotly's FigureWidget, the chart before, carried all of plotly.js (about
5 MB) to the page with each panel, redrew the whole figure on each step (half of the page's time
under fast clicks) and took its colours from a template the kernel chose, which cannot follow
JupyterLab's theme. The panel's chart is one line: the page draws it as SVG at most once a frame,
coloured by JupyterLab's CSS variables, from what this module computes in the kernel: at most
MAX_POINTS points (a long session is decimated by keeping each bucket's lowest and highest value,
so no spike disappears) and ticks at round values (1, 2 or 5 times a power of ten).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .render import cell_number, format_number

__all__ = ["MARKER_LIMIT", "MAX_POINTS", "chart_view", "decimate", "round_ticks"]

#: The most points the page is sent: beyond it, each bucket of steps is drawn as its lowest and highest value.
MAX_POINTS = 600
#: Up to this many points, each is drawn as a marker whose tooltip gives its step and value.
MARKER_LIMIT = 100
_TICKS = 6
_ROUND = (1.0, 2.0, 5.0, 10.0)


def round_ticks(low: float, high: float, count: int = _TICKS, *, whole: bool = False) -> list[float]:
    """About count ticks at multiples of 1, 2 or 5 times a power of ten, from at or below low to at or above high.

    whole: only whole numbers (step numbers), so the spacing is at least 1.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        pad = 1.0 if low == 0 else abs(low) / 10
        low, high = low - pad, high + pad
    # Halved, then divided, then doubled: the span of two values near ±1.8e308 stays finite.
    raw = (high / 2 - low / 2) / max(1, count - 1) * 2
    exponent = math.floor(math.log10(raw)) if raw > 0 else 0
    base = 10.0**exponent
    spacing = next((factor * base for factor in _ROUND if factor * base >= raw), 10 * base)
    if whole:
        spacing = float(max(1, math.ceil(spacing)))
    first, last = math.floor(low / spacing), math.ceil(high / spacing)
    ticks = [index * spacing for index in range(int(first), int(last) + 1)]
    return [tick for tick in ticks if math.isfinite(tick)]


def decimate(steps: Sequence[int], values: Sequence[float], limit: int = MAX_POINTS) -> tuple[list[int], list[float]]:
    """At most limit points of a line, in step order: the first, the last, and each bucket's lowest and highest."""
    if len(steps) <= limit:
        return list(steps), list(values)
    buckets = max(1, (limit - 2) // 2)
    size = math.ceil((len(steps) - 2) / buckets)
    kept = [0]
    for start in range(1, len(steps) - 1, size):
        end = min(start + size, len(steps) - 1)
        indexes = range(start, end)
        lowest = min(indexes, key=values.__getitem__)
        highest = max(indexes, key=values.__getitem__)
        kept.extend(sorted({lowest, highest}))
    kept.append(len(steps) - 1)
    return [steps[index] for index in kept], [values[index] for index in kept]


def chart_view(steps: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """What the page draws: points (decimated), their tooltips (up to MARKER_LIMIT), axis ranges, ticks as
    [position, label], and a note when decimated."""
    xs, ys = decimate(steps, values)
    if not xs:
        return {"x": [], "y": [], "labels": [], "x_ticks": [], "y_ticks": [], "x_range": [0, 1], "y_range": [0, 1],
                "note": ""}  # fmt: skip
    x_ticks = round_ticks(0, max(max(xs), 1), whole=True)
    y_ticks = round_ticks(min(ys), max(ys))
    labels = [f"step {x}: {format_number(y)}" for x, y in zip(xs, ys, strict=True)] if len(xs) <= MARKER_LIMIT else []
    note = "" if len(xs) == len(steps) else f"{len(steps):,} points, drawn as {len(xs):,}: each range's low and high"
    return {
        "x": xs,
        "y": ys,
        "labels": labels,
        "x_ticks": [[tick, format_number(tick)] for tick in x_ticks],
        "y_ticks": [[tick, cell_number(tick)] for tick in y_ticks],
        "x_range": [x_ticks[0], x_ticks[-1]],
        "y_range": [y_ticks[0], y_ticks[-1]] if y_ticks else [min(ys), max(ys)],
        "note": note,
    }

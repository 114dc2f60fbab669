"""The chart of a session's value over its steps: a plotly FigureWidget.

Why plotly's FigureWidget: since plotly 6 it is an anywidget, whose front end ships prebuilt
inside the anywidget wheel (a federated JupyterLab extension) and whose plotly.js bundle travels
from the kernel with the widget, so ``pip install`` is the whole install step in JupyterLab 4,
Notebook 7 and VS Code: no lab extension build, no CDN at run time. It is widely used and
maintained, updates in place when the data changes (no re-display, no flicker), and draws SVG
in the page, so a browser screenshot shows it. bqplot was the other candidate; it is not
installed here and adds a second plotting stack for one line chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]

__all__ = ["draw_chart", "make_chart"]

_HEIGHT = 240
# Step numbers are whole: one tick per step up to this many, then every n-th step.
_MAX_TICKS = 10
_WIDTH = 740


def make_chart() -> Any:
    """An empty line chart of value against step number, sized for the panel."""
    chart = go.FigureWidget(
        data=[
            go.Scatter(x=[], y=[], mode="lines+markers", name="value", hovertemplate="step %{x}: %{y}<extra></extra>")
        ],
        layout=go.Layout(
            height=_HEIGHT,
            width=_WIDTH,
            margin={"l": 50, "r": 12, "t": 12, "b": 40},
            template="plotly_white",
            showlegend=False,
            xaxis={"title": {"text": "step"}, "rangemode": "tozero", "tick0": 0, "dtick": 1},
            yaxis={"title": {"text": "value"}},
        ),
    )
    return chart


def draw_chart(chart: Any, steps: Sequence[int], values: Sequence[float]) -> None:
    """Replace the chart's points in one message to the front end."""
    with chart.batch_update():
        chart.data[0].x = list(steps)
        chart.data[0].y = list(values)
        chart.layout.xaxis.dtick = max(1, math.ceil((max(steps, default=0) + 1) / _MAX_TICKS))

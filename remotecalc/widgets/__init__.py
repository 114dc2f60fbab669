"""The notebook calculator panel: ``CalculatorPanel(server)`` as a cell's last line shows it.

It is one anywidget (see remotecalc.widgets.body for why), chart included (see
remotecalc.widgets.chart); anywidget and ipywidgets come with the ``notebook`` extra.
"""

from __future__ import annotations

# The panel's own dependencies are the notebook extra's, which a plain install leaves out.
_EXTRA = ("ipywidgets", "anywidget", "traitlets")
try:
    from .embedded import embedded_panel
    from .entry import NotANumber, parse_number
    from .panel import OPERATORS, CalculatorPanel, wait_for
    from .render import format_number
except ModuleNotFoundError as missing:
    if missing.name is None or missing.name.split(".")[0] not in _EXTRA:
        raise
    raise ImportError(
        f"remotecalc.widgets needs the notebook extra, which is not installed (no module {missing.name!r}): "
        "pip install 'remotecalc[notebook]'"
    ) from missing

__all__ = [
    "OPERATORS",
    "CalculatorPanel",
    "NotANumber",
    "embedded_panel",
    "format_number",
    "parse_number",
    "wait_for",
]

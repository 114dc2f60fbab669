"""The notebook calculator panel (ipywidgets 8): ``CalculatorPanel()`` as a cell's last line shows it.

The chart is a plotly FigureWidget: see remotecalc.widgets.chart for why.
"""

from .panel import OPERATOR_CLASSES, CalculatorPanel
from .render import format_number

__all__ = ["OPERATOR_CLASSES", "CalculatorPanel", "format_number"]

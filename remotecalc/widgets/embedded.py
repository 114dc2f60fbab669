"""The one place where a panel given nothing starts a server: the embedded one, in the kernel."""

from __future__ import annotations

from typing import Any

from ..server import start_server
from .panel import CalculatorPanel

__all__ = ["embedded_panel"]


def embedded_panel(**options: Any) -> CalculatorPanel:
    """A panel on the kernel's embedded server, started (or, on a re-run, reused) by remotecalc.start_server()."""
    return CalculatorPanel(start_server(), **options)

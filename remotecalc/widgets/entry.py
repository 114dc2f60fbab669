"""What the number field's text means: the kernel, not the page, decides which texts are numbers."""

from __future__ import annotations

import math
import re

__all__ = ["NotANumber", "parse_number"]

# Plain decimal notation only: Python's float() would also take "nan", "inf", "infinity" and "1_000".
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SHOWN_LIMIT = 24


class NotANumber(ValueError):
    """The text typed is not a finite number; its message says why, for the panel to show."""


def parse_number(text: str) -> float:
    """The float64 a typed text stands for ("2.5", " -3 ", "1e-3"); NotANumber for anything else."""
    stripped = text.strip().replace("\u2212", "-")  # a typographic minus, as pasted from a web page
    if not stripped:
        raise NotANumber("Type a number first: the field is empty")
    shown = stripped if len(stripped) <= _SHOWN_LIMIT else stripped[: _SHOWN_LIMIT - 1] + "…"
    if not _DECIMAL.fullmatch(stripped):
        raise NotANumber(f"“{shown}” is not a number")
    number = float(stripped)
    if not math.isfinite(number):
        raise NotANumber(f"“{shown}” is too large for a 64-bit float")
    return number

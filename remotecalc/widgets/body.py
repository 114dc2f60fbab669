"""The panel's body, one anywidget: it draws the state the kernel gives it and sends each click as one message.

Why one widget: with separate ipywidgets (a number field and buttons), a click and the number typed
just before it travel as two messages, and ipywidgets' front end may send the click first, so the
kernel computes with the older number. Here the page reads the field at the moment of the click
and sends ``{"kind": "press", "key": "add", "text": "4"}``: the operator and its operand cannot be
separated. The kernel parses the text (remotecalc.widgets.entry), so the page holds no rules.
The kernel's answer is one trait, ``view``, so a step reaches the page as one message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["KEYS", "CalculatorBody"]

_HERE = Path(__file__).resolve().parent
#: What each button of the body sends as its key, in the page's order (Tab reaches them so), and Enter in the field.
KEYS = ("add", "subtract", "multiply", "divide", "new", "answer", "enter")


class CalculatorBody(anywidget.AnyWidget):
    """The number field, buttons, value, status, error, history, RPC log and chart, drawn in the page from ``view``."""

    _esm = (_HERE / "panel.js").read_text(encoding="utf-8")
    _css = (_HERE / "panel.css").read_text(encoding="utf-8")
    #: Everything the page shows, as display-ready text; replaced whole, so one message per change.
    view = traitlets.Dict().tag(sync=True)

    def __init__(self, on_press: Callable[[str, str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_press = on_press
        self.on_msg(self._take_message)

    def _take_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("kind") != "press":
            return
        key, text = content.get("key"), content.get("text", "")
        if key in KEYS and isinstance(text, str):
            self._on_press(key, text)

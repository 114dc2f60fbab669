"""Text and HTML the panel shows: numbers, tokens, errors, the history and RPC log tables, its stylesheet."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from ..client import CallRecord
from ..errors import DeadlineExceeded, RemoteCalcError, ServerStopping, Unavailable
from ..model import Step

__all__ = ["STYLESHEET", "error_text", "format_number", "history_html", "log_html", "short_token"]

#: Shown where there is no value or token yet.
NOTHING = "—"
# Past this an integer-valued float is printed in exponent form, like any other large number.
_INTEGER_LIMIT = 1e15
_SIGNIFICANT_DIGITS = 12
_DETAILS_LIMIT = 200


def format_number(value: float) -> str:
    """A value as the panel prints it: "10" for 10.0, "2.5", "0.3" for 0.1 + 0.2, "1e+20"."""
    if value == 0:
        return "0"  # also for -0.0
    if value.is_integer() and abs(value) < _INTEGER_LIMIT:
        return str(int(value))
    return f"{value:.{_SIGNIFICANT_DIGITS}g}"


def short_token(token: str | None) -> str:
    """A token's first six characters and an ellipsis, as the client's call summaries write it."""
    return NOTHING if not token else f"{token[:6]}…"


def error_text(error: Exception) -> str:
    """One line telling what went wrong and, for a remote error, its status code."""
    if not isinstance(error, RemoteCalcError):
        return f"Unexpected {type(error).__name__}: {error}"[:_DETAILS_LIMIT]
    # gRPC's own text for an unreachable server is long and about sockets; say it plainly.
    if isinstance(error, Unavailable) and not isinstance(error, ServerStopping):
        lead = "The server cannot be reached"
    elif isinstance(error, DeadlineExceeded):
        lead = "The server did not answer in time"
    else:
        lead = error.message[:1].upper() + error.message[1:_DETAILS_LIMIT]
    return f"{lead} ({error.code_name})"


def history_html(steps: Iterable[Step]) -> str:
    """The history table: step number, operator, operand and result, newest first."""
    rows = [(str(s.number), s.operator.symbol, format_number(s.operand), format_number(s.result)) for s in steps]
    return _table(("#", "op", "operand", "result"), rows, empty="No steps yet", numeric=(0, 2, 3))


def log_html(records: Iterable[CallRecord]) -> str:
    """The RPC log table: method, request summary, status code and latency, newest first."""
    rows = [(r.method, r.request, r.code, f"{r.latency_ms:.1f}") for r in records]
    return _table(("method", "request", "code", "ms"), rows, empty="No calls yet", numeric=(3,), code_column=2)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str,
    numeric: Sequence[int] = (),
    code_column: int = -1,
) -> str:
    def css(index: int, cell: str | None = None) -> str:
        classes = ["remotecalc-num"] if index in numeric else []
        if cell is not None and index == code_column:
            classes.append("remotecalc-code-ok" if cell == "OK" else "remotecalc-code-failed")
        return f' class="{" ".join(classes)}"' if classes else ""

    head = "".join(f"<th{css(index)}>{html.escape(h)}</th>" for index, h in enumerate(headers))
    table = f'<table class="remotecalc-table"><thead><tr>{head}</tr></thead>'
    if not rows:
        return f"{table}</table><i>{html.escape(empty)}</i>"
    body = "".join(
        "<tr>" + "".join(f"<td{css(i, cell)}>{html.escape(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"{table}<tbody>{body}</tbody></table>"


# Widgets keep their own CSS; these rules (in a hidden HTML widget, so that they reach JupyterLab,
# Notebook 7 and VS Code alike) only make the value large and the tables compact. Selectors start
# with .remotecalc-panel to outrank the widgets' own single-class rules.
STYLESHEET = """
<style>
.remotecalc-panel { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 8px; padding: 10px 14px;
  gap: 6px; max-width: 760px; background: var(--jp-layout-color0, #fff); }
.remotecalc-panel .remotecalc-title { font-weight: 600; font-size: 1.1em; }
.remotecalc-panel .remotecalc-value { font-size: 2.6em; line-height: 1.25; height: auto; font-weight: 600;
  font-variant-numeric: tabular-nums; }
.remotecalc-panel .remotecalc-token, .remotecalc-panel .remotecalc-status { font-family: var(--jp-code-font-family,
  monospace); color: var(--jp-ui-font-color2, #666); }
.remotecalc-panel .remotecalc-error { color: #c62828; white-space: normal; height: auto; min-height: 1.4em; }
.remotecalc-panel .remotecalc-section { font-weight: 600; color: var(--jp-ui-font-color2, #666); }
.remotecalc-panel .remotecalc-op button, .remotecalc-panel button.remotecalc-op { font-size: 1.2em; }
.remotecalc-table { border-collapse: collapse; width: 100%; font-size: 12px; line-height: 1.5;
  font-variant-numeric: tabular-nums; }
.remotecalc-table th { text-align: left; border-bottom: 1px solid var(--jp-border-color1, #bbb); padding: 0 8px; }
.remotecalc-table td { border-bottom: 1px solid var(--jp-border-color3, #eee); padding: 0 8px; }
.remotecalc-table .remotecalc-num { text-align: right; }
.remotecalc-code-ok { color: #2e7d32; }
.remotecalc-code-failed { color: #c62828; font-weight: 600; }
</style>
"""

"""Text the panel shows: numbers, tokens, errors, and the rows of its history and RPC log."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from math import copysign

from ..client import CallRecord
from ..errors import DeadlineExceeded, RemoteCalcError, ServerStopping, Unavailable
from ..model import Step

__all__ = [
    "NOTHING",
    "WATCH_CLOSED",
    "WATCH_METHOD",
    "cell_number",
    "error_text",
    "format_number",
    "full_number",
    "history_note",
    "history_rows",
    "log_rows",
    "short_token",
]

#: Shown where there is no value or token yet.
NOTHING = "—"
#: The RPC log's method name for the panel's Watch stream, whose time is how long it stayed open.
WATCH_METHOD = "WatchSession"
#: The code the log shows for a Watch stream the panel ended itself: not a failure.
WATCH_CLOSED = "closed"
# Past this an integer-valued float is printed in exponent form, like any other large number.
_INTEGER_LIMIT = 1e15
_SIGNIFICANT_DIGITS = 12
_DETAILS_LIMIT = 200
# A history cell holds this many characters of tabular digits; a longer number is shown with fewer digits.
_CELL_CHARACTERS = 12
_CELL_DIGITS = 6


def format_number(value: float) -> str:
    """A value as the panel prints it: "10" for 10.0, "2.5", "0.3" for 0.1 + 0.2, "1e+20"."""
    if value == 0:
        return "0"  # also for -0.0
    if value.is_integer() and abs(value) < _INTEGER_LIMIT:
        return str(int(value))
    return f"{value:.{_SIGNIFICANT_DIGITS}g}"


def full_number(value: float) -> str:
    """A value with every digit float64 keeps, for the tooltip of an abbreviated one."""
    return repr(value)


def cell_number(value: float) -> str:
    """A value as a history cell shows it: as format_number, with 6 significant digits if that is too long to fit."""
    text = format_number(value)
    return text if len(text) <= _CELL_CHARACTERS else f"{value:.{_CELL_DIGITS}g}"


def history_note(shown: int, total: int) -> str:
    """What the history says when it lists fewer steps than the session has, "" when it lists them all."""
    return "" if shown >= total else f"the newest {shown:,} of {total:,} steps"


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


def history_rows(steps: Iterable[Step]) -> list[list[str]]:
    """The history as the panel lists it, newest first: number, operator, operand, its full digits, result, ditto.

    A number too long for its cell is abbreviated (cell_number); hovering it shows the full digits.
    """
    return [list(_row(step, copysign(1.0, step.operand), copysign(1.0, step.result))) for step in steps]


@functools.lru_cache(maxsize=4096)
def _row(step: Step, operand_sign: float, result_sign: float) -> tuple[str, ...]:
    # A step never changes: each is formatted once, not on every redraw. The signs are part of the key
    # because -0.0 == 0.0, and the history shows them apart.
    return (
        str(step.number),
        step.operator.symbol,
        cell_number(step.operand),
        full_number(step.operand),
        cell_number(step.result),
        full_number(step.result),
    )


def log_rows(records: Iterable[CallRecord]) -> list[list[str]]:
    """The RPC log as the panel lists it: method, request, code, its kind (ok, failed, closed), time and its meaning."""
    rows = []
    for record in records:
        if record.method == WATCH_METHOD:
            kind = "closed" if record.code == WATCH_CLOSED else "failed"
            time, meaning = f"open {_duration(record.latency_ms)}", "how long the stream stayed open"
        else:
            kind = "ok" if record.code == "OK" else "failed"
            time, meaning = f"{record.latency_ms:.1f} ms", "latency: the call's round trip"
        rows.append([record.method, record.request, record.code, kind, time, meaning])
    return rows


def _duration(milliseconds: float) -> str:
    return f"{milliseconds:.0f} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"

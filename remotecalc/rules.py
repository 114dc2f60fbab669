"""The rules of a calculator session, as pure functions: validation, arithmetic, limits, the steps a Watch sends.

Both stores (remotecalc.stores.memory and remotecalc.stores.redis) apply these and nothing else of
each other's: a change to a rule is made here once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from itertools import islice

from .context import Alive
from .errors import (
    BeyondLimit,
    CallerGone,
    DivisionByZero,
    FailedPrecondition,
    InvalidOperand,
    InvalidToken,
    OutOfRange,
    RemoteCalcError,
    StepsNotKept,
)
from .model import Step

__all__ = [
    "FLOAT32_MAX",
    "check_limit",
    "check_operand",
    "check_token",
    "compute",
    "compute_many",
    "steps_after",
]


#: The largest finite value of a 32-bit float, the article contract's number type.
FLOAT32_MAX = 3.4028234663852886e38

_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
# A long batch asks whether its caller still waits once per this many operations.
_CHUNK = 20_000


def check_operand(value: float, what: str = "operand") -> None:
    """Refuse NaN and infinities."""
    if not math.isfinite(value):
        raise InvalidOperand(f"{what} must be a finite number, not {value}")


def check_limit(value: float, limit: float) -> None:
    """Refuse a value to be answered beyond limit (the article's float32 bound)."""
    if value > limit or value < -limit:
        raise BeyondLimit(f"the value is beyond the limit of {limit!r}")


def compute(value: float, operator: int, operand: float, limit: float = math.inf) -> float:
    """The result of one operation, or the error it raises; limit bounds its magnitude."""
    if not math.isfinite(operand):
        raise InvalidOperand(f"operand must be a finite number, not {operand}")
    if operator == 1:
        result = value + operand
    elif operator == 2:
        result = value - operand
    elif operator == 3:
        result = value * operand
    elif operator == 4:
        if operand == 0:
            raise DivisionByZero("division by zero")
        result = value / operand
    elif operator == 0:
        raise InvalidOperand("operator is not set")
    else:
        raise InvalidOperand(f"unknown operator {operator}")
    if not math.isfinite(result):
        raise OutOfRange("the result is too large to be represented")
    if result > limit or result < -limit:
        raise BeyondLimit(f"the result is beyond the limit of {limit!r}")
    return result


def _compute_unchecked(value: float, operations: Sequence[tuple[int, float]]) -> list[float] | None:
    """The value after each operation, or None where compute() might raise: then ask _compute_checked."""
    # Exact without a check per step: from a non-finite value no operation with a finite operand
    # comes back to a finite one, and division is the one way a non-finite operand could.
    results: list[float] = []
    append = results.append
    isfinite = math.isfinite
    try:
        for operator, operand in operations:
            if operator == 1:
                value += operand
            elif operator == 2:
                value -= operand
            elif operator == 3:
                value *= operand
            elif operator == 4 and isfinite(operand):
                value /= operand
            else:
                return None
            append(value)
    except (ZeroDivisionError, TypeError):
        return None
    return results if isfinite(value) else None


def _compute_checked(value: float, operations: Sequence[tuple[int, float]]) -> list[float]:
    """The value after each operation, checking each one; the first error names its index."""
    results = [0.0] * len(operations)
    for index, (operator, operand) in enumerate(operations):
        try:
            value = compute(value, operator, operand)
        except RemoteCalcError as error:
            error.index = index
            error.message = f"operation {index}: {error.message}"
            error.args = (error.message,)
            raise
        results[index] = value
    return results


def steps_after(history: Sequence[Step], step_count: int, after_step: int) -> tuple[Step, ...]:
    """The steps after after_step out of the kept history; StepsNotKept when some are gone."""
    if not after_step or after_step == step_count:
        return ()
    if after_step > step_count:
        raise FailedPrecondition(f"after_step {after_step} is ahead of the session's {step_count} steps")
    missed = step_count - after_step
    # Numbers only grow along the history: its last `missed` steps are the ones wanted if the first is.
    if len(history) < missed or history[len(history) - missed].number != after_step + 1:
        raise StepsNotKept(
            f"steps no longer kept: not every step after {after_step} (of {step_count}) is kept:"
            " watch from now (after_step 0)"
        )
    return tuple(islice(history, len(history) - (step_count - after_step), None))


def compute_many(value: float, operations: Sequence[tuple[int, float]], alive: Alive | None = None) -> list[float]:
    """The value after each operation; a long batch stops early, changing nothing, if its caller has gone."""
    if alive is None or len(operations) <= _CHUNK:
        results = _compute_unchecked(value, operations)
        return _compute_checked(value, operations) if results is None else results
    results = []
    for start in range(0, len(operations), _CHUNK):
        if not alive():
            raise CallerGone()
        chunk = operations[start : start + _CHUNK]
        done = _compute_unchecked(value, chunk)
        if done is None:
            try:
                done = _compute_checked(value, chunk)
            except RemoteCalcError as error:
                _shift_index(error, start)
                raise
        results.extend(done)
        if done:
            value = done[-1]
    return results


def _shift_index(error: RemoteCalcError, by: int) -> None:
    if error.index is not None:
        error.index += by
        error.message = f"operation {error.index}: {error.message.partition(': ')[2]}"
        error.args = (error.message,)


def check_token(token: str) -> None:
    """Refuse an empty or malformed token (INVALID_ARGUMENT, unlike a well-formed unknown one)."""
    if not token:
        raise InvalidToken("token is empty")
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("token is malformed: expected 22 URL-safe base64 characters")

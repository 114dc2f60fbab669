"""The vocabulary every part shares: the operators, and the plain records of a session."""

from __future__ import annotations

import enum
from typing import NamedTuple

from .errors import InvalidOperand

__all__ = ["OPERATORS", "Operator", "Snapshot", "Step", "Update"]


class Operator(enum.IntEnum):
    """An arithmetic operator; its values are those of remotecalc.v1's Operator enum."""

    ADD = 1
    SUBTRACT = 2
    MULTIPLY = 3
    DIVIDE = 4

    @property
    def symbol(self) -> str:
        """The operator as it is written: + - × ÷."""
        return _SYMBOLS[self]

    @classmethod
    def parse(cls, text: str | int | Operator) -> Operator:
        """The operator for a symbol (+ - * / x ×  ÷), a name (add, ADD) or a value."""
        if isinstance(text, int):
            try:
                return cls(text)
            except ValueError:
                raise InvalidOperand(f"unknown operator {text}") from None
        found = _BY_TEXT.get(text.strip().lower())
        if found is None:
            raise InvalidOperand(f"unknown operator {text[:16]!r}")
        return found


#: Each operator by its wire value: the one table stores and history use to turn a stored int back.
OPERATORS: dict[int, Operator] = {int(operator): operator for operator in Operator}
_SYMBOLS = {Operator.ADD: "+", Operator.SUBTRACT: "-", Operator.MULTIPLY: "×", Operator.DIVIDE: "÷"}
_BY_TEXT = {
    **{op.name.lower(): op for op in Operator},
    "+": Operator.ADD,
    "-": Operator.SUBTRACT,
    "*": Operator.MULTIPLY,
    "x": Operator.MULTIPLY,
    "×": Operator.MULTIPLY,
    "/": Operator.DIVIDE,
    "÷": Operator.DIVIDE,
}


class Step(NamedTuple):
    """One applied operation: its number in the session, what it did and the result."""

    number: int
    operator: Operator
    operand: float
    result: float


class Snapshot(NamedTuple):
    """A session as it is: value, how many steps, the most recent steps and the value it started with."""

    token: str
    value: float
    step_count: int
    history: tuple[Step, ...]
    initial_value: float = 0.0


class Update(NamedTuple):
    """What a watcher receives: the state after a change and the steps it applied."""

    token: str
    value: float
    step_count: int
    steps: tuple[Step, ...]
    closed: bool

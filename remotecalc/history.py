"""A session's recent steps kept as columns, made into Steps only when someone reads them."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

from .model import Operator, Step

__all__ = ["History"]

_OPERATORS = {int(operator): operator for operator in Operator}


class History:
    """The last `limit` steps of a session: operators, operands and results in three columns.

    A step costs 17 bytes instead of a Step and its two floats (about 120), and a batch is added
    with three C-level extends instead of one Step per operation. The columns grow to twice the
    limit before their oldest part is cut, so cutting costs O(1) per step over time.
    """

    __slots__ = ("_operands", "_operators", "_results", "last", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: The number of the newest step kept (0 before any).
        self.last = 0
        self._operators = bytearray()
        self._operands = array("d")
        self._results = array("d")

    def __len__(self) -> int:
        return min(len(self._results), self.limit)

    def append(self, number: int, operator: int, operand: float, result: float) -> None:
        """Keep one step, numbered number (the one after the newest)."""
        self._operators.append(operator)
        self._operands.append(operand)
        self._results.append(result)
        self.last = number
        self._cut()

    def extend(self, last: int, operators: Iterable[int], operands: Iterable[float], results: Sequence[float]) -> None:
        """Keep consecutive steps, the newest numbered last (the operators and operands of len(results) steps)."""
        self._operators.extend(operators)
        self._operands.extend(operands)
        self._results.extend(results)
        self.last = last
        self._cut()

    def steps(self, count: int | None = None) -> tuple[Step, ...]:
        """The newest count steps kept (all of them when None), oldest first."""
        kept = len(self)
        count = kept if count is None else min(count, kept)
        if count <= 0:
            return ()
        start = len(self._results) - count
        operators = map(_OPERATORS.__getitem__, self._operators[start:])
        return tuple(
            map(
                Step,
                range(self.last - count + 1, self.last + 1),
                operators,
                self._operands[start:],
                self._results[start:],
            )
        )

    def _cut(self) -> None:
        excess = len(self._results) - self.limit
        if excess > self.limit:
            del self._operators[:excess]
            del self._operands[:excess]
            del self._results[:excess]

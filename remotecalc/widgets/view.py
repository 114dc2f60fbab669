"""What a panel knows of its session, merged from click replies and the Watch stream in step order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..model import Step

__all__ = ["SessionView"]


class SessionView:
    """A session's value, step count, steps and value per step, as far as the panel has seen them.

    Updates come from two threads (a click's own reply and the Watch stream) and may arrive in
    either order; each carries the step count it is the state after, and an older one never
    overwrites a newer one.
    """

    def __init__(self, token: str | None = None, value: float | None = None, step_count: int = 0) -> None:
        self.token = token
        self.value = value
        self.step_count = step_count
        self.closed = False
        self.steps: dict[int, Step] = {}
        #: The value after each step number seen, 0 being the session's initial value.
        self.points: dict[int, float] = {} if value is None else {step_count: value}

    def merge(self, value: float, step_count: int, steps: Iterable[Step] = (), closed: bool = False) -> bool:
        """Take in the state after step_count and the steps that led there; True if anything changed.

        Steps not seen yet are taken in even from an older update: a click's reply may have overtaken
        the Watch update that carries the step before it.
        """
        changed = False
        for step in steps:
            if step.number not in self.steps:
                self.steps[step.number] = step
                self.points[step.number] = step.result
                changed = True
        if step_count < self.step_count:
            return changed
        changed = changed or value != self.value or step_count != self.step_count or (closed and not self.closed)
        if self.points.get(step_count) != value:
            self.points[step_count] = value
            changed = True
        self.value = value
        self.step_count = step_count
        self.closed = self.closed or closed
        return changed

    def close(self, final_value: float) -> None:
        """Mark the session closed with the final value the server answered."""
        self.merge(final_value, self.step_count, closed=True)

    def start_at(self, initial_value: float) -> None:
        """Chart the session's value before its first step, as the server says it started."""
        self.points.setdefault(0, initial_value)

    def recent_steps(self, limit: int) -> list[Step]:
        """Up to limit steps, newest first."""
        return [self.steps[number] for number in heapq.nlargest(limit, self.steps)]

    def newest_step(self) -> Step | None:
        """The step with the highest number seen, or None before any."""
        return self.steps[max(self.steps)] if self.steps else None

    def chart_points(self) -> tuple[list[int], list[float]]:
        """Step numbers and the value after each, in step order."""
        numbers = sorted(self.points)
        return numbers, [self.points[number] for number in numbers]

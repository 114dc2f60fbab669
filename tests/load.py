"""Load for chaos tests: writers that settle unknown outcomes by request id, and a Watch reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import remotecalc
from remotecalc import Update

WAIT = 30.0


class Writer(threading.Thread):
    """Adds 1 to its own session, ops times, through every replica; settles each unknown outcome by its request id."""

    def __init__(
        self,
        client: remotecalc.Client,
        ops: int,
        progress: threading.Condition,
        *,
        hold: tuple[int, threading.Event] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.session = client.create(0)
        self.ops = ops
        #: (n, event): after n acknowledged adds, wait for the event (bounded) before going on.
        self.hold = hold
        self.acknowledged = 0
        self.resolved = 0
        self.failure: BaseException | None = None
        self._progress = progress

    def run(self) -> None:
        try:
            for done in range(self.ops):
                if self.hold is not None and done == self.hold[0] and not self.hold[1].wait(WAIT):
                    raise AssertionError(f"held after {done} adds and never released")
                try:
                    self.session.add(1)
                except remotecalc.OutcomeUnknown as unknown:
                    self._settle(unknown)
                with self._progress:
                    self.acknowledged += 1
                    self._progress.notify_all()
        except BaseException as error:  # kept for the test to report
            self.failure = error
            with self._progress:
                self._progress.notify_all()

    def _settle(self, unknown: remotecalc.OutcomeUnknown) -> None:
        for _ in range(10):
            try:
                unknown.resolve()
                self.resolved += 1
                return
            except remotecalc.OutcomeUnknown as again:
                unknown = again
        raise AssertionError("an outcome stayed unknown through 10 resends")


def read_steps(stream: Iterator[Update], seen: list[int], last: int) -> None:
    """Collect the step numbers a watch delivers until it reaches step last."""
    for update in stream:
        seen.extend(step.number for step in update.steps)
        if update.step_count >= last:
            return

"""A watcher: one session's live feed, its backlog bounded in steps."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

from .errors import RemoteCalcError, WatcherTooSlow
from .model import Update

__all__ = ["Watcher"]


class Watcher:
    """A live feed of one session's updates; iterate it, cancel it when done.

    Its backlog is bounded in steps, not updates: when more steps wait unread than the backlog
    allows, the queued updates are dropped and the very next read raises WatcherTooSlow.
    """

    _END = None

    def __init__(self, backlog: int, detach: Callable[[Watcher], None]) -> None:
        self._queue: queue.SimpleQueue[Update | None] = queue.SimpleQueue()
        self._backlog = backlog
        self._detach = detach
        self._error: RemoteCalcError | None = None
        # Two counters, each written by one side only, so neither needs a lock.
        self._pushed = 0
        self._taken = 0

    @property
    def backlog(self) -> int:
        """How many steps wait unread (an update without steps counts as one)."""
        return self._pushed - self._taken

    def _push(self, update: Update) -> bool:
        """Queue an update; False when the watcher fell too far behind and was ended."""
        if self._error is not None:
            return False
        size = len(update.steps) or 1
        if self._pushed - self._taken + size > self._backlog and self._pushed != self._taken:
            self._overflow()
            return False
        self._pushed += size
        self._queue.put(update)
        return True

    def _overflow(self) -> None:
        self._error = WatcherTooSlow(
            f"the watcher fell more than {self._backlog} steps behind and was ended: watch again to resume"
        )
        # A fresh queue holding only the end frees the unread updates at once.
        stale, self._queue = self._queue, queue.SimpleQueue()
        self._pushed = self._taken
        self._queue.put(self._END)
        stale.put(self._END)

    def end(self, error: RemoteCalcError | None = None) -> None:
        """End the feed, with error when given: its iteration raises it after the updates queued."""
        if error is not None and self._error is None:
            self._error = error
        self._queue.put(self._END)

    def cancel(self) -> None:
        """Stop watching; a blocked iteration ends. Every watcher must be cancelled when done."""
        self._detach(self)
        self.end()

    def __iter__(self) -> Iterator[Update]:
        while True:
            update = self._queue.get()
            if isinstance(self._error, WatcherTooSlow) or update is None:
                if self._error is not None:
                    raise self._error
                return
            self._taken += len(update.steps) or 1
            yield update
            if update.closed:
                return

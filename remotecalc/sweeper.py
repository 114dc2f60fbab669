"""A background thread that runs a sweep every period, so that no call waits on one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Sweeper"]

log = logging.getLogger(__name__)


class Sweeper:
    """Runs sweep() every period seconds in a daemon thread, from start() until stop().

    wait(seconds) is what the thread blocks on between sweeps; it returns True to stop. By
    default it is the stop event's wait; a test passes its own to trigger each sweep.
    """

    def __init__(
        self,
        sweep: Callable[[], object],
        period: float,
        *,
        wait: Callable[[float], bool] | None = None,
        name: str = "remotecalc-sweeper",
    ) -> None:
        if not period > 0:
            raise ValueError("the sweep period must be positive")
        self.period = period
        self._sweep = sweep
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread; calling it again does nothing."""
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread and wait for it: a sweep under way finishes first."""
        with self._lock:
            self._stopping.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self) -> None:
        while not self._wait(self.period) and not self._stopping.is_set():
            try:
                self._sweep()
            except Exception:  # a failed sweep must not end the sweeping
                log.exception("a sweep failed")

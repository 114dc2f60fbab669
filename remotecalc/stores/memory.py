"""Sessions in this process's memory: the store a notebook's server uses, a peer of the Redis store.

It keeps each session, its history and its watchers in dicts under locks; the rules it applies are
remotecalc.rules', as the Redis store's are.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence

from ..context import ANYONE, Call
from ..errors import TooManySessions
from ..model import OPERATORS, Snapshot, Step, Update
from ..requests import (
    DEFAULT_MAX_REQUESTS,
    DEFAULT_REQUEST_WINDOW,
    DEFAULT_SKEW,
    Request,
    RequestLog,
    apply_fingerprint,
    batch_fingerprint,
    close_fingerprint,
    create_fingerprint,
)
from ..rules import check_limit, check_operand, check_token, compute, compute_many, steps_after
from ..sweeper import Sweeper
from ..watcher import Watcher
from .sessions import Session, Sessions
from .watches import OpenWatches

__all__ = ["MemoryStore"]

# A sweep lets other threads have the GIL after each this many sessions: at a million expired
# sessions at once, Apply's p99 beside it stays near 1 ms instead of the 5 ms switch interval.
_SWEEP_CHUNK = 200


class MemoryStore:
    """All live sessions of one server, safe to use from many threads at once.

    Idle sessions are expired and old request ids forgotten by sweep(), which start() runs every
    sweep_every seconds in a background thread; a call on an idle session finds it expired anyway.
    A call with a request id goes through the request log (self.requests) first, which runs it once.
    """

    #: Its calls take microseconds in this process: an event loop may run them itself.
    blocking = False

    def __init__(
        self,
        *,
        max_sessions: int = 100_000,
        idle_timeout: float = 3600.0,
        history_limit: int = 1000,
        watch_backlog: int = 10_000,
        max_watchers: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 1.0,
        sweep_wait: Callable[[float], bool] | None = None,
        request_window: float = DEFAULT_REQUEST_WINDOW,
        request_skew: float = DEFAULT_SKEW,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if min(max_sessions, history_limit, watch_backlog, max_watchers) < 1 or not idle_timeout > 0:
            raise ValueError(
                "max_sessions, idle_timeout, history_limit, watch_backlog and max_watchers must be positive"
            )
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.history_limit = history_limit
        #: The most steps a watcher may leave unread before it is ended (WatcherTooSlow).
        self.watch_backlog = watch_backlog
        self.max_watchers = max_watchers
        self._watches: OpenWatches[Watcher] = OpenWatches(max_watchers)
        self._clock = clock
        self._sessions = Sessions(idle_timeout)
        self._create_lock = threading.Lock()
        #: Request ids and the replies they got, kept request_window seconds.
        self.requests = RequestLog(
            window=request_window, skew=request_skew, max_entries=max_requests, wall_clock=wall_clock
        )
        self.sweeper = Sweeper(self.sweep, sweep_every, wait=sweep_wait)

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self) -> None:
        """Start the background sweeper; shutdown() stops it."""
        self.sweeper.start()

    def create(self, value: float, *, call: Call = ANYONE) -> str:
        """Open a session holding value, owned by the caller, and return its token."""
        if call.request_id:
            return self.requests.once(Request.of(call, "create", create_fingerprint(value)), self._create, value, call)
        return self._create(value, call)

    def apply(self, token: str, operator: int, operand: float, *, limit: float = math.inf, call: Call = ANYONE) -> Step:
        """Apply one operation; limit bounds the result's magnitude (the article's float32)."""
        if call.request_id:
            check_token(token)
            request = Request.of(call, token, apply_fingerprint(operator, operand, limit))
            return self.requests.once(request, self._apply, token, operator, operand, limit, call)
        return self._apply(token, operator, operand, limit, call)

    def apply_many(
        self, token: str, operations: Sequence[tuple[int, float]], *, call: Call = ANYONE
    ) -> tuple[float, int]:
        """Apply operations in order, all or nothing; return the value and step count."""
        if call.request_id:
            check_token(token)
            request = Request.of(call, token, batch_fingerprint(operations))
            return self.requests.once(request, self._apply_many, token, operations, call)
        return self._apply_many(token, operations, call)

    def snapshot(self, token: str, *, call: Call = ANYONE) -> Snapshot:
        """The session's value, step count and recent history; reading it changes nothing."""
        session = self._sessions.find(token, call.caller, self._clock())
        with session.lock:
            session.check_open()
            history = session.history.steps() if session.history else ()
            return Snapshot(token, session.value, session.step_count, history, session.initial_value)

    def close(self, token: str, *, limit: float = math.inf, call: Call = ANYONE) -> tuple[float, int]:
        """Close the session and return its final value and step count."""
        if call.request_id:
            check_token(token)
            request = Request.of(call, token, close_fingerprint(limit))
            return self.requests.once(request, self._close, token, limit, call)
        return self._close(token, limit, call)

    def watch(self, token: str, after_step: int = 0, *, call: Call = ANYONE) -> Watcher:
        """A feed of the session's state: as it is now, then after each change, until it closes.

        With after_step, the first update also carries the steps after that one, from the history.
        """
        session = self._sessions.find(token, call.caller, self._clock())

        def detach(watcher: Watcher) -> None:
            with session.lock:
                if session.watchers and watcher in session.watchers:
                    session.watchers.remove(watcher)
            self._watches.discard(watcher)

        watcher = Watcher(self.watch_backlog, detach)
        self._watches.add(watcher)
        try:
            with session.lock:
                session.check_open()
                missed = session.step_count - after_step if after_step else 0
                kept = session.history.steps(missed) if session.history and missed > 0 else ()
                steps = steps_after(kept, session.step_count, after_step)
                watcher._push(Update(token, session.value, session.step_count, steps, False))
                session.watchers = [*(session.watchers or ()), watcher]
        except BaseException:
            detach(watcher)
            raise
        return watcher

    def sweep(self) -> int:
        """Expire idle sessions and forget request ids out of their window; return the sessions expired."""
        expired = self.expire_idle()
        self.requests.forget_expired()
        return expired

    def expire_idle(self) -> int:
        """Close every session idle for longer than idle_timeout; return how many. Costs O(expired)."""
        return self._sessions.expire(self._clock(), chunk=_SWEEP_CHUNK)

    def shutdown(self) -> None:
        """End every watch with ServerStopping and refuse new ones; other calls in flight still finish."""
        self.sweeper.stop()
        self._watches.stop()

    # -- each change, once its request id (if any) is new ------------------------------

    def _create(self, value: float, call: Call) -> str:
        check_operand(value, "initial value")
        now = self._clock()
        with self._create_lock:
            if len(self._sessions) >= self.max_sessions:
                self._sessions.expire(now)
                if len(self._sessions) >= self.max_sessions:
                    raise TooManySessions(f"too many live sessions (the limit is {self.max_sessions})")
            call.check_waiting()
            token = secrets.token_urlsafe(16)
            self._sessions.add(token, Session(float(value), now, call.caller))
        return token

    def _apply(self, token: str, operator: int, operand: float, limit: float, call: Call) -> Step:
        now = self._clock()
        session = self._sessions.find(token, call.caller, now)
        with session.lock:
            session.check_open()
            result = compute(session.value, operator, operand, limit)
            call.check_waiting()
            session.value = result
            session.step_count += 1
            self._sessions.touch(token, session, now)
            step = Step(session.step_count, OPERATORS[operator], operand, result)
            session.kept(self.history_limit).append(step.number, operator, operand, result)
            if session.watchers:
                session.publish(token, (step,))
        return step

    def _apply_many(self, token: str, operations: Sequence[tuple[int, float]], call: Call) -> tuple[float, int]:
        now = self._clock()
        session = self._sessions.find(token, call.caller, now)
        with session.lock:
            session.check_open()
            results = compute_many(session.value, operations, call.alive)
            call.check_waiting()
            value = results[-1] if results else session.value
            session.value = value
            session.step_count += len(operations)
            self._sessions.touch(token, session, now)
            keep = max(0, len(operations) - self.history_limit)
            # The history keeps these lists as they are, no Step per operation: a copy of the
            # operations (the caller's own) costs a pointer each; the results are already this call's.
            kept = list(operations[keep:] if keep else operations)
            history = session.kept(self.history_limit)
            history.extend(session.step_count, kept, results[keep:] if keep else results)
            if session.watchers and operations:
                session.publish(token, history.steps(len(kept)))
            count = session.step_count
        return value, count

    def _close(self, token: str, limit: float, call: Call) -> tuple[float, int]:
        session = self._sessions.find(token, call.caller, self._clock())
        with session.lock:
            session.check_open()
            check_limit(session.value, limit)
            call.check_waiting()
            self._sessions.end(token, session)
            return session.value, session.step_count

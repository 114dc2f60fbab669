"""Sessions in this process's memory: the store a notebook's server uses, a peer of the Redis store.

It keeps each session, its history and its watchers in dicts under locks; the rules it applies are
remotecalc.rules', as the Redis store's are.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..errors import CallerGone, SessionNotFound, TooManySessions
from ..history import History
from ..model import OPERATORS, Snapshot, Step, Update
from ..requests import (
    DEFAULT_MAX_REQUESTS,
    DEFAULT_REQUEST_WINDOW,
    DEFAULT_SKEW,
    RequestLog,
    apply_fingerprint,
    batch_fingerprint,
    close_fingerprint,
    create_fingerprint,
)
from ..rules import Alive, check_limit, check_operand, check_token, compute, compute_many, steps_after
from ..sweeper import Sweeper
from ..watcher import Watcher
from .watches import OpenWatches

__all__ = ["MemoryStore"]


# A sweep lets other threads have the GIL after each this many sessions: at a million expired
# sessions at once, Apply's p99 beside it stays near 1 ms instead of the 5 ms switch interval.
_SWEEP_CHUNK = 200


class _Session:
    __slots__ = (
        "closed",
        "history",
        "initial_value",
        "last_used",
        "lock",
        "owner",
        "step_count",
        "value",
        "watchers",
    )

    def __init__(self, value: float, now: float, owner: str = "") -> None:
        self.owner = owner
        self.value = value
        self.initial_value = value
        self.step_count = 0
        self.last_used = now
        self.lock = threading.Lock()
        self.history: History | None = None
        self.watchers: list[Watcher] | None = None
        self.closed = False


class MemoryStore:
    """All live sessions of one server, safe to use from many threads at once.

    Idle sessions are expired and old request ids forgotten by sweep(), which start() runs every
    sweep_every seconds in a background thread; a call on an idle session finds it expired anyway.
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
        # In order of last use, so that a sweep looks at the expired sessions only.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._create_lock = threading.Lock()
        self._sweep_lock = threading.Lock()
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

    # -- sessions ---------------------------------------------------------------------

    def create(self, value: float, *, request_id: str = "", alive: Alive | None = None, owner: str = "") -> str:
        """Open a session holding value, owned by owner, and return its token."""
        if request_id:
            fingerprint = create_fingerprint(value)
            return self.requests.once(
                request_id, "create", fingerprint, lambda: self.create(value, alive=alive, owner=owner), caller=owner
            )
        check_operand(value, "initial value")
        now = self._clock()
        with self._create_lock:
            if len(self._sessions) >= self.max_sessions:
                self._expire(now)
                if len(self._sessions) >= self.max_sessions:
                    raise TooManySessions(f"too many live sessions (the limit is {self.max_sessions})")
            if alive is not None and not alive():
                raise CallerGone()
            token = secrets.token_urlsafe(16)
            self._sessions[token] = _Session(float(value), now, owner)
        return token

    def apply(
        self,
        token: str,
        operator: int,
        operand: float,
        *,
        limit: float = math.inf,
        request_id: str = "",
        alive: Alive | None = None,
        owner: str = "",
    ) -> Step:
        """Apply one operation; limit bounds the result's magnitude (the article's float32)."""
        if request_id:
            check_token(token)
            fingerprint = apply_fingerprint(operator, operand, limit)
            return self.requests.once(
                request_id,
                token,
                fingerprint,
                lambda: self.apply(token, operator, operand, limit=limit, alive=alive, owner=owner),
                caller=owner,
            )
        now = self._clock()
        session = self._session(token, now, owner)
        with session.lock:
            self._check_open(session)
            result = compute(session.value, operator, operand, limit)
            if alive is not None and not alive():
                raise CallerGone()
            session.value = result
            session.step_count += 1
            self._touch(token, session, now)
            step = Step(session.step_count, OPERATORS[operator], operand, result)
            self._history(session).append(step.number, operator, operand, result)
            if session.watchers:
                self._publish(session, token, (step,))
        return step

    def apply_many(
        self,
        token: str,
        operations: Sequence[tuple[int, float]],
        *,
        request_id: str = "",
        alive: Alive | None = None,
        owner: str = "",
    ) -> tuple[float, int]:
        """Apply operations in order, all or nothing; return the value and step count."""
        if request_id:
            check_token(token)
            fingerprint = batch_fingerprint(operations)
            return self.requests.once(
                request_id,
                token,
                fingerprint,
                lambda: self.apply_many(token, operations, alive=alive, owner=owner),
                caller=owner,
            )
        now = self._clock()
        session = self._session(token, now, owner)
        with session.lock:
            self._check_open(session)
            results = compute_many(session.value, operations, alive)
            if alive is not None and not alive():
                raise CallerGone()
            value = results[-1] if results else session.value
            session.value = value
            session.step_count += len(operations)
            self._touch(token, session, now)
            keep = max(0, len(operations) - self.history_limit)
            # The history keeps these lists as they are, no Step per operation: a copy of the
            # operations (the caller's own) costs a pointer each; the results are already this call's.
            kept = list(operations[keep:] if keep else operations)
            history = self._history(session)
            history.extend(session.step_count, kept, results[keep:] if keep else results)
            if session.watchers and operations:
                self._publish(session, token, history.steps(len(kept)))
            count = session.step_count
        return value, count

    def snapshot(self, token: str, *, owner: str = "") -> Snapshot:
        """The session's value, step count and recent history; reading it changes nothing."""
        session = self._session(token, self._clock(), owner)
        with session.lock:
            self._check_open(session)
            history = session.history.steps() if session.history else ()
            return Snapshot(token, session.value, session.step_count, history, session.initial_value)

    def close(
        self,
        token: str,
        *,
        limit: float = math.inf,
        request_id: str = "",
        alive: Alive | None = None,
        owner: str = "",
    ) -> tuple[float, int]:
        """Close the session and return its final value and step count."""
        if request_id:
            check_token(token)
            fingerprint = close_fingerprint(limit)
            return self.requests.once(
                request_id,
                token,
                fingerprint,
                lambda: self.close(token, limit=limit, alive=alive, owner=owner),
                caller=owner,
            )
        session = self._session(token, self._clock(), owner)
        with session.lock:
            self._check_open(session)
            check_limit(session.value, limit)
            if alive is not None and not alive():
                raise CallerGone()
            self._end(token, session)
            return session.value, session.step_count

    def watch(self, token: str, after_step: int = 0, *, owner: str = "") -> Watcher:
        """A feed of the session's state: as it is now, then after each change, until it closes.

        With after_step, the first update also carries the steps after that one, from the history.
        """
        session = self._session(token, self._clock(), owner)

        def detach(watcher: Watcher) -> None:
            with session.lock:
                if session.watchers and watcher in session.watchers:
                    session.watchers.remove(watcher)
            self._watches.discard(watcher)

        watcher = Watcher(self.watch_backlog, detach)
        self._watches.add(watcher)
        try:
            with session.lock:
                self._check_open(session)
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
        return self._expire(self._clock(), chunk=_SWEEP_CHUNK)

    def shutdown(self) -> None:
        """End every watch with ServerStopping and refuse new ones; other calls in flight still finish."""
        self.sweeper.stop()
        self._watches.stop()

    # -- internals --------------------------------------------------------------------

    def _session(self, token: str, now: float, owner: str = "") -> _Session:
        session = self._sessions.get(token)
        # Another caller's session is, to this caller, a token never made: the same error, word for word.
        if session is None or session.owner != owner:
            check_token(token)
            raise SessionNotFound()
        if now - session.last_used > self.idle_timeout:
            with session.lock:
                if not session.closed:
                    self._end(token, session)
            raise SessionNotFound("the session expired after being idle")
        return session

    def _check_open(self, session: _Session) -> None:
        if session.closed:
            raise SessionNotFound("the session was closed")

    def _touch(self, token: str, session: _Session, now: float) -> None:
        """Mark a session, whose lock is held, used now: to the back of the sweep order."""
        session.last_used = now
        self._sessions.move_to_end(token)

    def _expire(self, now: float, chunk: int | None = None) -> int:
        """Close the sessions idle too long, oldest first, stopping at the first that is not.

        With chunk, yield the GIL after each chunk of sessions, so that calls in flight keep going.
        """
        expired = 0
        while True:
            done = self._expire_some(now, chunk)
            expired += done
            if chunk is None or done < chunk:
                return expired
            time.sleep(0)

    def _expire_some(self, now: float, most: int | None) -> int:
        expired = 0
        sessions = self._sessions
        with self._sweep_lock:
            while most is None or expired < most:
                try:
                    token = next(iter(sessions))
                    session = sessions[token]
                except (StopIteration, KeyError, RuntimeError):
                    break
                if now - session.last_used <= self.idle_timeout:
                    break
                with session.lock:
                    if now - session.last_used <= self.idle_timeout:
                        break
                    if session.closed:
                        sessions.pop(token, None)
                        continue
                    self._end(token, session)
                    expired += 1
        return expired

    def _history(self, session: _Session) -> History:
        if session.history is None:
            session.history = History(self.history_limit)
        return session.history

    def _publish(self, session: _Session, token: str, steps: tuple[Step, ...], closed: bool = False) -> None:
        update = Update(token, session.value, session.step_count, steps, closed)
        assert session.watchers is not None
        session.watchers = [w for w in session.watchers if w._push(update)]

    def _end(self, token: str, session: _Session) -> None:
        """Close a session whose lock is held, telling its watchers."""
        session.closed = True
        self._sessions.pop(token, None)
        if session.watchers:
            self._publish(session, token, (), closed=True)
            session.watchers = None

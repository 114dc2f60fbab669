"""Sessions and their arithmetic in plain Python, no gRPC: the rules live here once."""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import islice

from .errors import (
    BeyondLimit,
    CallerGone,
    DivisionByZero,
    FailedPrecondition,
    InvalidOperand,
    InvalidToken,
    OutOfRange,
    RemoteCalcError,
    ServerStopping,
    SessionNotFound,
    StepsNotKept,
    TooManySessions,
    TooManyWatchers,
)
from .history import History
from .model import OPERATORS, Snapshot, Step, Update
from .requests import (
    DEFAULT_MAX_REQUESTS,
    DEFAULT_REQUEST_WINDOW,
    DEFAULT_SKEW,
    RequestLog,
    apply_fingerprint,
    batch_fingerprint,
    close_fingerprint,
    create_fingerprint,
)
from .sweeper import Sweeper
from .watcher import Watcher

__all__ = [
    "FLOAT32_MAX",
    "Alive",
    "Engine",
    "Watcher",
    "check_limit",
    "check_operand",
    "check_token",
    "compute",
    "compute_many",
    "gone",
    "steps_after",
]

#: A hook a mutating call checks right before it commits: False when its caller has gone.
Alive = Callable[[], bool]

#: The largest finite value of a 32-bit float, the article contract's number type.
FLOAT32_MAX = 3.4028234663852886e38

_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
# A long batch asks whether its caller still waits once per this many operations.
_CHUNK = 20_000
# A sweep lets other threads have the GIL after each this many sessions: at a million expired
# sessions at once, Apply's p99 beside it stays near 1 ms instead of the 5 ms switch interval.
_SWEEP_CHUNK = 200


# The Operator for each of its values, without Operator(x)'s slower enum call on a hot path.


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


def gone() -> CallerGone:
    """The error of a change not made because its caller left."""
    return CallerGone("the caller cancelled or its deadline passed before the change was made: nothing changed")


class Engine:
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
        self._watchers: set[Watcher] = set()
        self._watchers_lock = threading.Lock()
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
        self._stopping = False

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
                raise gone()
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
                raise gone()
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
                raise gone()
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
                raise gone()
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
            with self._watchers_lock:
                self._watchers.discard(watcher)

        watcher = Watcher(self.watch_backlog, detach)
        with self._watchers_lock:
            if self._stopping:
                raise ServerStopping()
            if len(self._watchers) >= self.max_watchers:
                raise TooManyWatchers(f"too many open watches (the limit is {self.max_watchers})")
            self._watchers.add(watcher)
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
        with self._watchers_lock:
            self._stopping = True
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher._end(ServerStopping())

    # -- internals --------------------------------------------------------------------

    def _session(self, token: str, now: float, owner: str = "") -> _Session:
        session = self._sessions.get(token)
        # Another caller's session is, to this caller, a token never made: the same error, word for word.
        if session is None or session.owner != owner:
            check_token(token)
            raise SessionNotFound("no live session has this token: it was closed, expired or never made")
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
            raise gone()
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

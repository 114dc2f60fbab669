"""Sessions in Redis: the rules (remotecalc.rules) computed in Python, each change committed by one script.

A change reads the session's state (a per-replica cache makes that free in the usual case),
computes the result with the same rules as the in-memory store, and commits it with one Lua script
that checks that the step count is still the one computed from (compare-and-set). The script also answers a
request id it has seen with the stored reply, records the new value (floats as Python's exact
repr, never Lua's 14-digit tostring), appends the change's steps to the session's stream (its
history and its Watch feed at once, trimmed to the last history_limit steps) and refreshes every
key's TTL. A lost race re-reads and recomputes. All keys of a session share the Cluster hash tag
{token}.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, TypeVar, cast

from ..context import ANYONE, Call
from ..errors import (
    Aborted,
    RemoteCalcError,
    SessionNotFound,
    WatcherTooSlow,
)
from ..model import OPERATORS, Snapshot, Step, Update
from ..requests import (
    DEFAULT_REQUEST_WINDOW,
    DEFAULT_SKEW,
    Request,
    apply_fingerprint,
    batch_fingerprint,
    close_fingerprint,
    create_fingerprint,
)
from ..rules import check_limit, check_operand, check_token, compute, compute_many, steps_after
from . import redis_connect as connection
from . import redis_scripts as scripts
from .redis_connect import DEFAULT_TIMEOUT, PASSWORD_VARIABLE, unreachable
from .watches import OpenWatches

try:
    import redis
except ImportError:  # pragma: no cover - the Redis store says so as it opens
    redis = None  # type: ignore[assignment]

__all__ = ["DEFAULT_TIMEOUT", "PASSWORD_VARIABLE", "RedisStore"]

_T = TypeVar("_T")
# A lost compare-and-set re-reads and recomputes; this many lost races in a row is contention enough.
_RETRIES = 64


class _Change:
    """What one change commits: new state, its packed steps, the reply a retry gets, and the result."""

    __slots__ = ("close", "count", "reply", "result", "steps", "value")

    def __init__(self, value: float, count: int, steps: str, reply: str, result: object, close: bool = False) -> None:
        self.value = value
        self.count = count
        self.steps = steps
        self.reply = reply
        self.result = result
        self.close = close


class RedisStore:
    """Sessions kept in Redis, shared by every replica that uses the same Redis; expiry is Redis TTL."""

    #: Each call waits on Redis: the aio core runs it in a thread, so that its event loop never waits.
    blocking = True

    def __init__(
        self,
        client: Any,
        *,
        idle_timeout: float = 3600.0,
        history_limit: int = 1000,
        max_watchers: int = 1000,
        request_window: float = DEFAULT_REQUEST_WINDOW,
        request_skew: float = DEFAULT_SKEW,
        wall_clock: Callable[[], float] = time.time,
        block: float = 0.5,
        cache_size: int = 100_000,
        name: str = "redis",
    ) -> None:
        connection.requires_redis()
        if min(history_limit, max_watchers, cache_size) < 1 or not idle_timeout > 0:
            raise ValueError("idle_timeout, history_limit, max_watchers and cache_size must be positive")
        self._redis = client
        self.idle_timeout = idle_timeout
        self.history_limit = history_limit
        self.max_watchers = max_watchers
        self.request_window = request_window
        self.request_skew = request_skew
        self._wall_clock = wall_clock
        self._block_ms = max(1, int(block * 1000))
        self._ttl_ms = str(max(1, math.ceil(idle_timeout * 1000)))
        self._reply_ttl_ms = str(math.ceil((request_window + request_skew) * 1000))
        # A closed session's stream stays only for its watchers to read the end, not a whole idle timeout.
        self._closed_ttl_ms = str(min(int(self._ttl_ms), int(self._reply_ttl_ms)))
        self._commit = scripts.Script(client, scripts.COMMIT)
        self._create = scripts.Script(client, scripts.CREATE)
        self._read_script = scripts.Script(client, scripts.READ)
        # The last state this replica saw of each session: (step count, value). A stale one costs a retry.
        self._cache: dict[str, tuple[int, float, str]] = {}
        self._cache_size = cache_size
        self._watches: OpenWatches[_Feed] = OpenWatches(max_watchers)
        self._name = name

    @classmethod
    def from_url(cls, url: str, *, check: bool = True, **options: Any) -> RedisStore:
        """A store on the Redis at url (redis://, rediss://, redis+cluster://); a password may come from the env.

        With check (the default) it asks Redis first: ValueError, in one line, says what is wrong when Redis
        cannot be reached, refuses the password, or is a Cluster node named without +cluster (or the reverse).
        """
        client, shown, cluster = connection.open_client(url, options)
        store = cls(client, name=shown, **options)
        if check:
            try:
                connection.check(client, shown, cluster)
            except ValueError:
                store.shutdown()
                raise
        return store

    def __repr__(self) -> str:
        return f"<RedisStore {self._name}>"

    # -- the store interface ------------------------------------------------------------

    def start(self) -> None:
        """Nothing to start: Redis expires idle sessions itself."""

    def sweep(self) -> int:
        """Nothing to sweep: every key of a session has a TTL."""
        return 0

    def shutdown(self) -> None:
        """End every Watch with SERVER_STOPPING, refuse new ones and close idle connections."""
        self._watches.stop()
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            pool.disconnect(inuse_connections=False)
        else:
            self._redis.disconnect_connection_pools()

    def create(self, value: float, *, call: Call = ANYONE) -> str:
        """Open a session holding value, owned by the caller, and return its token."""
        if call.request_id:
            request = Request.of(call, "create", create_fingerprint(value))
            return unreachable(lambda: self._create_once(value, request, call))
        return self._create_session(value, call)

    def apply(self, token: str, operator: int, operand: float, *, limit: float = math.inf, call: Call = ANYONE) -> Step:
        """Apply one operation; limit bounds the result's magnitude (the article's float32)."""

        def change(value: float, count: int) -> _Change:
            result = compute(value, operator, operand, limit)
            step = Step(count + 1, OPERATORS[operator], operand, result)
            reply = f"{count + 1} {operator:d} {float(operand)!r} {result!r}"
            return _Change(result, count + 1, scripts.pack((operator,), (operand,), (result,)), reply, step)

        fingerprint = apply_fingerprint(operator, operand, limit) if call.request_id else b""
        return self._change(token, change, call, fingerprint, scripts.step_of)

    def apply_many(
        self, token: str, operations: Sequence[tuple[int, float]], *, call: Call = ANYONE
    ) -> tuple[float, int]:
        """Apply operations in order, all or nothing; return the value and step count.

        The script's work is bounded by history_limit, not by the batch: the arithmetic is done here.
        """

        def change(value: float, count: int) -> _Change:
            results = compute_many(value, operations, call.alive)
            if not results:
                return _Change(value, count, "", f"{value!r} {count}", (value, count))
            keep = max(0, len(operations) - self.history_limit)
            kept = operations[keep:] if keep else operations
            steps = scripts.pack(
                list(map(itemgetter(0), kept)), list(map(itemgetter(1), kept)), results[keep:] if keep else results
            )
            final, total = results[-1], count + len(operations)
            return _Change(final, total, steps, f"{final!r} {total}", (final, total))

        fingerprint = batch_fingerprint(operations) if call.request_id else b""
        return self._change(token, change, call, fingerprint, scripts.value_and_count)

    def snapshot(self, token: str, *, call: Call = ANYONE) -> Snapshot:
        """The session's value, step count and recent history; reading it changes nothing."""
        check_token(token)
        state, _, entries = unreachable(lambda: self._read_session(token, "-"))
        count, value, initial, held_by = state
        if count is None or value is None or initial is None or (held_by or "") != call.caller:
            raise SessionNotFound()
        self._remember(token, int(count), float(value), call.caller)
        history = [step for entry_id, raw in entries for step in scripts.entry_steps(entry_id, scripts.fields(raw))]
        return Snapshot(token, float(value), int(count), tuple(history[-self.history_limit :]), float(initial))

    def close(self, token: str, *, limit: float = math.inf, call: Call = ANYONE) -> tuple[float, int]:
        """Close the session and return its final value and step count."""

        def change(value: float, count: int) -> _Change:
            check_limit(value, limit)
            return _Change(value, count, "", f"{value!r} {count}", (value, count), close=True)

        fingerprint = close_fingerprint(limit) if call.request_id else b""
        return self._change(token, change, call, fingerprint, scripts.value_and_count)

    def watch(self, token: str, after_step: int = 0, *, call: Call = ANYONE) -> _Feed:
        """A feed of the session: its state now (with the steps after after_step), then every change."""
        check_token(token)
        feed = _Feed(self, token)
        self._watches.add(feed)
        try:
            feed.first, feed.last_id = unreachable(lambda: self._watch_start(token, after_step, call.caller))
        except BaseException:
            self._watches.discard(feed)
            raise
        return feed

    # -- internals ----------------------------------------------------------------------

    def _remember(self, token: str, count: int, value: float, owner: str) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size and token not in cache:
            cache.clear()
        cache[token] = (count, value, owner)

    def _read(self, token: str, owner: str) -> tuple[int, float]:
        count, value, held_by = self._redis.hmget(scripts.keys(token)[0], "n", "v", "o")
        if count is None or value is None or (held_by or "") != owner:
            raise SessionNotFound()
        return int(count), float(value)

    def _reply_key(self, request: Request) -> str:
        """Where a request id's reply is kept: in its session's slot (or its own for a create), for its caller."""
        request.check_date(self._wall_clock(), self.request_window, self.request_skew)
        caller = scripts.owner_part(request.caller)
        if request.scope == "create":
            return f"rc:{{c:{request.id.hex()}}}{caller}"
        return f"rc:{{{request.scope}}}:q:{request.id.hex()}{caller}"

    def _change(
        self,
        token: str,
        change: Callable[[float, int], _Change],
        call: Call,
        fingerprint: bytes,
        parse: Callable[[str], _T],
    ) -> _T:
        check_token(token)
        request = Request.of(call, token, fingerprint) if call.request_id else None
        request_key = self._reply_key(request) if request is not None else ""
        return unreachable(lambda: self._commit_change(token, change, call, request, request_key, parse))

    def _commit_change(
        self,
        token: str,
        change: Callable[[float, int], _Change],
        call: Call,
        request: Request | None,
        request_key: str,
        parse: Callable[[str], _T],
    ) -> _T:
        owner = call.caller
        keys = [*scripts.keys(token), request_key] if request_key else list(scripts.keys(token))
        cached = self._cache.get(token)
        # What this replica saw of another caller's session is no help to this one.
        known = cached[:2] if cached is not None and cached[2] == owner else None
        for _ in range(_RETRIES):
            fresh = known is None
            try:
                count, value = self._read(token, owner) if known is None else known
                done = change(value, count)
            except RemoteCalcError:
                if request is not None and (reply := self._redis.get(request_key)) is not None:
                    return _replayed(reply, request, parse)
                if not fresh:
                    # Computed from the cache: the session as Redis has it may say otherwise.
                    known = None
                    continue
                raise
            call.check_waiting()
            kind = "c" if done.close else "a"
            args = [
                str(count),
                kind,
                str(done.count),
                repr(done.value),
                self._closed_ttl_ms if done.close else self._ttl_ms,
                # The stream keeps the entries holding the last history_limit steps: the history.
                f"{max(1, done.count - self.history_limit + 1)}-0",
                f"{request.fingerprint.hex() if request else ''}|{done.reply}",
                self._reply_ttl_ms,
                done.steps,
                owner,
            ]
            outcome = self._commit(keys=keys, args=args)
            verdict = outcome[0]
            if verdict == "ok":
                if done.close:
                    self._cache.pop(token, None)
                else:
                    self._remember(token, done.count, done.value, owner)
                return cast(_T, done.result)
            if verdict == "dup" and request is not None:
                return _replayed(outcome[1], request, parse)
            if verdict == "gone":
                self._cache.pop(token, None)
                raise SessionNotFound()
            known = (int(outcome[1]), float(outcome[2]))
        raise Aborted(f"the session changed under {_RETRIES} attempts in a row: retry")

    def _create_session(self, value: float, call: Call) -> str:
        check_operand(value, "initial value")
        call.check_waiting()
        value = float(value)
        token = secrets.token_urlsafe(16)
        unreachable(lambda: self._create(keys=[scripts.keys(token)[0]], args=[repr(value), self._ttl_ms, call.caller]))
        self._remember(token, 0, value, call.caller)
        return token

    def _create_once(self, value: float, request: Request, call: Call) -> str:
        key = self._reply_key(request)
        stored = self._redis.get(key)
        if stored is not None:
            return str(_replayed(stored, request, str))
        token = self._create_session(value, call)
        # The session first, then the id: a crash between them leaves an orphan that expires, never a
        # reply naming a session that was not made. Of two racing creates, the later one yields.
        try:
            recorded = self._redis.set(key, f"{request.fingerprint.hex()}|{token}", nx=True, px=int(self._reply_ttl_ms))
        except redis.OutOfMemoryError:
            # Refused as full: nothing names the new session, so it goes and the create was not made.
            self._redis.delete(*scripts.keys(token))
            self._cache.pop(token, None)
            raise
        if recorded:
            return token
        self._redis.delete(*scripts.keys(token))
        self._cache.pop(token, None)
        stored = self._redis.get(key)
        return token if stored is None else str(_replayed(stored, request, str))

    def _read_session(self, token: str, first_id: str) -> tuple[list[str | None], list[Any], list[Any]]:
        """At one instant: the session's state (n, v, i, o), its newest stream entry, its entries from first_id."""
        state, newest, entries = self._read_script(keys=list(scripts.keys(token)), args=[first_id])
        return [field if isinstance(field, str) else None for field in state], newest, entries

    def _watch_start(self, token: str, after_step: int, owner: str) -> tuple[Update, str]:
        state, newest, entries = self._read_session(token, f"({after_step}-0" if after_step else "")
        count, value, _, held_by = state
        if count is None or value is None or (held_by or "") != owner:
            raise SessionNotFound()
        kept: list[Step] = []
        for entry_id, raw in entries:
            kept.extend(scripts.entry_steps(entry_id, scripts.fields(raw)))
        steps = steps_after(kept, int(count), after_step)
        last_id = newest[0][0] if newest else "0-0"
        return Update(token, float(value), int(count), steps, False), last_id

    def _detach(self, feed: _Feed) -> None:
        self._watches.discard(feed)


def _replayed(stored: str, request: Request, parse: Callable[[str], _T]) -> _T:
    """The stored reply of a request id, if it was used for this very request."""
    fingerprint, _, reply = stored.partition("|")
    request.check_same(bytes.fromhex(fingerprint))
    return parse(reply)


class _Feed:
    """One Watch on a Redis store: XREAD BLOCK on the session's stream, so no change is missed."""

    def __init__(self, store: RedisStore, token: str) -> None:
        self._store = store
        self._token = token
        #: The session as the Watch starts, and the stream id it reads on from: set before iterating.
        self.first = Update(token, 0.0, 0, (), True)
        self.last_id = "0-0"
        self._error: RemoteCalcError | None = None
        self._cancelled = False

    def end(self, error: RemoteCalcError) -> None:
        """End the feed with error; its iteration raises it within one block period."""
        if self._error is None:
            self._error = error

    def cancel(self) -> None:
        """Stop watching; an iteration under way ends within one block period."""
        self._cancelled = True
        self._store._detach(self)

    def __iter__(self) -> Iterator[Update]:
        store, token = self._store, self._token
        update = self.first
        yield update
        state_key, stream_key = scripts.keys(token)
        value, count = update.value, update.step_count
        while True:
            if self._error is not None:
                raise self._error
            if self._cancelled:
                return
            reply = unreachable(
                lambda: store._redis.xread({stream_key: self.last_id}, count=100, block=store._block_ms)
            )
            if not reply:
                if not unreachable(lambda: store._redis.exists(state_key)):
                    # Expired: the keys' TTL ran out with no close entry.
                    yield Update(token, value, count, (), True)
                    return
                continue
            for entry_id, raw in reply[0][1]:
                fields = scripts.fields(raw)
                self.last_id = entry_id
                if int(fields["p"]) != count:
                    raise WatcherTooSlow(
                        f"the watcher fell more than {store.history_limit} steps behind and was ended:"
                        " watch again to resume"
                    )
                value = float(fields["v"])
                if fields.get("c"):
                    yield Update(token, value, count, (), True)
                    return
                count = int(entry_id.partition("-")[0])
                yield Update(token, value, count, tuple(scripts.entry_steps(entry_id, fields)), False)

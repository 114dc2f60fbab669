"""The request log: each request that carries an id is applied at most once, for a stated time.

A request id is a UUID. The log keeps the outcome of every request that succeeded, under the
id and the scope it was made in (a session's token, or "create"), together with the exact request
(floats compared bit for bit). A retry within the window gets the first reply; the same id with a
different request is refused; an id dated before the window is refused as expired, never applied.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import ParamSpec, TypeVar

from .context import Call
from .errors import InvalidArgument, RequestExpired, RequestIdFromTheFuture, RequestIdReused, RequestLogFull

__all__ = [
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_REQUEST_WINDOW",
    "DEFAULT_SKEW",
    "Request",
    "RequestLog",
    "apply_fingerprint",
    "batch_fingerprint",
    "check_date",
    "close_fingerprint",
    "create_fingerprint",
    "parse_request_id",
]

#: How long, in seconds, a request id is remembered and a retry answered: two minutes.
DEFAULT_REQUEST_WINDOW = 120.0
#: How far ahead of the server's clock a UUIDv7 id may be dated (client clocks drift).
DEFAULT_SKEW = 10.0
#: How many request ids the log holds at most, about 430 bytes each (some 215 MB in all); beyond it a
#: new id is refused with RESOURCE_EXHAUSTED, which keeps every promise (evicting one would not).
DEFAULT_MAX_REQUESTS = 500_000

_T = TypeVar("_T")
_P = ParamSpec("_P")
_FORGET_CHUNK = 1000
_HEX = frozenset("0123456789abcdefABCDEF")
_APPLY = struct.Struct("<Bqdd")
_CLOSE = struct.Struct("<Bd")
_CREATE = struct.Struct("<Bd")
_OPERATOR_OF = itemgetter(0)
_OPERANDS = itemgetter(1)


def parse_request_id(text: str) -> bytes:
    """The 16 bytes of a UUID written as 32 hex digits, dashes allowed; INVALID_ARGUMENT otherwise."""
    digits = text.replace("-", "")
    if len(digits) != 32 or not _HEX.issuperset(digits) or len(text) > 36:
        raise InvalidArgument(
            "request_id must be a UUID: 32 hexadecimal digits, dashes allowed (a UUIDv7 is best: the server dates it)"
        )
    return bytes.fromhex(digits)


def _dated(raw: bytes) -> float | None:
    """The wall-clock time, in seconds, embedded in a UUIDv7; None for any other version."""
    if raw[6] >> 4 != 7 or raw[8] >> 6 != 0b10:
        return None
    return int.from_bytes(raw[:6], "big") / 1000.0


def check_date(raw: bytes, now: float, window: float, skew: float) -> None:
    """Refuse a UUIDv7 dated before the retry window or too far ahead of now (other ids pass)."""
    dated = _dated(raw)
    if dated is not None:
        if now - dated > window:
            raise RequestExpired(
                f"request_id is {now - dated:.0f} s old, past the {window:.0f} s retry window: not applied"
            )
        if dated - now > skew:
            raise RequestIdFromTheFuture(
                f"request_id is dated {dated - now:.0f} s ahead of the server's clock"
                f" (at most {skew:.0f} s): check the client's clock"
            )


def apply_fingerprint(operator: int, operand: float, limit: float) -> bytes:
    """The exact Apply request: operator, operand and limit, floats bit for bit (0.0 is not -0.0)."""
    return _APPLY.pack(1, operator, operand, limit)


def close_fingerprint(limit: float) -> bytes:
    """The exact CloseSession request."""
    return _CLOSE.pack(2, limit)


def create_fingerprint(value: float) -> bytes:
    """The exact CreateSession request: its initial value bit for bit."""
    return _CREATE.pack(3, value)


def batch_fingerprint(operations: Sequence[tuple[int, float]]) -> bytes:
    """The exact ApplyBatch request: a BLAKE2b-256 digest of every operator and every operand's bits."""
    # The digest of the full list, not the list: a 300,000-operation batch would otherwise keep
    # 2.7 MB per id. 256 bits of BLAKE2b have no known collision, unlike Python's hash().
    digest = hashlib.blake2b(digest_size=32)
    digest.update(struct.pack("<Bq", 4, len(operations)))
    digest.update(array("q", map(_OPERATOR_OF, operations)).tobytes())
    digest.update(array("d", map(_OPERANDS, operations)).tobytes())
    return digest.digest()


@dataclass(frozen=True, slots=True)
class Request:
    """A change made under a request id, as both stores tell its retries apart: the id, where, by whom, what.

    Its id is scoped to a session's token (or "create") and to its caller; the fingerprint is the exact
    request, so that the same id with another request is refused (RequestIdReused), never answered.
    """

    id: bytes
    scope: str
    caller: str
    fingerprint: bytes

    @classmethod
    def of(cls, call: Call, scope: str, fingerprint: bytes) -> Request:
        """The request call makes in scope under its request id; INVALID_ARGUMENT when the id is no UUID."""
        return cls(parse_request_id(call.request_id), scope, call.caller, fingerprint)

    @property
    def key(self) -> bytes:
        """What the request is kept under: its id, scope and caller."""
        # The caller last: a scope (a token or "create") holds no NUL, so no two keys collide.
        return self.id + b"\0" + self.scope.encode() + b"\0" + self.caller.encode()

    def check_date(self, now: float, window: float, skew: float) -> None:
        """Refuse an id dated out of the retry window around now (a UUIDv7's date; other ids pass)."""
        check_date(self.id, now, window, skew)

    def check_same(self, fingerprint: bytes) -> None:
        """Refuse a retry whose first request, kept with fingerprint, was a different one."""
        if fingerprint != self.fingerprint:
            raise RequestIdReused("request_id was already used for a different request")


class _Entry:
    __slots__ = ("busy", "fingerprint", "forget_after", "key", "ok", "result")

    def __init__(self, key: bytes, fingerprint: bytes, forget_after: float) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.forget_after = forget_after
        self.result: object = None
        self.ok = False
        # Held by the request's own call until it is done: a concurrent retry waits on it.
        self.busy: threading.Lock | None = threading.Lock()
        self.busy.acquire()


class RequestLog:
    """Replies to requests that carried an id, kept for a time window, so a retry is answered once."""

    def __init__(
        self,
        *,
        window: float = DEFAULT_REQUEST_WINDOW,
        skew: float = DEFAULT_SKEW,
        max_entries: int = DEFAULT_MAX_REQUESTS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not window > 0 or not skew >= 0 or max_entries < 1:
            raise ValueError("window must be positive, skew not negative, max_entries at least 1")
        self.window = window
        self.skew = skew
        self.max_entries = max_entries
        self._wall_clock = wall_clock
        self._latest = wall_clock()
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        # Entries in the order first seen, so forget_after never decreases along it.
        self._order: deque[_Entry] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def now(self) -> float:
        """The log's wall clock, which never runs backwards: an id once expired stays expired."""
        now = self._wall_clock()
        if now > self._latest:
            self._latest = now
        return self._latest

    def once(self, request: Request, action: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """action(*args, **kwargs), run once for request; a retry gets the same result, or waits for it."""
        key = request.key
        while True:
            with self._lock:
                entry = self._entries.get(key)
                first = entry is None
                if entry is None:
                    now = self._admit(request)
                    # Kept until no clock reading can accept the id again: its date, at most the
                    # first sight plus the skew, plus the window.
                    entry = self._entries[key] = _Entry(key, request.fingerprint, now + self.skew + self.window)
                    self._order.append(entry)
            request.check_same(entry.fingerprint)
            if first:
                return self._run(entry, action, *args, **kwargs)
            busy = entry.busy
            if busy is not None:
                with busy:
                    pass
            if entry.ok:
                return entry.result  # type: ignore[return-value]
            # The first call failed and changed nothing: this one runs the request itself.

    def _admit(self, request: Request) -> float:
        """Refuse an id the window no longer covers, or a new one when the log is full; lock held."""
        now = self.now()
        request.check_date(now, self.window, self.skew)
        if len(self._entries) >= self.max_entries and not self._forget(now):
            raise RequestLogFull(f"the server remembers {self.max_entries} recent request ids, its limit: retry later")
        return now

    def _run(self, entry: _Entry, action: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        busy = entry.busy
        assert busy is not None
        try:
            entry.result = action(*args, **kwargs)
            entry.ok = True
            return entry.result
        finally:
            if not entry.ok:
                # A failed call changed nothing: forget it, so that its retry is applied, once.
                with self._lock:
                    if self._entries.get(entry.key) is entry:
                        del self._entries[entry.key]
            entry.busy = None
            busy.release()

    def forget_expired(self) -> int:
        """Drop the entries no retry can reach any more; return how many. Costs O(dropped)."""
        dropped = 0
        while True:
            # In chunks, letting go of the lock between them, so that no call waits long on it.
            with self._lock:
                some = self._forget(self.now(), most=_FORGET_CHUNK)
            dropped += some
            if some < _FORGET_CHUNK:
                return dropped
            time.sleep(0)

    def _forget(self, now: float, most: int | None = None) -> int:
        order = self._order
        entries = self._entries
        dropped = 0
        while order and order[0].forget_after < now and (most is None or dropped < most):
            entry = order.popleft()
            if entry.busy is not None:
                # Still running after the whole window: keep it until it ends.
                entry.forget_after = now + self.window
                order.append(entry)
            elif entries.get(entry.key) is entry:
                del entries[entry.key]
                dropped += 1
        return dropped

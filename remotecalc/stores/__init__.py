"""Where sessions live: the store boundary, the in-memory store (the default) and the Redis store.

Every store applies the rules (remotecalc.rules: validation, arithmetic, limits, error wording) and
differs only in where a session's state is kept and how a change is committed. The stores are peers, a
module each (memory.py, redis.py), and neither imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..context import ANYONE, Call
from ..model import Snapshot, Step, Update
from .memory import MemoryStore

__all__ = ["MEMORY", "SHARED_SCHEMES", "Call", "Feed", "MemoryStore", "Store", "is_shared", "open_store"]

#: The store named by --store memory: sessions in the server's own process.
MEMORY = "memory"
#: The URL schemes of stores that several server processes share: Redis, alone or as a Cluster.
SHARED_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "unix://")


class Feed(Protocol):
    """One Watch: the session's updates in order; cancel() when done."""

    def __iter__(self) -> Iterator[Update]: ...

    def cancel(self) -> None:
        """Stop the feed; an iteration under way ends."""


class Store(Protocol):
    """What the services need of a session store; the rules behind each call are remotecalc.rules.

    call says who calls and how (remotecalc.context.Call): a session belongs to the caller that
    created it, and to any other it is a token never made (SessionNotFound, word for word); a request
    id makes a change happen once, scoped to its caller; a caller who has gone changes nothing.
    """

    #: True when its calls wait on the network: an event loop runs them in threads, never on itself.
    blocking: bool

    def start(self) -> None:
        """Start background work (the in-memory sweeper)."""

    def shutdown(self) -> None:
        """End every Watch with SERVER_STOPPING and refuse new ones."""

    def sweep(self) -> int:
        """Expire idle sessions where the store does not expire them itself; return how many."""

    def create(self, value: float, *, call: Call = ANYONE) -> str:
        """Open a session holding value, owned by the caller; return its token."""

    def apply(self, token: str, operator: int, operand: float, *, limit: float = math.inf, call: Call = ANYONE) -> Step:
        """Apply one operation and return its step; limit bounds the result's magnitude."""

    def apply_many(
        self, token: str, operations: Sequence[tuple[int, float]], *, call: Call = ANYONE
    ) -> tuple[float, int]:
        """Apply operations in order, all or nothing; return the value and step count."""

    def snapshot(self, token: str, *, call: Call = ANYONE) -> Snapshot:
        """The session's value, step count and recent history."""

    def close(self, token: str, *, limit: float = math.inf, call: Call = ANYONE) -> tuple[float, int]:
        """Close the session; return its final value and step count."""

    def watch(self, token: str, after_step: int = 0, *, call: Call = ANYONE) -> Feed:
        """A feed of the session: now (with the steps after after_step), then each change."""


def open_store(store: str | Store | None = None, **memory_options: Any) -> Store:
    """A store from its URL (``memory``, ``redis://…``, ``rediss://…``, ``redis+cluster://…``) or the store itself.

    A Redis store is asked once as it opens: ValueError, in one line, says so when it cannot be used.
    memory_options are the in-memory store's (max_sessions, idle_timeout, clock...); a Redis
    store takes idle_timeout, history_limit and max_watchers from them too (expiry is Redis TTL).
    """
    if store is None or store == MEMORY:
        return MemoryStore(**memory_options)
    if not isinstance(store, str):
        return store
    if is_shared(store):
        from .redis import RedisStore

        options = {
            key: memory_options[key]
            for key in ("idle_timeout", "history_limit", "max_watchers")
            if key in memory_options
        }
        redis_store: Store = RedisStore.from_url(store, **options)
        return redis_store
    raise ValueError(
        f"unknown store {store!r}: use 'memory', or a redis://, rediss://, redis+cluster:// or unix:// URL"
    )


def is_shared(store: str) -> bool:
    """True when the store URL names sessions that several server processes share (Redis), as --workers needs."""
    return store.startswith(SHARED_SCHEMES)

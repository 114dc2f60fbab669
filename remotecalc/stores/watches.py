"""The open Watches of one store, whichever it is: a limit on how many, and their end when the server stops."""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar

from ..errors import RemoteCalcError, ServerStopping, TooManyWatchers

__all__ = ["OpenWatches"]


class _Endable(Protocol):
    def end(self, error: RemoteCalcError) -> None: ...


_F = TypeVar("_F", bound=_Endable)


class OpenWatches(Generic[_F]):
    """At most limit open feeds; once stopping, none more, and every open one ended with SERVER_STOPPING."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._feeds: set[_F] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def __len__(self) -> int:
        return len(self._feeds)

    def add(self, feed: _F) -> None:
        """Count feed in; ServerStopping once stopping, TooManyWatchers at the limit."""
        with self._lock:
            if self._stopping:
                raise ServerStopping()
            if len(self._feeds) >= self.limit:
                raise TooManyWatchers(f"too many open watches (the limit is {self.limit})")
            self._feeds.add(feed)

    def discard(self, feed: _F) -> None:
        """Count feed out (it ended or was cancelled); a feed not counted is ignored."""
        with self._lock:
            self._feeds.discard(feed)

    def stop(self) -> None:
        """Refuse new feeds and end every open one with ServerStopping."""
        with self._lock:
            self._stopping = True
            feeds = list(self._feeds)
        for feed in feeds:
            feed.end(ServerStopping())

"""The in-memory store's sessions: each one's state under its own lock, the table in order of last use, expiry."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ..errors import SessionNotFound
from ..history import History
from ..model import Step, Update
from ..rules import check_token
from ..watcher import Watcher

__all__ = ["Session", "Sessions"]


class Session:
    """One live session; every field but lock is read and written with lock held."""

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

    def check_open(self) -> None:
        """Refuse a session closed since it was found."""
        if self.closed:
            raise SessionNotFound("the session was closed")

    def kept(self, limit: int) -> History:
        """The session's history, made on its first step."""
        if self.history is None:
            self.history = History(limit)
        return self.history

    def publish(self, token: str, steps: tuple[Step, ...], closed: bool = False) -> None:
        """Tell every watcher the session's state and these steps; one that fell too far behind is dropped."""
        update = Update(token, self.value, self.step_count, steps, closed)
        self.watchers = [watcher for watcher in self.watchers or () if watcher._push(update)]


class Sessions:
    """The live sessions of one store by token, in order of last use, so that expiry costs O(expired)."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sweep_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def __getitem__(self, token: str) -> Session:
        return self._sessions[token]

    def add(self, token: str, session: Session) -> None:
        """Keep a new session under token."""
        self._sessions[token] = session

    def find(self, token: str, caller: str, now: float) -> Session:
        """The caller's live session of this token; SessionNotFound when there is none (or it just expired)."""
        session = self._sessions.get(token)
        # Another caller's session is, to this caller, a token never made: the same error, word for word.
        if session is None or session.owner != caller:
            check_token(token)
            raise SessionNotFound()
        if now - session.last_used > self.idle_timeout:
            with session.lock:
                if not session.closed:
                    self.end(token, session)
            raise SessionNotFound("the session expired after being idle")
        return session

    def touch(self, token: str, session: Session, now: float) -> None:
        """Mark a session, whose lock is held, used now: to the back of the expiry order."""
        session.last_used = now
        self._sessions.move_to_end(token)

    def end(self, token: str, session: Session) -> None:
        """Close a session whose lock is held, telling its watchers."""
        session.closed = True
        self._sessions.pop(token, None)
        if session.watchers:
            session.publish(token, (), closed=True)
            session.watchers = None

    def expire(self, now: float, chunk: int | None = None) -> int:
        """Close the sessions idle too long, oldest first, stopping at the first that is not; return how many.

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
                    self.end(token, session)
                    expired += 1
        return expired

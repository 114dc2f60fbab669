"""Request ids for tests: UUIDv7 dated when a test says, and a wall clock a test moves."""

from __future__ import annotations

import secrets
import time
import uuid


def uuid7(at: float | None = None) -> str:
    """A UUIDv7 whose embedded time is `at` (seconds since the epoch), now by default."""
    millis = int((time.time() if at is None else at) * 1000)
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76 | secrets.randbits(12) << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def uuid4() -> str:
    """A random UUID (version 4): the server dates it when it first sees it."""
    return uuid.uuid4().hex


class WallClock:
    """A wall clock (seconds since the epoch) that moves only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock by seconds (backwards when negative)."""
        self.now += seconds

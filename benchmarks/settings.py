"""The benchmark's settings, full and quick, and its progress lines: shared by run.py and each part run alone."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["FULL", "QUICK", "progress", "settings_for"]

# Part 1 runs `cycles` times through the six servers, `slice` seconds each, so that a burst of load
# from elsewhere falls on all alike; the other parts run `rounds` times, seconds per measurement as named.
QUICK: dict[str, Any] = {"cycles": 1, "slice": 0.2, "rounds": 1, "batch": 0.15, "watch": 0.25, "embedded": 0.25}
QUICK |= {"apply": 0.25, "sessions": 50_000, "session_rounds": 1, "session_apply": 0.25, "expire_after": 0.5}
QUICK |= {"sweep_window": 2.0}
FULL: dict[str, Any] = {"cycles": 20, "slice": 0.4, "rounds": 3, "batch": 1.5, "watch": 2.0, "embedded": 3.0}
FULL |= {"apply": 2.0, "sessions": 1_000_000, "session_rounds": 10, "session_apply": 1.0, "expire_after": 2.0}
FULL |= {"sweep_window": 10.0}
# Parts 7 to 9: the Redis store, Watch latency (8 watchers at 500 updates/s), concurrent callers.
QUICK |= {"redis_rounds": 1, "redis_apply": 0.2, "redis_batch": 0.15, "watch_latency": 0.3}
QUICK |= {"callers_rounds": 1, "callers_seconds": 0.1}
FULL |= {"redis_rounds": 5, "redis_apply": 1.0, "redis_batch": 1.0, "watch_latency": 6.0}
FULL |= {"callers_rounds": 3, "callers_seconds": 1.5}
# Part 10: TLS and mutual TLS against plaintext, Apply seconds per measurement and new connections per round.
QUICK |= {"tls_rounds": 1, "tls_apply": 0.15, "tls_connections": 20}
FULL |= {"tls_rounds": 6, "tls_apply": 1.0, "tls_connections": 200}
# Part 11: remotecalc beside the empty-handler floors, seconds per measurement.
QUICK |= {"floor_rounds": 1, "floor_seconds": 0.1}
FULL |= {"floor_rounds": 6, "floor_seconds": 1.0}


def settings_for(*, quick: bool) -> dict[str, Any]:
    """A fresh copy of the quick or the full settings."""
    return dict(QUICK if quick else FULL)


def progress(message: str) -> None:
    """Say on stderr which part runs and how far it is, so that a long run shows it is alive."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

"""What a connection may cost the server: open files, a handshake's time, an idle connection's life.

A server's connections are its callers' to share: a stranger who opens sockets and says nothing, or a
client that vanished without closing, must not hold what others need (file descriptors, worker threads).
"""

from __future__ import annotations

import resource
from typing import Any

__all__ = [
    "FEW_OPEN_FILES",
    "HANDSHAKE_TIMEOUT",
    "IDLE_CONNECTION_TIMEOUT",
    "KEEPALIVE_TIME",
    "KEEPALIVE_TIMEOUT",
    "connection_options",
    "raise_open_file_limit",
]

#: Seconds a new connection has to finish its TLS and HTTP/2 handshake before the server closes it.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds a connection with no call open stays open (the client reconnects by itself on its next call).
IDLE_CONNECTION_TIMEOUT = 1800.0
#: Seconds between the server's pings on a connection, and how long an unanswered ping may wait: a client
#: that vanished (its machine off, a cable out) frees its connection and any Watch on it within about 80 s.
KEEPALIVE_TIME = 60.0
KEEPALIVE_TIMEOUT = 20.0
#: Below this many open files the server says how few connections it can hold.
FEW_OPEN_FILES = 4096
# Linux refuses an unlimited soft limit on open files; its usual nr_open.
_MOST_OPEN_FILES = 1 << 20


def connection_options(idle_connection_timeout: float = IDLE_CONNECTION_TIMEOUT) -> list[tuple[str, Any]]:
    """gRPC server options for the timeouts above, idle_connection_timeout in seconds."""
    return [
        ("grpc.server_handshake_timeout_ms", int(HANDSHAKE_TIMEOUT * 1000)),
        ("grpc.max_connection_idle_ms", int(idle_connection_timeout * 1000)),
        ("grpc.keepalive_time_ms", int(KEEPALIVE_TIME * 1000)),
        ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),
    ]


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _MOST_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
        return wanted
    return soft if soft != resource.RLIM_INFINITY else _MOST_OPEN_FILES

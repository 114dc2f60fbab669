"""How the Redis store reaches Redis: its URL, the client, the first check, and Redis failures as statuses."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ..errors import StoreFull, StoreUnavailable

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisClusterException
    from redis.retry import Retry
except ImportError:  # pragma: no cover - the message is the point
    redis = None  # type: ignore[assignment]

__all__ = ["DEFAULT_TIMEOUT", "PASSWORD_VARIABLE", "check", "open_client", "requires_redis", "unreachable"]

#: The environment variable a Redis password is read from when the URL has none.
PASSWORD_VARIABLE = "REMOTECALC_REDIS_PASSWORD"
#: Seconds a connection to Redis, or one command's reply, may take before the call fails STORE_UNAVAILABLE
#: (the URL's socket_timeout and socket_connect_timeout override it). A Watch blocks half as long.
DEFAULT_TIMEOUT = 1.0

_T = TypeVar("_T")
_UNREACHABLE = "the session store (Redis) is unreachable: a change may or may not be made; retry with its request_id"
_REFUSED = f"the session store (Redis) refused the server's password: check {PASSWORD_VARIABLE} or the URL"
_FULL = (
    "the session store (Redis) is full (maxmemory) and refused the change before making it: nothing was"
    " changed; close sessions or give Redis more memory, then retry"
)


def requires_redis() -> None:
    """ImportError, saying how to install it, when redis-py is missing."""
    if redis is None:
        raise ImportError(
            "the Redis store needs redis-py: pip install 'remotecalc[redis]'",
            name="redis",
        )


def open_client(url: str, options: dict[str, Any]) -> tuple[Any, str, bool]:
    """A redis-py client for url, the Redis it names for messages, and whether it is a Cluster.

    options are the store's: a Watch's block time is set there from the URL's socket timeout.
    """
    requires_redis()
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    extra: dict[str, Any] = {}
    if not parts.password and os.environ.get(PASSWORD_VARIABLE):
        extra["password"] = os.environ[PASSWORD_VARIABLE]
    for option in ("socket_timeout", "socket_connect_timeout"):
        if option not in query:
            extra[option] = DEFAULT_TIMEOUT
    timeout = float(query["socket_timeout"][0]) if "socket_timeout" in query else DEFAULT_TIMEOUT
    # XREAD BLOCK waits this long for a change, within the socket timeout, or a quiet Watch would time out.
    options.setdefault("block", min(0.5, timeout / 2))
    if not 0 < options["block"] < timeout:
        raise ValueError(f"a Watch's block time must be positive and below the socket timeout ({timeout:g} s)")
    shown = _where(url)
    # No automatic retry: a resent script whose first run committed would apply twice.
    client: Any
    cluster = parts.scheme.endswith("+cluster")
    try:
        if cluster:
            plain = parts._replace(scheme=parts.scheme.removesuffix("+cluster")).geturl()
            client = redis.RedisCluster.from_url(plain, decode_responses=True, retry=Retry(NoBackoff(), 0), **extra)
        else:
            client = redis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0), **extra)
    except (redis.RedisError, RedisClusterException) as error:
        raise ValueError(_start_problem(shown, error)) from None
    return client, shown, cluster


def check(client: Any, name: str, cluster: bool) -> None:
    """Ask Redis once, as serve starts: ValueError, in one line, when the store cannot be used."""
    try:
        client.ping()
        clustered = not cluster and client.info("cluster").get("cluster_enabled")
    except (redis.RedisError, RedisClusterException) as error:
        raise ValueError(_start_problem(name, error)) from None
    if clustered:
        raise ValueError(
            f"the session store at {name} is a Redis Cluster node: name it redis+cluster://…,"
            " or every session in another node's slots fails"
        )


def unreachable(call: Callable[[], _T]) -> _T:
    """call's result; a Redis failure becomes UNAVAILABLE (retryable, outcome unknown), never INTERNAL.

    A full Redis is the exception: it refuses a script's first write, so nothing was changed (STORE_FULL).
    """
    try:
        return call()
    except redis.OutOfMemoryError as error:
        raise StoreFull(_FULL) from error
    except redis.AuthenticationError as error:
        raise StoreUnavailable(_REFUSED) from error
    except (redis.RedisError, RedisClusterException) as error:
        # A Cluster client re-reading the slots while a master is down says so with RedisClusterException.
        raise StoreUnavailable(_UNREACHABLE) from error


def _where(url: str) -> str:
    """The Redis a URL names, for messages: host and port (or a socket path), never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return parts._replace(netloc=f"{host}:{parts.port or 6379}", query="").geturl()


def _start_problem(where: str, error: BaseException) -> str:
    """One line saying why the store at where cannot be used, from redis-py's error and its causes."""
    chain: list[BaseException] = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(cause)
    if any(isinstance(link, redis.AuthenticationError) for link in chain):
        return (
            f"the session store (Redis) at {where} refused the server's password: check {PASSWORD_VARIABLE} or the URL"
        )
    if any("Cluster mode is not enabled" in str(link) for link in chain):
        return f"the session store at {where} is not a Redis Cluster node: name a single Redis redis://…"
    reason = next((str(link) for link in reversed(chain) if isinstance(link, redis.RedisError)), str(error))
    reason = " ".join(reason.split()) or type(error).__name__
    return f"the session store (Redis) at {where} is unreachable ({reason}): is redis-server running there?"

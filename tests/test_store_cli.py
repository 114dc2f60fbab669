"""`remotecalc serve --store`: Redis with a password from the environment, and a store it cannot use."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from contracts import V1Calls
from processes import REMOTECALC, Served
from redis_servers import RedisServer

from remotecalc import start_server
from remotecalc.errors import StoreUnavailable
from remotecalc.stores import is_shared
from remotecalc.stores.redis import RedisStore

PASSWORD = "correct horse battery staple"


def _refused(*args: str) -> str:
    """What `remotecalc serve` says on stderr when it refuses to start: exit 2, one line, no traceback."""
    served = Served("--port", "0", *args)
    assert served.process.wait(timeout=30) == 2
    message = served.stderr_text()
    assert message.count("\n") == 1 and "Traceback" not in message, message
    assert served.rest() == "", "it refused after saying it listened"
    return message


def test_serve_on_a_redis_with_a_password_taken_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_server = RedisServer(tmp_path, extra=("--requirepass", PASSWORD))
    redis_server.start()
    try:
        monkeypatch.setenv("REMOTECALC_REDIS_PASSWORD", PASSWORD)
        with_password = Served("--port", "0", "--store", redis_server.url)
        try:
            assert PASSWORD not in " ".join(map(str, with_password.process.args))
            with grpc.insecure_channel(with_password.address()) as channel:
                calls = V1Calls(channel)
                token = calls.create(20)
                assert calls.apply(token, "+", 22) == 42
        finally:
            assert with_password.stop() == 0
        # A wrong or missing password never heals by itself: serve refuses to start, and says why.
        monkeypatch.setenv("REMOTECALC_REDIS_PASSWORD", "wrong")
        wrong = _refused("--store", redis_server.url)
        monkeypatch.delenv("REMOTECALC_REDIS_PASSWORD")
        missing = _refused("--store", redis_server.url)
        for message in (wrong, missing):
            assert "refused the server's password: check REMOTECALC_REDIS_PASSWORD or the URL" in message
            assert f"127.0.0.1:{redis_server.port}" in message
        assert "wrong" not in wrong
    finally:
        redis_server.stop()


def test_serve_on_a_redis_nobody_listens_on_refuses_in_one_line_with_or_without_workers() -> None:
    port = free_port()
    for url in (f"redis://127.0.0.1:{port}/0", f"redis+cluster://127.0.0.1:{port}"):
        for workers in ("1", "2"):
            message = _refused("--workers", workers, "--store", url)
            assert f"the session store (Redis) at {url}" in message
            assert "is unreachable" in message and "Connection refused" in message


def test_serve_on_a_cluster_url_of_a_lone_redis_or_the_reverse_refuses_in_one_line(
    redis_url: str, tmp_path: Path
) -> None:
    lone = redis_url.replace("redis://", "redis+cluster://")
    assert "is not a Redis Cluster node: name a single Redis redis://…" in _refused("--store", lone)
    cluster_node = RedisServer(tmp_path, extra=("--cluster-enabled", "yes", "--cluster-port", str(free_port())))
    cluster_node.start()
    try:
        message = _refused("--store", cluster_node.url)
        assert "is a Redis Cluster node: name it redis+cluster://…" in message
    finally:
        cluster_node.stop()


def test_serve_with_an_unknown_store_is_a_one_line_error_naming_every_kind() -> None:
    message = _refused("--store", "postgres://localhost/sessions")
    assert "unknown store 'postgres://localhost/sessions'" in message
    for kind in ("'memory'", "redis://", "rediss://", "redis+cluster://"):
        assert kind in message


def test_the_store_help_names_a_redis_cluster() -> None:
    shown = subprocess.run([REMOTECALC, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert "redis+cluster://HOST:PORT" in " ".join(shown.stdout.split())


@pytest.mark.parametrize(
    ("store", "shared"),
    [
        ("memory", False),
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://redis.example:6380/1", True),
        ("redis+cluster://127.0.0.1:7000", True),
        ("rediss+cluster://127.0.0.1:7000", True),
        ("unix:///run/redis/redis.sock", True),
        ("postgres://localhost/sessions", False),
    ],
)
def test_workers_take_every_store_that_processes_share(store: str, shared: bool) -> None:
    assert is_shared(store) is shared


def test_start_server_and_from_url_raise_the_same_line_and_check_false_skips_the_check(redis_url: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ValueError, match=r"^the session store \(Redis\) at .* is unreachable"):
        start_server(port=0, store=nowhere)
    with pytest.raises(ValueError, match="is unreachable"):
        RedisStore.from_url(nowhere)
    unchecked = RedisStore.from_url(nowhere, check=False)
    with pytest.raises(StoreUnavailable):
        unchecked.create(1)
    # The URL's own socket_timeout is the one a Watch's blocking read must stay under.
    with pytest.raises(ValueError, match=r"below the socket timeout \(0.2 s\)"):
        RedisStore.from_url(f"{redis_url}?socket_timeout=0.2", block=0.5)
    token = RedisStore.from_url(redis_url).create(3)
    assert RedisStore.from_url(f"{redis_url}?socket_timeout=0.2").snapshot(token).value == 3

"""`remotecalc serve --store`: Redis with a password from the environment, and a store it cannot use."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from contracts import V1Calls, reason_of, rpc_error
from processes import Served
from redis_servers import RedisServer

PASSWORD = "correct horse battery staple"


def test_serve_on_a_redis_with_a_password_taken_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_server = RedisServer(tmp_path, extra=("--requirepass", PASSWORD))
    redis_server.start()
    try:
        monkeypatch.setenv("REMOTECALC_REDIS_PASSWORD", PASSWORD)
        with_password = Served("--port", "0", "--store", redis_server.url)
        monkeypatch.delenv("REMOTECALC_REDIS_PASSWORD")
        without = Served("--port", "0", "--store", redis_server.url)
        try:
            assert PASSWORD not in " ".join(map(str, with_password.process.args))
            with grpc.insecure_channel(with_password.address()) as channel:
                calls = V1Calls(channel)
                token = calls.create(20)
                assert calls.apply(token, "+", 22) == 42
            with grpc.insecure_channel(without.address()) as channel:
                error = rpc_error(lambda: V1Calls(channel).create(1))
                assert error.code() is grpc.StatusCode.UNAVAILABLE
                assert reason_of(error) == "STORE_UNAVAILABLE"
                assert "password" in (error.details() or "")
        finally:
            assert with_password.stop() == 0
            assert without.stop() == 0
    finally:
        redis_server.stop()


def test_serve_with_an_unknown_store_is_a_one_line_error() -> None:
    served = Served("--port", "0", "--store", "postgres://localhost/sessions")
    assert served.process.wait(timeout=30) == 2
    message = served.stderr_text()
    assert message.count("\n") == 1
    assert "unknown store 'postgres://localhost/sessions'" in message

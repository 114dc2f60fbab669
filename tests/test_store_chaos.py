"""Chaos, bounded: redis-server SIGKILLed and restarted under load; nothing acknowledged is lost or doubled."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from conftest import FakeClock
from contracts import V1Calls, reason_of, rpc_error
from redis_servers import RedisServer

import remotecalc
from remotecalc import OutcomeUnknown, RunningServer, start_server

THREADS = 4
KILLS = 12
# Operations acknowledged between two kills, so that every kill lands under load.
BETWEEN_KILLS = 25
WAIT = 30.0


class _Load:
    """Threads adding 1 to a session each, resolving every unknown outcome by its request id."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.changed = threading.Condition()
        self.acknowledged = [0] * THREADS
        self.unknown_codes: set[str] = set()
        self.unknown_since_kill = threading.Event()
        self.failures: list[BaseException] = []
        with remotecalc.connect(server) as client:
            self.tokens = [client.create(0).token for _ in range(THREADS)]
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(THREADS)]

    def total(self) -> int:
        """Operations acknowledged so far by all threads."""
        return sum(self.acknowledged)

    def _run(self, index: int) -> None:
        try:
            with remotecalc.connect(self.server, timeout=5) as client:
                session = client.session(self.tokens[index])
                while not self.stop.is_set():
                    try:
                        session.add(1)
                    except OutcomeUnknown as unknown:
                        self._resolve(unknown)
                    with self.changed:
                        self.acknowledged[index] += 1
                        self.changed.notify_all()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.failures.append(error)
            with self.changed:
                self.changed.notify_all()

    def _resolve(self, unknown: OutcomeUnknown) -> None:
        while True:
            self.unknown_codes.add(unknown.code_name)
            self.unknown_since_kill.set()
            try:
                unknown.resolve()
                return
            except OutcomeUnknown as again:
                unknown = again

    def wait_for(self, total: int) -> None:
        """Block until total operations are acknowledged (or a thread failed)."""
        with self.changed:
            reached = self.changed.wait_for(lambda: self.total() >= total or bool(self.failures), timeout=WAIT)
        assert reached and not self.failures, self.failures


@pytest.fixture
def redis_always(tmp_path: Path) -> RedisServer:
    """A redis-server of this test's own, appendfsync always, that the test kills."""
    return RedisServer(tmp_path, appendfsync="always")


def test_sigkill_of_redis_under_load_loses_and_doubles_nothing_acknowledged(redis_always: RedisServer) -> None:
    redis_always.start()
    try:
        with start_server(port=0, clock=FakeClock(), store=redis_always.url) as server:
            load = _Load(server)
            for thread in load.threads:
                thread.start()
            for _ in range(KILLS):
                load.wait_for(load.total() + BETWEEN_KILLS)
                load.unknown_since_kill.clear()
                redis_always.kill()
                assert load.unknown_since_kill.wait(WAIT), "no call noticed that Redis was down"
                redis_always.start()
            load.wait_for(load.total() + BETWEEN_KILLS)
            load.stop.set()
            for thread in load.threads:
                thread.join(WAIT)
            assert not load.failures, load.failures
            # While Redis was down the server said UNAVAILABLE (retryable), never UNKNOWN or INTERNAL.
            assert load.unknown_codes == {"UNAVAILABLE"}
            with remotecalc.connect(server) as client:
                for token, acknowledged in zip(load.tokens, load.acknowledged, strict=True):
                    state = client.session(token).state()
                    assert (state.value, state.step_count) == (acknowledged, acknowledged)
    finally:
        redis_always.stop()


def test_while_redis_is_down_every_call_is_unavailable_with_a_clear_reason(redis_always: RedisServer) -> None:
    redis_always.start()
    try:
        with (
            start_server(port=0, clock=FakeClock(), store=redis_always.url) as server,
            grpc.insecure_channel(server.address) as channel,
        ):
            calls = V1Calls(channel)
            token = calls.create(1)
            redis_always.kill()
            for call in (
                lambda: calls.create(2),
                lambda: calls.apply(token, "+", 1),
                lambda: calls.read(token),
                lambda: calls.close(token),
            ):
                error = rpc_error(call)
                assert error.code() is grpc.StatusCode.UNAVAILABLE, error.details()
                assert reason_of(error) == "STORE_UNAVAILABLE"
                assert "Redis" in (error.details() or "")
            redis_always.start()
            assert calls.apply(token, "+", 1) == 2
    finally:
        redis_always.stop()

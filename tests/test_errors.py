"""The error table, row by row, on both contracts: status code, reason, a short message, no change."""

from __future__ import annotations

import functools
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from conftest import FakeClock, free_port
from contracts import ArticleCalls, Calls, V1Calls, reason_of, rpc_error
from processes import Served

import remotecalc
from remotecalc import RunningServer, errors, start_server
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

# Words that only a leaked Python exception or traceback would put in a status message.
LEAKS = ("Traceback", 'File "', "Error", "Exception", "<", "\n")
MESSAGE_MAX = 120


@dataclass
class Env:
    """What a row may use: the contract under test, the server, its clock, and its own state."""

    calls: Calls
    server: RunningServer
    clock: FakeClock
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """One row of the error table: how to provoke it and what must come back."""

    name: str
    code: grpc.StatusCode
    reason: str
    fail: Callable[[Env, str], object]
    setup: Callable[[Env], None] = lambda env: None
    victim_value: float = 2.0
    contracts: tuple[str, ...] = ("article", "v1")


def _closed(env: Env) -> None:
    env.state["token"] = env.calls.create(1)
    env.calls.close(env.state["token"])


def _old(env: Env) -> None:
    env.state["token"] = env.calls.create(1)
    env.clock.advance(3000)


def _expire_and_apply(env: Env, victim: str) -> object:
    env.clock.advance(601)  # the old session is now idle 3601 s, the victim only 601 s
    return env.calls.apply(env.state["token"], "+", 1)


def _fill(env: Env) -> None:
    env.calls.create(1)  # with the victim, the server's two sessions are taken


ROWS = [
    Row(
        "unknown token",
        NOT_FOUND,
        "SESSION_NOT_FOUND",
        lambda env, v: env.calls.apply(secrets.token_urlsafe(16), "+", 1),
    ),
    Row(
        "closed token",
        NOT_FOUND,
        "SESSION_NOT_FOUND",
        lambda env, v: env.calls.apply(env.state["token"], "+", 1),
        _closed,
    ),
    Row(
        "closed token closed again",
        NOT_FOUND,
        "SESSION_NOT_FOUND",
        lambda env, v: env.calls.close(env.state["token"]),
        _closed,
    ),
    Row("expired token", NOT_FOUND, "SESSION_NOT_FOUND", _expire_and_apply, _old),
    Row("empty token", INVALID_ARGUMENT, "INVALID_TOKEN", lambda env, v: env.calls.apply("", "+", 1)),
    Row("malformed token", INVALID_ARGUMENT, "INVALID_TOKEN", lambda env, v: env.calls.apply(v[:-1] + "!", "+", 1)),
    Row("100 kB token", INVALID_ARGUMENT, "INVALID_TOKEN", lambda env, v: env.calls.apply("x" * 100_000, "+", 1)),
    Row("divide by zero", INVALID_ARGUMENT, "DIVISION_BY_ZERO", lambda env, v: env.calls.apply(v, "/", 0)),
    Row("NaN operand", INVALID_ARGUMENT, "INVALID_OPERAND", lambda env, v: env.calls.apply(v, "+", math.nan)),
    Row("infinite operand", INVALID_ARGUMENT, "INVALID_OPERAND", lambda env, v: env.calls.apply(v, "*", math.inf)),
    Row("-infinite operand", INVALID_ARGUMENT, "INVALID_OPERAND", lambda env, v: env.calls.apply(v, "-", -math.inf)),
    Row("NaN initial value", INVALID_ARGUMENT, "INVALID_OPERAND", lambda env, v: env.calls.create(math.nan)),
    Row("infinite initial value", INVALID_ARGUMENT, "INVALID_OPERAND", lambda env, v: env.calls.create(math.inf)),
    Row(
        "result not finite (1e308 * 10)",
        OUT_OF_RANGE,
        "RESULT_OUT_OF_RANGE",
        lambda env, v: env.calls.apply(v, "*", 10),
        victim_value=1e308,
    ),
    Row(
        "result beyond float32 (3e38 * 10)",
        OUT_OF_RANGE,
        "RESULT_OUT_OF_RANGE",
        lambda env, v: env.calls.apply(v, "*", 10),
        victim_value=3e38,
        contracts=("article",),
    ),
    Row(
        "Answer of a value beyond float32",
        OUT_OF_RANGE,
        "RESULT_OUT_OF_RANGE",
        lambda env, v: env.calls.close(v),
        victim_value=1e300,
        contracts=("article",),
    ),
    Row("too many live sessions", RESOURCE_EXHAUSTED, "TOO_MANY_SESSIONS", lambda env, v: env.calls.create(1), _fill),
]


@pytest.fixture(params=["sync", "aio"])
def capped_server(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server allowed two live sessions, on the test's fake clock, on each core."""
    with start_server(port=0, clock=clock, max_sessions=2, core=request.param) as running:
        yield running


def assert_short_and_clean(message: str | None) -> None:
    """A status message a user can read: short, one line, no Python internals."""
    assert message
    assert len(message) <= MESSAGE_MAX, message
    for leak in LEAKS:
        assert leak not in message, message


#: The rows a Redis-backed server answers too; idle expiry is Redis's TTL and the session count is
#: bounded by Redis's memory, so the fake clock and max_sessions do not reach them.
REDIS_ROWS = [row for row in ROWS if row.name not in ("expired token", "too many live sessions")]


@pytest.fixture
def redis_backed(redis_url: str, clock: FakeClock) -> Iterator[RunningServer]:
    """A server whose sessions live in the test run's redis-server."""
    with start_server(port=0, clock=clock, store=redis_url) as running:
        yield running


@pytest.mark.parametrize("contract", ["article", "v1"])
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_error_row(row: Row, contract: str, capped_server: RunningServer, clock: FakeClock) -> None:
    _check_row(row, contract, capped_server, clock, count_sessions=True)


@pytest.mark.parametrize("contract", ["article", "v1"])
@pytest.mark.parametrize("row", REDIS_ROWS, ids=[row.name for row in REDIS_ROWS])
def test_error_row_on_the_redis_store(row: Row, contract: str, redis_backed: RunningServer, clock: FakeClock) -> None:
    _check_row(row, contract, redis_backed, clock, count_sessions=False)


def _check_row(
    row: Row, contract: str, capped_server: RunningServer, clock: FakeClock, *, count_sessions: bool
) -> None:
    if contract not in row.contracts:
        # The v1 contract's doubles have no float32 limit: the same call succeeds there.
        row = Row(row.name, grpc.StatusCode.OK, "", row.fail, row.setup, row.victim_value)
    with grpc.insecure_channel(capped_server.address) as channel:
        v1 = V1Calls(channel)
        env = Env(ArticleCalls(channel) if contract == "article" else v1, capped_server, clock)
        row.setup(env)
        victim = v1.create(row.victim_value)
        v1.apply(victim, "*", 1)
        before = v1.read(victim)
        live = len(capped_server.engine) if count_sessions else 0
        if row.code is grpc.StatusCode.OK:
            row.fail(env, victim)
            return
        error = rpc_error(lambda: row.fail(env, victim))
        assert error.code() is row.code, error.details()
        assert_short_and_clean(error.details())
        assert reason_of(error) == row.reason
        assert v1.read(victim) == before
        if count_sessions:
            assert len(capped_server.engine) <= live


def test_article_contract_overflow_succeeds_through_v1(capped_server: RunningServer) -> None:
    with grpc.insecure_channel(capped_server.address) as channel:
        v1 = V1Calls(channel)
        token = v1.create(3e38)
        assert v1.apply(token, "*", 10) == 3e39
        assert v1.close(token) == 3e39


def test_a_watch_open_while_the_server_stops_ends_with_unavailable(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        v1 = V1Calls(channel)
        token = v1.create(1)
        stream = v1.stub.WatchSession(pb.WatchSessionRequest(token=token))
        assert next(stream).value == 1
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
        stopper.start()
        error = rpc_error(lambda: next(stream))
        stopper.join(timeout=30)
        assert not server.running
        assert error.code() is UNAVAILABLE, error.details()
        assert_short_and_clean(error.details())
        assert reason_of(error) == "SERVER_STOPPING"


@pytest.mark.parametrize("contract", ["article", "v1"])
def test_a_call_after_stop_is_unavailable(server: RunningServer, contract: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        calls: Calls = ArticleCalls(channel) if contract == "article" else V1Calls(channel)
        token = calls.create(1)
        server.stop()
        error = rpc_error(lambda: calls.apply(token, "+", 1))
        assert error.code() is UNAVAILABLE


def test_once_the_server_is_stopping_new_watches_are_refused_and_other_calls_finish(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        token = V1Calls(channel).create(1)
    server.engine.shutdown()  # what stop() does once the transport no longer takes new calls
    with grpc.insecure_channel(server.address) as channel:
        error = rpc_error(lambda: next(V1Calls(channel).stub.WatchSession(pb.WatchSessionRequest(token=token))))
        assert error.code() is UNAVAILABLE, error.details()
        assert reason_of(error) == "SERVER_STOPPING"
        # Anything else that reaches the engine now was already in flight: it completes.
        assert V1Calls(channel).apply(token, "+", 1) == 2
        assert ArticleCalls(channel).apply(token, "+", 1) == 3
        assert V1Calls(channel).close(V1Calls(channel).create(5)) == 5


class _GateClock:
    """A clock that, once armed, holds the next call that reads it until the test opens the gate."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.gate.wait(timeout=30)
        return 1_000.0


def _first_refusal(address: str) -> grpc.RpcError:
    """Make new calls until the server refuses one (stop() has begun), within a bounded time."""
    deadline = time.monotonic() + 10
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            try:
                V1Calls(channel).create(1)
            except grpc.RpcError as error:
                return error
    raise AssertionError("the server still took new calls 10 s after stop() began")


def test_a_call_in_flight_when_stop_begins_finishes_and_new_calls_are_unavailable_meanwhile() -> None:
    # Sync core only: on the aio core the engine runs on the event loop, which the held call would block.
    clock = _GateClock()
    server = start_server(port=0, clock=clock)
    with grpc.insecure_channel(server.address) as channel:
        v1 = V1Calls(channel)
        token = v1.create(1)
        clock.armed = True
        results: list[float] = []
        adder = threading.Thread(target=lambda: results.append(v1.apply(token, "+", 41)))
        adder.start()
        assert clock.entered.wait(timeout=10), "the Add never reached the engine"
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
        stopper.start()
        # While a call runs, the transport still takes new calls and the handlers refuse them:
        # never CANCELLED, which gRPC's core answers to the calls it holds when it shuts down.
        refusal = _first_refusal(server.address)
        assert refusal.code() is UNAVAILABLE, refusal.details()
        assert reason_of(refusal) == "SERVER_STOPPING" and refusal.details() == "the server is stopping"
        with grpc.insecure_channel(server.address) as other:
            for calls in (ArticleCalls(other), V1Calls(other)):
                again = rpc_error(lambda calls=calls: calls.apply(token, "+", 1))  # type: ignore[misc]
                assert (again.code(), reason_of(again)) == (UNAVAILABLE, "SERVER_STOPPING")
        assert server.running
        clock.gate.set()
        adder.join(timeout=10)
        stopper.join(timeout=30)
    assert results == [42]
    assert not server.running


def test_an_unset_or_unknown_operator_is_invalid_argument(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CalculatorStub(channel)
        token = V1Calls(channel).create(1)
        for operator in (pb.OPERATOR_UNSPECIFIED, 17):
            operation = pb.Operation(operator=pb.Operator.ValueType(operator), operand=1)
            request = pb.ApplyRequest(token=token, operation=operation)
            error = rpc_error(functools.partial(stub.Apply, request, timeout=10))
            assert error.code() is INVALID_ARGUMENT
            assert reason_of(error) == "INVALID_OPERAND"
            assert_short_and_clean(error.details())
        assert V1Calls(channel).read(token) == (1, 0, [])


def test_every_error_class_is_importable_from_remotecalc() -> None:
    classes = {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__
    }
    assert len(classes) > 30
    missing = sorted(name for name in classes if name not in remotecalc.__all__)
    assert missing == [], f"in remotecalc.errors but not remotecalc.__all__: {missing}"
    assert all(getattr(remotecalc, name) is cls for name, cls in classes.items())


def test_a_refused_connection_says_nothing_is_listening_there() -> None:
    port = free_port()
    with remotecalc.connect(f"127.0.0.1:{port}", timeout=2) as client, pytest.raises(remotecalc.Unavailable) as refused:
        client.create(0)
    assert str(refused.value).startswith(f"nothing is listening at 127.0.0.1:{port} (connection refused)")


def test_a_plaintext_server_killed_under_a_watch_is_told_as_a_lost_connection_not_tls() -> None:
    served = Served("--port", "0")
    heard: list[remotecalc.RemoteCalcError | None] = []
    try:
        address = served.address()
        with remotecalc.connect(address, timeout=1) as client:
            updates = iter(client.create(0).watch(on_resume=heard.append))
            assert next(updates).step_count == 0
            served.kill()  # SIGKILL
            with pytest.raises(remotecalc.Unavailable) as gone:
                next(updates)
    finally:
        served.kill()
    assert len(heard) == 1 and heard[0] is not None
    lost = str(heard[0])
    print(f"on_resume heard: {lost}\nthe watch ended with: {gone.value}")
    assert lost.startswith("the connection to the server was lost") and "TLS" not in lost
    assert str(gone.value).startswith(f"nothing is listening at {address}")

"""A call whose caller has gone (deadline passed, cancelled) changes nothing, and its retry applies once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType

import grpc
import pytest
from conftest import FakeClock
from idtools import uuid7

from remotecalc import Operator, RunningServer, start_server
from remotecalc.context import Call
from remotecalc.errors import CallerGone
from remotecalc.stores.memory import MemoryStore
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

ADD = Operator.ADD


def test_every_mutating_call_checks_its_caller_before_committing() -> None:
    engine = MemoryStore()
    token = engine.create(1)
    gone = lambda: False  # noqa: E731
    calls = [
        lambda: engine.create(5, call=Call(alive=gone)),
        lambda: engine.apply(token, ADD, 1, call=Call(alive=gone)),
        lambda: engine.apply_many(token, [(ADD, 1)] * 10, call=Call(alive=gone)),
        lambda: engine.close(token, call=Call(alive=gone)),
    ]
    for call in calls:
        with pytest.raises(CallerGone) as raised:
            call()
        assert raised.value.code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert len(engine) == 1
    assert engine.snapshot(token) == (token, 1.0, 0, (), 1.0)


def test_a_long_batch_stops_computing_once_its_caller_has_gone() -> None:
    engine = MemoryStore()
    token = engine.create(0)
    asked: list[int] = []

    def alive() -> bool:
        asked.append(1)
        return len(asked) < 2

    with pytest.raises(CallerGone):
        engine.apply_many(token, [(ADD, 1)] * 200_000, call=Call(alive=alive))
    assert len(asked) == 2  # asked again after the first chunk, and stopped there
    assert engine.snapshot(token).step_count == 0
    assert engine.apply_many(token, [(ADD, 1)] * 200_000, call=Call(alive=lambda: True)) == (200_000, 200_000)


class _GateLock:
    """A session lock the test holds shut, that tells when a handler is waiting on it."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self._lock = threading.Lock()

    def shut(self) -> None:
        """Hold the lock: handlers wait on it."""
        self._lock.acquire()

    def open(self) -> None:
        """Let the waiting handler in."""
        self._lock.release()

    def __enter__(self) -> bool:
        self.waiting.set()
        return self._lock.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()


@pytest.fixture(params=["sync", "aio"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A fresh server on the core named by the parameter."""
    running = start_server(port=0, core=request.param, clock=FakeClock())
    try:
        yield running
    finally:
        running.stop(grace=0)


def test_a_call_past_its_deadline_before_the_commit_changes_nothing_and_its_retry_applies_once(
    server: RunningServer,
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CalculatorStub(channel)
        token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
        gate = _GateLock()
        server.engine._sessions[token].lock = gate  # type: ignore[assignment]
        request = pb.ApplyRequest(
            token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=1), request_id=uuid7()
        )
        timeout = 0.3
        gate.shut()
        call = stub.Apply.future(request, timeout=timeout)
        assert gate.waiting.wait(10), "the handler never reached the session"
        arrived = time.time()
        with pytest.raises(grpc.RpcError) as raised:
            call.result(timeout=10)
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The server's own deadline runs from when the request arrived, a hair after the client's:
        # let that hair pass too (grpc's clock cannot be injected).
        threading.Event().wait(max(0.0, arrived + timeout - time.time()))
        gate.open()
        session = stub.GetSession(pb.GetSessionRequest(token=token), timeout=10).session
        assert (session.value, session.step_count) == (0, 0)
        first = stub.Apply(request, timeout=10)
        assert (first.value, first.step.number) == (1, 1)
        assert stub.Apply(request, timeout=10) == first
        assert stub.GetSession(pb.GetSessionRequest(token=token), timeout=10).session.step_count == 1


def test_calls_that_miss_their_deadline_are_resolved_by_a_retry_with_none_lost_and_none_doubled(
    server: RunningServer,
) -> None:
    """300,000-operation batches with 20-50 ms deadlines and Applies with 1 ms deadlines."""
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CalculatorStub(channel)
        token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
        big = pb.ApplyBatchRequest(
            token=token, operations=[pb.Operation(operator=pb.OPERATOR_ADD, operand=1)] * 300_000
        )
        one = pb.Operation(operator=pb.OPERATOR_ADD, operand=1)
        succeeded = 0
        unknown: list[tuple[object, object, int]] = []
        for deadline_ms in (20, 30, 40, 50):
            request = pb.ApplyBatchRequest()
            request.CopyFrom(big)
            request.request_id = uuid7()
            try:
                stub.ApplyBatch(request, timeout=deadline_ms / 1000)
                succeeded += 300_000
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
                unknown.append((stub.ApplyBatch, request, 300_000))
        for _ in range(300):
            request = pb.ApplyRequest(token=token, operation=one, request_id=uuid7())
            try:
                stub.Apply(request, timeout=0.001)
                succeeded += 1
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
                unknown.append((stub.Apply, request, 1))
        assert unknown, "no call missed its deadline: the test tried nothing"
        for method, request, steps in unknown:
            method(request, timeout=30)  # type: ignore[operator]
            method(request, timeout=30)  # type: ignore[operator]
            succeeded += steps
        session = stub.GetSession(pb.GetSessionRequest(token=token), timeout=10).session
        assert (session.step_count, session.value) == (succeeded, succeeded)

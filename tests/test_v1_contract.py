"""remotecalc.v1: 64-bit numbers, shared sessions, Watch, ApplyBatch and request-id retries."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from conftest import FakeClock
from contracts import ArticleCalls, V1Calls, reason_of, rpc_error, trailing

import remotecalc
from remotecalc import Client, DivisionByZero, InvalidOperand, OutOfRange, RunningServer, Step
from remotecalc.model import Operator
from remotecalc.v1 import calculator_pb2 as pb

ADD, SUBTRACT, MULTIPLY, DIVIDE = Operator.ADD, Operator.SUBTRACT, Operator.MULTIPLY, Operator.DIVIDE


#: For a test that reads the in-memory engine or ages sessions with the fake clock (Redis ages them by TTL).
memory_only = pytest.mark.parametrize("store_server", ["memory"], indirect=True)


@pytest.fixture
def server(store_server: RunningServer) -> RunningServer:
    """This module's server: each test runs on the in-memory store and on the Redis store."""
    return store_server


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    """A raw channel to the `server` fixture."""
    with grpc.insecure_channel(server.address) as opened:
        yield opened


def _wait_until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_v1_arithmetic_is_64_bit(client: Client) -> None:
    session = client.create(0.1)
    assert session.add(0.2) == 0.30000000000000004
    assert session.answer() == 0.30000000000000004


def test_a_session_made_by_the_article_contract_is_used_read_and_watched_through_v1(
    channel: grpc.Channel, client: Client
) -> None:
    article = ArticleCalls(channel)
    token = article.create(2)
    session = client.session(token)
    with session.watch() as watch:
        updates = iter(watch)
        assert next(updates).value == 2
        assert session.multiply(21) == 42
        assert article.apply(token, "+", 0.5) == 42.5
        assert next(updates).steps == (Step(1, MULTIPLY, 21, 42),)
        assert next(updates).steps == (Step(2, ADD, 0.5, 42.5),)
    assert [step.operator for step in session.history()] == [MULTIPLY, ADD]
    assert article.close(token) == 42.5
    with pytest.raises(remotecalc.SessionNotFound):
        session.value()


def test_a_session_made_by_v1_is_used_and_answered_through_the_article_contract(
    channel: grpc.Channel, client: Client
) -> None:
    article = ArticleCalls(channel)
    session = client.create(10)
    assert article.apply(session.token, "/", 4) == 2.5
    assert session.value() == 2.5
    assert article.close(session.token) == 2.5
    with pytest.raises(remotecalc.SessionNotFound):
        session.add(1)


def test_watch_delivers_every_change_in_order_then_closed(channel: grpc.Channel, client: Client) -> None:
    article = ArticleCalls(channel)
    session = client.create(1)
    session.add(1)
    received = []
    with session.watch() as watch:
        updates = iter(watch)
        received.append(next(updates))  # the watch is registered: every change from here on is seen
        session.add(2)
        article.apply(session.token, "*", 3)
        session.apply_many([("-", 1), ("/", 2)])
        session.state()  # a read is not a change
        assert session.answer() == 5.5
        received.extend(updates)
    assert received == [
        remotecalc.Update(session.token, 2, 1, (), False),
        remotecalc.Update(session.token, 4, 2, (Step(2, ADD, 2, 4),), False),
        remotecalc.Update(session.token, 12, 3, (Step(3, MULTIPLY, 3, 12),), False),
        remotecalc.Update(session.token, 5.5, 5, (Step(4, SUBTRACT, 1, 11), Step(5, DIVIDE, 2, 5.5)), False),
        remotecalc.Update(session.token, 5.5, 5, (), True),
    ]


@memory_only
def test_watch_ends_closed_when_the_session_expires(server: RunningServer, client: Client, clock: FakeClock) -> None:
    session = client.create(7)
    with session.watch() as watch:
        updates = iter(watch)
        assert next(updates).value == 7
        clock.advance(3601)
        client.create(0)  # any call lets the server sweep out idle sessions
        rest = list(updates)
    assert [(update.value, update.closed) for update in rest] == [(7, True)]


@memory_only
def test_cancelling_a_watch_ends_it_and_the_server_lets_go(server: RunningServer, client: Client) -> None:
    session = client.create(0)
    watch = session.watch()
    updates = iter(watch)
    assert next(updates).value == 0
    finished = threading.Event()

    def drain() -> None:
        for _ in updates:
            pass
        finished.set()

    threading.Thread(target=drain, daemon=True).start()
    watch.cancel()
    assert finished.wait(timeout=10), "the iteration did not end after cancel()"
    live = server.engine._sessions[session.token]
    assert _wait_until(lambda: not live.watchers), "the server kept the cancelled watcher"
    assert session.add(1) == 1


def test_a_raw_watch_cancel_ends_the_stream_with_cancelled(channel: grpc.Channel) -> None:
    v1 = V1Calls(channel)
    token = v1.create(3)
    stream = v1.stub.WatchSession(pb.WatchSessionRequest(token=token))
    assert next(stream).value == 3
    stream.cancel()
    assert rpc_error(lambda: next(stream)).code() is grpc.StatusCode.CANCELLED


@pytest.mark.parametrize(
    ("operations", "index", "error", "code"),
    [
        ([("+", 1), ("*", 2), ("/", 0), ("+", 5)], 2, DivisionByZero, grpc.StatusCode.INVALID_ARGUMENT),
        ([("-", 3), ("*", 1e308), ("*", 10)], 2, OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
        ([("+", math.nan), ("+", 1)], 0, InvalidOperand, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_apply_batch_is_all_or_nothing(
    client: Client, operations: list[tuple[str, float]], index: int, error: type[Exception], code: grpc.StatusCode
) -> None:
    session = client.create(3)
    session.add(1)
    before = session.state()
    with pytest.raises(error) as raised:
        session.apply_many(operations)
    assert raised.value.code is code  # type: ignore[attr-defined]
    assert raised.value.index == index  # type: ignore[attr-defined]
    assert f"operation {index}" in str(raised.value)
    assert session.state() == before


def test_a_failed_batch_names_its_index_in_trailing_metadata(channel: grpc.Channel) -> None:
    v1 = V1Calls(channel)
    token = v1.create(1)
    operations = [pb.Operation(operator=pb.OPERATOR_ADD, operand=1), pb.Operation(operator=pb.OPERATOR_DIVIDE)]
    error = rpc_error(lambda: v1.stub.ApplyBatch(pb.ApplyBatchRequest(token=token, operations=operations)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    metadata = trailing(error)
    assert metadata["remotecalc-operation-index"] == "1"
    assert metadata["remotecalc-error-reason"] == "DIVISION_BY_ZERO"
    assert v1.read(token) == (1, 0, [])


def test_a_successful_batch_applies_everything_in_order(client: Client) -> None:
    session = client.create(5)
    assert session.apply_many([("+", 1), ("*", 3), ("-", 2), ("/", 4)]) == 4
    state = session.state()
    assert state.step_count == 4
    assert state.history == (
        Step(1, ADD, 1, 6),
        Step(2, MULTIPLY, 3, 18),
        Step(3, SUBTRACT, 2, 16),
        Step(4, DIVIDE, 4, 4),
    )


def _rid() -> str:
    return uuid.uuid4().hex


@memory_only
def test_create_session_with_a_repeated_request_id_creates_once(server: RunningServer, channel: grpc.Channel) -> None:
    stub = V1Calls(channel).stub
    request = pb.CreateSessionRequest(value=4, request_id=_rid())
    first = stub.CreateSession(request, timeout=10)
    second = stub.CreateSession(request, timeout=10)
    assert first == second
    assert len(server.engine) == 1


def test_apply_with_a_repeated_request_id_applies_once(channel: grpc.Channel) -> None:
    v1 = V1Calls(channel)
    token = v1.create(1)
    request = pb.ApplyRequest(
        token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=2), request_id=_rid()
    )
    first = v1.stub.Apply(request, timeout=10)
    second = v1.stub.Apply(request, timeout=10)
    assert first == second
    assert first.value == 3 and first.step.number == 1
    assert v1.read(token)[:2] == (3, 1)


def test_apply_batch_with_a_repeated_request_id_applies_once(channel: grpc.Channel) -> None:
    v1 = V1Calls(channel)
    token = v1.create(1)
    operations = [
        pb.Operation(operator=pb.OPERATOR_MULTIPLY, operand=10),
        pb.Operation(operator=pb.OPERATOR_ADD, operand=1),
    ]
    request = pb.ApplyBatchRequest(token=token, operations=operations, request_id=_rid())
    first = v1.stub.ApplyBatch(request, timeout=10)
    second = v1.stub.ApplyBatch(request, timeout=10)
    assert first == second == pb.ApplyBatchResponse(value=11, step_count=2)
    assert v1.read(token)[:2] == (11, 2)


def test_close_session_with_a_repeated_request_id_answers_the_retry(channel: grpc.Channel) -> None:
    v1 = V1Calls(channel)
    token = v1.create(6)
    v1.apply(token, "+", 1)
    request = pb.CloseSessionRequest(token=token, request_id=_rid())
    first = v1.stub.CloseSession(request, timeout=10)
    second = v1.stub.CloseSession(request, timeout=10)
    assert first == second == pb.CloseSessionResponse(value=7, step_count=1)
    assert rpc_error(lambda: v1.close(token)).code() is grpc.StatusCode.NOT_FOUND


def test_a_request_id_reused_for_a_different_request_is_invalid(channel: grpc.Channel) -> None:
    """Within one session's scope; a CreateSession has a scope of its own (tests/test_exactly_once.py)."""
    v1 = V1Calls(channel)
    token = v1.create(1)
    rid = _rid()
    add = pb.Operation(operator=pb.OPERATOR_ADD, operand=1)
    v1.stub.Apply(pb.ApplyRequest(token=token, operation=add, request_id=rid), timeout=10)
    different = [
        lambda: v1.stub.Apply(
            pb.ApplyRequest(token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=2), request_id=rid)
        ),
        lambda: v1.stub.ApplyBatch(pb.ApplyBatchRequest(token=token, operations=[add], request_id=rid)),
        lambda: v1.stub.CloseSession(pb.CloseSessionRequest(token=token, request_id=rid)),
    ]
    for call in different:
        error = rpc_error(call)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert reason_of(error) == "REQUEST_ID_REUSED"
    assert v1.read(token)[:2] == (2, 1)


def test_a_session_remembers_the_value_it_started_with(client: Client) -> None:
    """GetSession carries the initial value, so a reader that attaches late can draw step 0."""
    session = client.create(2.5)
    session.apply_many([("+", 1), ("*", 4)])
    state = session.state()
    assert (state.initial_value, state.value, state.step_count) == (2.5, 14.0, 2)

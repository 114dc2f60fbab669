"""Exactly-once: a request with an id is applied at most once, within a stated time window.

The engine on its own with injected clocks, then over the wire on both cores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import FakeClock
from contracts import reason_of, rpc_error
from idtools import WallClock, uuid4, uuid7

from remotecalc import DivisionByZero, InvalidArgument, Operator, RequestIdReused, RunningServer, start_server
from remotecalc.context import Call
from remotecalc.errors import CallerGone, RequestExpired, RequestIdFromTheFuture, RequestLogFull
from remotecalc.stores.memory import MemoryStore
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

ADD, MULTIPLY, DIVIDE = Operator.ADD, Operator.MULTIPLY, Operator.DIVIDE


def _engine(wall: WallClock, **options: float) -> MemoryStore:
    return MemoryStore(wall_clock=wall, clock=FakeClock(), **options)  # type: ignore[arg-type]


# -- the exact request ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ([(ADD, -1.0)], [(ADD, -2.0)]),  # hash(-1.0) == hash(-2.0) in CPython
        ([(ADD, 1.0)], [(ADD, 2.0**61)]),  # hash(1.0) == hash(2.0**61)
        ([(MULTIPLY, 0.0)], [(MULTIPLY, -0.0)]),  # equal as floats, different bits
        ([(ADD, 1.0), (ADD, 2.0)], [(ADD, 2.0), (ADD, 1.0)]),
        ([(ADD, 1.0)], [(ADD, 1.0), (ADD, 1.0)]),
    ],
)
def test_a_batch_that_differs_in_any_bit_is_refused_not_answered(
    first: list[tuple[int, float]], second: list[tuple[int, float]]
) -> None:
    engine = _engine(WallClock())
    token = engine.create(10)
    rid = uuid7(WallClock().now)
    reply = engine.apply_many(token, first, call=Call(request_id=rid))
    with pytest.raises(RequestIdReused):
        engine.apply_many(token, second, call=Call(request_id=rid))
    assert engine.apply_many(token, first, call=Call(request_id=rid)) == reply
    assert engine.snapshot(token).step_count == len(first)


def test_apply_by_zero_and_by_minus_zero_are_different_requests() -> None:
    wall = WallClock()
    engine = _engine(wall)
    token = engine.create(5)
    rid = uuid7(wall.now)
    assert engine.apply(token, MULTIPLY, 0.0, call=Call(request_id=rid)).result == 0.0
    with pytest.raises(RequestIdReused):
        engine.apply(token, MULTIPLY, -0.0, call=Call(request_id=rid))
    with pytest.raises(RequestIdReused):
        engine.apply(token, ADD, 0.0, call=Call(request_id=rid))
    assert engine.snapshot(token).step_count == 1


@pytest.mark.parametrize("bad", ["1", "retry-1", "g" * 32, "0" * 31, "0" * 33, "{" + "0" * 32 + "}", "0" * 40])
def test_a_request_id_that_is_not_a_uuid_is_invalid_and_changes_nothing(bad: str) -> None:
    engine = _engine(WallClock())
    token = engine.create(1)
    with pytest.raises(InvalidArgument, match="must be a UUID"):
        engine.apply(token, ADD, 1, call=Call(request_id=bad))
    with pytest.raises(InvalidArgument, match="must be a UUID"):
        engine.create(1, call=Call(request_id=bad))
    assert engine.snapshot(token).step_count == 0
    assert len(engine) == 1


# -- the time window ----------------------------------------------------------------


def test_a_retry_is_answered_whatever_the_traffic_in_between() -> None:
    wall = WallClock()
    engine = _engine(wall)
    token = engine.create(0)
    rid = uuid4()
    first = engine.apply(token, ADD, 1, call=Call(request_id=rid))
    other = engine.create(0)
    for _ in range(20_000):  # twice the old count-based log: it would have forgotten rid
        engine.apply(other, ADD, 1, call=Call(request_id=uuid4()))
    wall.advance(engine.requests.window - 1)
    assert engine.apply(token, ADD, 1, call=Call(request_id=rid)) == first
    assert engine.snapshot(token).step_count == 1


def test_a_uuid7_retry_older_than_the_window_is_refused_never_applied() -> None:
    wall = WallClock()
    engine = _engine(wall, request_window=60)
    token = engine.create(0)
    rid = uuid7(wall.now)
    engine.apply(token, ADD, 1, call=Call(request_id=rid))
    wall.advance(61)
    engine.sweep()
    assert engine.apply(token, ADD, 1, call=Call(request_id=rid)).number == 1  # kept for the skew too: answered
    wall.advance(60)
    engine.sweep()
    assert len(engine.requests) == 0  # forgotten: the memory is back
    with pytest.raises(RequestExpired, match="past the 60 s retry window") as raised:
        engine.apply(token, ADD, 1, call=Call(request_id=rid))
    assert len(raised.value.message) <= 120  # a status message is one short line
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.reason == "REQUEST_EXPIRED"
    assert engine.snapshot(token).step_count == 1


def test_a_new_request_dated_before_the_window_is_refused() -> None:
    wall = WallClock()
    engine = _engine(wall, request_window=60)
    token = engine.create(0)
    with pytest.raises(RequestExpired):
        engine.apply(token, ADD, 1, call=Call(request_id=uuid7(wall.now - 61)))
    with pytest.raises(RequestExpired):
        engine.create(0, call=Call(request_id=uuid7(wall.now - 61)))
    assert engine.apply(token, ADD, 1, call=Call(request_id=uuid7(wall.now - 59))).number == 1
    assert len(engine) == 1


def test_an_id_dated_beyond_the_clock_skew_is_refused() -> None:
    wall = WallClock()
    engine = _engine(wall, request_skew=10)
    token = engine.create(0)
    with pytest.raises(RequestIdFromTheFuture, match="ahead of the server's clock") as raised:
        engine.apply(token, ADD, 1, call=Call(request_id=uuid7(wall.now + 10**9)))
    assert len(raised.value.message) <= 120
    with pytest.raises(RequestIdFromTheFuture):
        engine.apply(token, ADD, 1, call=Call(request_id=uuid7(wall.now + 11)))
    assert engine.apply(token, ADD, 1, call=Call(request_id=uuid7(wall.now + 9))).number == 1


def test_a_wall_clock_set_back_never_makes_a_forgotten_id_new_again() -> None:
    wall = WallClock()
    engine = _engine(wall, request_window=60, request_skew=0)
    token = engine.create(0)
    rid = uuid7(wall.now)
    engine.apply(token, ADD, 1, call=Call(request_id=rid))
    wall.advance(61)
    engine.sweep()
    assert len(engine.requests) == 0
    wall.advance(-3600)  # someone set the clock back an hour
    with pytest.raises(RequestExpired):
        engine.apply(token, ADD, 1, call=Call(request_id=rid))
    assert engine.snapshot(token).step_count == 1


def test_a_uuid4_is_remembered_for_the_window_then_forgotten_by_the_sweep() -> None:
    wall = WallClock()
    engine = _engine(wall, request_window=60, request_skew=5)
    token = engine.create(0)
    rid = uuid4()
    engine.apply(token, ADD, 1, call=Call(request_id=rid))
    wall.advance(65)
    engine.sweep()
    assert engine.apply(token, ADD, 1, call=Call(request_id=rid)).number == 1  # still answered at window + skew
    wall.advance(1)
    assert engine.sweep() == 0 and len(engine.requests) == 0


def test_a_full_log_refuses_new_ids_but_still_answers_the_ones_it_holds() -> None:
    wall = WallClock()
    engine = _engine(wall, max_requests=3)
    token = engine.create(0)
    ids = [uuid4() for _ in range(3)]
    replies = [engine.apply(token, ADD, 1, call=Call(request_id=rid)) for rid in ids]
    with pytest.raises(RequestLogFull) as raised:
        engine.apply(token, ADD, 1, call=Call(request_id=uuid4()))
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [engine.apply(token, ADD, 1, call=Call(request_id=rid)) for rid in ids] == replies
    assert engine.snapshot(token).step_count == 3
    wall.advance(engine.requests.window + engine.requests.skew + 1)
    assert engine.apply(token, ADD, 1, call=Call(request_id=uuid4())).number == 4  # room again once they age out


# -- scopes -----------------------------------------------------------------------------


def test_an_id_is_scoped_to_its_session_and_creates_have_their_own_scope() -> None:
    wall = WallClock()
    engine = _engine(wall)
    one, two = engine.create(0), engine.create(0)
    rid = uuid7(wall.now)
    assert engine.apply(one, ADD, 1, call=Call(request_id=rid)).number == 1
    assert engine.apply(two, ADD, 5, call=Call(request_id=rid)).result == 5
    token = engine.create(7, call=Call(request_id=rid))
    assert token not in (one, two)
    assert engine.create(7, call=Call(request_id=rid)) == token
    assert (engine.snapshot(one).step_count, engine.snapshot(two).step_count) == (1, 1)


def test_a_create_replayed_with_a_different_value_is_refused_not_handed_the_token() -> None:
    wall = WallClock()
    engine = _engine(wall)
    rid = uuid7(wall.now)
    mine = engine.create(1, call=Call(request_id=rid))
    with pytest.raises(RequestIdReused):
        engine.create(2, call=Call(request_id=rid))
    honest = [engine.create(1, call=Call(request_id=uuid7(wall.now))) for _ in range(50)]
    assert len({mine, *honest}) == 51
    assert len(engine) == 51


def test_a_close_retried_after_the_close_gets_the_first_reply() -> None:
    wall = WallClock()
    engine = _engine(wall)
    token = engine.create(2)
    engine.apply(token, MULTIPLY, 21)
    rid = uuid7(wall.now)
    assert engine.close(token, call=Call(request_id=rid)) == (42.0, 1)
    assert engine.close(token, call=Call(request_id=rid)) == (42.0, 1)
    assert len(engine) == 0


# -- failures leave nothing to answer with ------------------------------------------


def test_a_failed_request_is_not_remembered_so_its_retry_runs() -> None:
    wall = WallClock()
    engine = _engine(wall)
    token = engine.create(6)
    rid = uuid7(wall.now)
    with pytest.raises(DivisionByZero):
        engine.apply(token, DIVIDE, 0, call=Call(request_id=rid))
    with pytest.raises(CallerGone):
        engine.apply(token, ADD, 1, call=Call(request_id=rid, alive=lambda: False))
    assert engine.snapshot(token).step_count == 0
    assert engine.apply(token, ADD, 1, call=Call(request_id=rid)).result == 7
    assert engine.apply(token, ADD, 1, call=Call(request_id=rid)).result == 7
    assert engine.snapshot(token).step_count == 1


def test_concurrent_copies_of_one_request_apply_it_once() -> None:
    wall = WallClock()
    engine = _engine(wall)
    token = engine.create(0)
    rid = uuid7(wall.now)
    start = threading.Barrier(8)
    replies: list[tuple[float, int]] = []

    def send() -> None:
        start.wait()
        replies.append(engine.apply_many(token, [(ADD, 1)] * 1000, call=Call(request_id=rid)))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert replies == [(1000.0, 1000)] * 8
    assert engine.snapshot(token).step_count == 1000


# -- over the wire, both cores --------------------------------------------------------


@pytest.fixture(params=["sync", "aio"])
def stub(request: pytest.FixtureRequest) -> Iterator[pb_grpc.CalculatorStub]:
    """A raw v1 stub to a fresh server on the core named by the parameter."""
    running: RunningServer = start_server(port=0, core=request.param, clock=FakeClock())
    try:
        with grpc.insecure_channel(running.address) as channel:
            yield pb_grpc.CalculatorStub(channel)
    finally:
        running.stop(grace=0)


def _batch(token: str, operand: float, rid: str) -> pb.ApplyBatchRequest:
    return pb.ApplyBatchRequest(
        token=token, operations=[pb.Operation(operator=pb.OPERATOR_ADD, operand=operand)], request_id=rid
    )


def test_over_the_wire_colliding_batches_and_ids_out_of_window(stub: pb_grpc.CalculatorStub) -> None:
    token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
    rid = uuid7()
    assert stub.ApplyBatch(_batch(token, -1.0, rid), timeout=10).value == -1
    error = rpc_error(lambda: stub.ApplyBatch(_batch(token, -2.0, rid), timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and reason_of(error) == "REQUEST_ID_REUSED"
    stale = uuid7(time.time() - 3600)
    error = rpc_error(lambda: stub.ApplyBatch(_batch(token, 5.0, stale), timeout=10))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert reason_of(error) == "REQUEST_EXPIRED"
    assert "window" in error.details()
    error = rpc_error(lambda: stub.ApplyBatch(_batch(token, 5.0, "1"), timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "UUID" in error.details()
    session = stub.GetSession(pb.GetSessionRequest(token=token), timeout=10).session
    assert (session.value, session.step_count) == (-1, 1)


def test_over_the_wire_a_create_id_is_scoped_to_creates(stub: pb_grpc.CalculatorStub) -> None:
    rid = uuid7()
    first = stub.CreateSession(pb.CreateSessionRequest(value=3, request_id=rid), timeout=10).session.token
    again = stub.CreateSession(pb.CreateSessionRequest(value=3, request_id=rid), timeout=10).session.token
    assert again == first
    error = rpc_error(lambda: stub.CreateSession(pb.CreateSessionRequest(value=4, request_id=rid), timeout=10))
    assert reason_of(error) == "REQUEST_ID_REUSED"
    error = rpc_error(lambda: stub.CreateSession(pb.CreateSessionRequest(value=3, request_id="1"), timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT

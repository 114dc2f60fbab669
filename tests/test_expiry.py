"""Idle expiry runs in a background sweeper, off the request path; a watch on an expired session ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from conftest import FakeClock

from remotecalc import Operator, RunningServer, SessionNotFound, start_server
from remotecalc.stores.memory import MemoryStore
from remotecalc.sweeper import Sweeper
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

ADD = Operator.ADD


class Ticks:
    """The sweeper's wait, driven by the test: sweep() lets exactly one sweep run, and waits for it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waits = 0
        self._seen = 0
        self._allowed = 0
        self._stopping = False
        self.periods: list[float] = []

    def wait(self, seconds: float) -> bool:
        """What the sweeper blocks on between sweeps; True tells it to stop."""
        with self._condition:
            self.periods.append(seconds)
            self._waits += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._allowed > 0 or self._stopping)
            if self._stopping:
                return True
            self._allowed -= 1
            return False

    def sweep(self) -> None:
        """Let one sweep run and return once it has finished."""
        with self._condition:
            assert self._condition.wait_for(lambda: self._waits > self._seen, 10), "the sweeper never waited"
            self._seen = self._waits
            self._allowed += 1
            self._condition.notify_all()
            assert self._condition.wait_for(lambda: self._waits > self._seen, 10), "the sweep never finished"

    def stop(self) -> None:
        """Let the sweeper's thread end."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()


@pytest.fixture
def ticks() -> Iterator[Ticks]:
    """A sweeper wait to inject, released when the test ends."""
    driven = Ticks()
    yield driven
    driven.stop()


def test_the_sweeper_expires_idle_sessions_in_the_background_and_ends_their_watches(ticks: Ticks) -> None:
    clock = FakeClock()
    engine = MemoryStore(idle_timeout=10, clock=clock, sweep_every=2.5, sweep_wait=ticks.wait)
    engine.start()
    idle, busy = engine.create(1), engine.create(2)
    watcher = engine.watch(idle)
    clock.advance(5)
    engine.apply(busy, ADD, 1)
    clock.advance(6)
    ticks.sweep()
    assert len(engine) == 1
    assert [(u.value, u.closed) for u in watcher] == [(1, False), (1, True)]
    assert engine.snapshot(busy).value == 3
    with pytest.raises(SessionNotFound):
        engine.snapshot(idle)
    assert set(ticks.periods) == {2.5}
    ticks.stop()
    engine.shutdown()
    assert not engine.sweeper.running


def test_no_call_waits_on_a_sweep_calls_leave_idle_sessions_to_the_sweeper() -> None:
    clock = FakeClock()
    engine = MemoryStore(idle_timeout=10, clock=clock)
    idle = [engine.create(0) for _ in range(100)]
    busy = engine.create(0)
    watcher = engine.watch(idle[0])
    clock.advance(5)
    engine.apply(busy, ADD, 1)
    clock.advance(6)
    for _ in range(100):
        engine.apply(busy, ADD, 1)
    engine.create(0)
    assert len(engine) == 102  # nothing was swept by the calls
    assert watcher.backlog == 1  # and the watch is still open, waiting for the sweep
    assert engine.sweep() == 100
    assert len(engine) == 2
    assert [u.closed for u in watcher] == [False, True]


def test_a_sweep_expires_by_last_use_not_by_creation_order() -> None:
    clock = FakeClock()
    engine = MemoryStore(idle_timeout=10, clock=clock)
    tokens = [engine.create(n) for n in range(10)]
    clock.advance(6)
    for token in tokens[::2]:  # the even ones are used later than the odd ones
        engine.apply(token, ADD, 1)
    clock.advance(5)
    assert engine.sweep() == 5
    assert sorted(engine.snapshot(token).value for token in tokens[::2]) == [1, 3, 5, 7, 9]
    for token in tokens[1::2]:
        with pytest.raises(SessionNotFound):
            engine.snapshot(token)
    clock.advance(6)
    assert engine.sweep() == 5 and len(engine) == 0


def test_a_full_server_still_makes_room_from_expired_sessions_at_once() -> None:
    clock = FakeClock()
    engine = MemoryStore(max_sessions=3, idle_timeout=10, clock=clock)
    for _ in range(3):
        engine.create(0)
    clock.advance(11)
    engine.create(0)
    assert len(engine) == 1


def test_the_sweeper_refuses_a_period_that_is_not_positive() -> None:
    with pytest.raises(ValueError):
        Sweeper(lambda: None, 0)
    with pytest.raises(ValueError):
        Sweeper(lambda: None, float("nan"))


@pytest.fixture(params=["sync", "aio"])
def server(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RunningServer]:
    """A fresh server on the core named by the parameter, its engine on the test's clock."""
    running = start_server(port=0, core=request.param, clock=clock, idle_timeout=60)
    try:
        yield running
    finally:
        running.stop(grace=0)


def test_a_watch_over_the_wire_ends_at_the_first_sweep_after_its_session_expired(
    server: RunningServer, clock: FakeClock
) -> None:
    assert server.engine.sweeper.running, "the server did not start its sweeper"
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CalculatorStub(channel)
        token = stub.CreateSession(pb.CreateSessionRequest(value=4), timeout=10).session.token
        watch = stub.WatchSession(pb.WatchSessionRequest(token=token), timeout=30)
        first = next(watch)
        assert (first.value, first.closed) == (4, False)
        clock.advance(61)
        server.engine.sweep()  # what the sweeper thread does once a period
        last = next(watch)
        assert (last.value, last.closed) == (4, True)
        assert list(watch) == []
    server.stop(grace=0)
    assert not server.engine.sweeper.running

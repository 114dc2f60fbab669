"""A watcher that does not read costs a bounded number of steps, and hears it fell behind on its next read."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest
from contracts import reason_of
from processes import Served

from remotecalc import Operator, WatcherTooSlow
from remotecalc.stores.memory import MemoryStore
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

ADD, SUBTRACT = Operator.ADD, Operator.SUBTRACT
BATCH = [(ADD, 1.0), (SUBTRACT, 1.0)] * 500


def test_a_watcher_that_never_reads_holds_at_most_its_backlog_in_steps_whatever_the_batches() -> None:
    engine = MemoryStore(watch_backlog=10_000)
    token = engine.create(0)
    watcher = engine.watch(token)
    most = 0
    for _ in range(100):
        engine.apply_many(token, BATCH)
        most = max(most, watcher.backlog)
    assert most <= 10_000
    assert watcher.backlog == 0  # ended: the unread updates were dropped at once
    with pytest.raises(WatcherTooSlow, match="10000 steps behind") as raised:
        next(iter(watcher))  # the very next read, not after reading a backlog
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert engine.apply_many(token, BATCH) == (0.0, 101_000)  # the session goes on without it


def test_a_watcher_that_keeps_up_sees_every_step_of_big_batches() -> None:
    engine = MemoryStore(watch_backlog=2_500)
    token = engine.create(0)
    watcher = engine.watch(token)
    updates = iter(watcher)
    assert next(updates).step_count == 0
    seen = 0
    for _ in range(50):
        engine.apply_many(token, BATCH)
        engine.apply_many(token, BATCH)
        seen += len(next(updates).steps) + len(next(updates).steps)
    assert seen == 100_000
    watcher.cancel()


def test_an_update_bigger_than_the_backlog_still_reaches_a_watcher_that_has_read_everything() -> None:
    engine = MemoryStore(watch_backlog=10, history_limit=1000)
    token = engine.create(0)
    updates = iter(engine.watch(token))
    next(updates)
    engine.apply_many(token, BATCH)
    assert len(next(updates).steps) == 1000
    engine.apply_many(token, BATCH)
    engine.apply(token, ADD, 1)
    with pytest.raises(WatcherTooSlow):
        next(updates)


@pytest.fixture(params=["sync", "aio"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, psutil.Process]]:
    """`remotecalc serve` on a free port in a child process, on the core named by the parameter."""
    server = Served("--port", "0", "--core", request.param)
    try:
        yield server.address(), psutil.Process(server.process.pid)
    finally:
        server.stop()


def test_a_non_reading_watcher_under_1000_op_batches_keeps_the_servers_memory_bounded(
    served: tuple[str, psutil.Process],
) -> None:
    address, process = served
    operations = [pb.Operation(operator=int(op), operand=operand) for op, operand in BATCH]  # type: ignore[arg-type]
    with grpc.insecure_channel(address) as writer, grpc.insecure_channel(address) as reader:
        stub = pb_grpc.CalculatorStub(writer)
        token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
        batch = pb.ApplyBatchRequest(token=token, operations=operations)
        for _ in range(20):  # warm up: the server's buffers and caches as they will be
            stub.ApplyBatch(batch, timeout=10)
        watch = pb_grpc.CalculatorStub(reader).WatchSession(pb.WatchSessionRequest(token=token), timeout=60)
        assert next(watch).step_count == 20_000
        before = process.memory_info().rss
        grown = 0
        for _ in range(800):  # 800,000 steps: about 150 MB when every update was kept
            stub.ApplyBatch(batch, timeout=10)
            grown = max(grown, process.memory_info().rss - before)
        assert grown < 40 * 2**20, f"the server grew {grown / 2**20:.0f} MB for one watcher that does not read"
        read = 0
        with pytest.raises(grpc.RpcError) as raised:
            for _ in watch:
                read += 1
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(raised.value) == "WATCHER_TOO_SLOW"
        # First come the messages already in gRPC's flow-control window (a few MB), then the error:
        # not the 800 updates of a backlog kept whole.
        assert read < 400, f"the watcher was told only after reading {read} of 800 updates"

"""Measurements against a running server, shared by the benchmark and notebook 5.

From a notebook in notebooks/ (the repository's root is its parent):

    import sys; sys.path.insert(0, "..")
    from benchmarks.measure import measure_batches, measure_unary_latency
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc

from remotecalc.article import calc_pb2, calc_pb2_grpc
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

__all__ = [
    "BATCH_SIZES",
    "batch_request",
    "channel",
    "close_channels",
    "measure_apply_latency",
    "measure_apply_rate",
    "measure_batches",
    "measure_sequence",
    "measure_unary_latency",
    "percentile",
]

#: The batch sizes of the benchmark: operations per ApplyBatch call.
BATCH_SIZES = (1, 10, 100, 1_000, 10_000)

# Add, subtract, multiply and divide by one: every operator runs and the value stays put.
_CYCLE = ((pb.OPERATOR_ADD, 1.0), (pb.OPERATOR_SUBTRACT, 1.0), (pb.OPERATOR_MULTIPLY, 1.0), (pb.OPERATOR_DIVIDE, 1.0))

_channels: dict[str, grpc.Channel] = {}
_channels_lock = threading.Lock()


def channel(address: str) -> grpc.Channel:
    """One shared channel per address, connected once, so that no measurement pays for connecting."""
    with _channels_lock:
        found = _channels.get(address)
        if found is None:
            found = _channels[address] = grpc.insecure_channel(address)
            grpc.channel_ready_future(found).result(timeout=10)
        return found


def close_channels() -> None:
    """Close the shared channels, before the servers they lead to stop."""
    with _channels_lock:
        for open_channel in _channels.values():
            open_channel.close()
        _channels.clear()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of the values lie (nearest rank); 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def batch_request(token: str, size: int) -> pb.ApplyBatchRequest:
    """An ApplyBatch request of `size` operations that leaves the session's value unchanged."""
    operations = [pb.Operation(operator=_CYCLE[i % 4][0], operand=_CYCLE[i % 4][1]) for i in range(size)]
    return pb.ApplyBatchRequest(token=token, operations=operations)


def measure_batches(address: str, sizes: Sequence[int] = BATCH_SIZES, seconds: float = 1.0) -> list[dict[str, float]]:
    """Operations per second through ApplyBatch for each batch size, with each call's latency."""
    stub = pb_grpc.CalculatorStub(channel(address))
    rows = []
    for size in sizes:
        token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
        request = batch_request(token, size)
        stub.ApplyBatch(request, timeout=30)
        latencies = []
        started = time.perf_counter()
        while True:
            call_started = time.perf_counter()
            stub.ApplyBatch(request, timeout=30)
            now = time.perf_counter()
            latencies.append((now - call_started) * 1000)
            if now - started >= seconds and len(latencies) >= 3:
                break
        elapsed = time.perf_counter() - started
        stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
        rows.append(
            {
                "batch_size": size,
                "calls": len(latencies),
                "seconds": elapsed,
                "calls_per_s": len(latencies) / elapsed,
                "ops_per_s": len(latencies) * size / elapsed,
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
            }
        )
    return rows


def measure_unary_latency(address: str, n: int) -> list[float]:
    """The latency in milliseconds of each of n remotecalc.v1 Apply calls, one operation per call."""
    stub = pb_grpc.CalculatorStub(channel(address))
    token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
    latencies = []
    for i in range(n):
        operator, operand = _CYCLE[i % 4]
        request = pb.ApplyRequest(token=token, operation=pb.Operation(operator=operator, operand=operand))
        started = time.perf_counter()
        stub.Apply(request, timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
    stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
    return latencies


def measure_apply_rate(address: str, seconds: float) -> dict[str, float]:
    """remotecalc.v1 Apply calls per second from one thread, one operation per call."""
    stub = pb_grpc.CalculatorStub(channel(address))
    token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
    requests = [pb.ApplyRequest(token=token, operation=pb.Operation(operator=o, operand=v)) for o, v in _CYCLE]
    latencies: list[float] = []
    started = time.perf_counter()
    while True:
        call_started = time.perf_counter()
        stub.Apply(requests[len(latencies) % 4], timeout=10)
        now = time.perf_counter()
        latencies.append((now - call_started) * 1000)
        if now - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
    return rates(latencies, elapsed)


def measure_apply_latency(address: str, seconds: float) -> dict[str, float]:
    """Each remotecalc.v1 Apply's latency for `seconds`, one thread: the tail, p99 and max, included."""
    stub = pb_grpc.CalculatorStub(channel(address))
    token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
    requests = [pb.ApplyRequest(token=token, operation=pb.Operation(operator=o, operand=v)) for o, v in _CYCLE]
    latencies: list[float] = []
    clock = time.perf_counter
    started = clock()
    while True:
        call_started = clock()
        stub.Apply(requests[len(latencies) % 4], timeout=10)
        now = clock()
        latencies.append((now - call_started) * 1000)
        if now - started >= seconds:
            break
    elapsed = clock() - started
    stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
    return rates(latencies, elapsed)


def measure_sequence(address: str, threads: int, seconds: float) -> dict[str, float]:
    """The article's six calls (Create, Add, Subtract, Multiply, Divide, Answer) in a loop per thread."""
    stub = calc_pb2_grpc.CalculatorStub(channel(address))
    results: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def run(latencies: list[float]) -> None:
        start.wait()
        clock = time.perf_counter
        while clock() < deadline[0]:
            _sequence(stub, latencies, clock)

    workers = [threading.Thread(target=run, args=(latencies,)) for latencies in results]
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = [latency for per_thread in results for latency in per_thread]
    return rates(latencies, elapsed)


def _sequence(stub: Any, latencies: list[float], clock: Any) -> None:
    t0 = clock()
    token = stub.Create(calc_pb2.Number(value=0.0), timeout=10).token
    t1 = clock()
    stub.Add(calc_pb2.SessionOperation(token=token, value=5.0), timeout=10)
    t2 = clock()
    stub.Subtract(calc_pb2.SessionOperation(token=token, value=3.0), timeout=10)
    t3 = clock()
    stub.Multiply(calc_pb2.SessionOperation(token=token, value=10.0), timeout=10)
    t4 = clock()
    stub.Divide(calc_pb2.SessionOperation(token=token, value=2.0), timeout=10)
    t5 = clock()
    stub.Answer(calc_pb2.SessionOperation(token=token), timeout=10)
    t6 = clock()
    latencies.extend(((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000))
    latencies.extend(((t4 - t3) * 1000, (t5 - t4) * 1000, (t6 - t5) * 1000))


def rates(latencies: Sequence[float], seconds: float) -> dict[str, float]:
    """Calls, calls per second and latency tails (ms) of one call per latency over seconds."""
    return {
        "calls": len(latencies),
        "seconds": seconds,
        "calls_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=0.0),
    }

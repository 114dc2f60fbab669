"""The benchmark's other loads: a watcher fed by another client, and client and server in one process."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc

import remotecalc
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

from .measure import batch_request, channel, percentile

__all__ = ["measure_embedded", "measure_watch"]


def measure_watch(address: str, seconds: float, batch_size: int = 0) -> dict[str, float]:
    """Updates per second a watcher receives while another client applies operations as fast as it can.

    batch_size 0 applies one operation per Apply call; otherwise ApplyBatch calls of that many.
    """
    stub = pb_grpc.CalculatorStub(channel(address))
    token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
    received = [0, 0]  # updates, steps
    first = threading.Event()
    # The watcher is another client: its own channel, so its stream shares no connection with the writer.
    with grpc.insecure_channel(address) as watch_channel:
        watch = pb_grpc.CalculatorStub(watch_channel).WatchSession(pb.WatchSessionRequest(token=token))

        def consume() -> None:
            for message in watch:
                if first.is_set():
                    received[0] += 1
                    received[1] += len(message.steps)
                first.set()

        watcher = threading.Thread(target=consume, daemon=True)
        watcher.start()
        if not first.wait(10):
            raise RuntimeError("the watch sent no first message")
        call: Any
        if batch_size:
            requests: list[Any] = [batch_request(token, batch_size)]
            call = stub.ApplyBatch
        else:
            requests = [pb.ApplyRequest(token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=1.0))]
            call = stub.Apply
        applied = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            call(requests[0], timeout=10)
            applied += 1
        elapsed = time.perf_counter() - started
        delivered, steps = received
        stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
        watcher.join(10)
    return {
        "seconds": elapsed,
        "applied_calls_per_s": applied / elapsed,
        "updates": delivered,
        "updates_per_s": delivered / elapsed,
        "steps_per_s": steps / elapsed,
    }


def measure_embedded(core: str, seconds: float) -> dict[str, float]:
    """The article's six calls through remotecalc's Client against a server in this same process."""
    latencies: list[float] = []
    clock = time.perf_counter
    with remotecalc.start_server(port=0, core=core) as server, remotecalc.connect(server) as client:  # type: ignore[arg-type]
        client.create(0.0).answer()
        started = clock()
        while clock() - started < seconds:
            t0 = clock()
            session = client.create(0.0)
            t1 = clock()
            session.add(5.0)
            t2 = clock()
            session.subtract(3.0)
            t3 = clock()
            session.multiply(10.0)
            t4 = clock()
            session.divide(2.0)
            t5 = clock()
            session.answer()
            t6 = clock()
            latencies.extend(((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000))
            latencies.extend(((t4 - t3) * 1000, (t5 - t4) * 1000, (t6 - t5) * 1000))
        elapsed = clock() - started
    return {
        "calls": len(latencies),
        "seconds": elapsed,
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }

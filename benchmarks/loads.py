"""The benchmark's other loads: watchers fed by another client, client and server in one process, Redis bytes."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc

import remotecalc
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

from .measure import batch_request, channel, percentile, rates

__all__ = ["measure_embedded", "measure_session_bytes", "measure_watch", "measure_watch_latency"]


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
    return rates(latencies, elapsed)


def measure_watch_latency(address: str, seconds: float, watchers: int = 8, rate: float = 500.0) -> dict[str, float]:
    """Each step's latency from the Apply that made it (sent) to each of `watchers` receiving it, at `rate` Apply/s.

    Every watcher is a client of its own (its own channel); the writer paces its Apply calls at `rate`.
    """
    stub = pb_grpc.CalculatorStub(channel(address))
    token = stub.CreateSession(pb.CreateSessionRequest(value=1.0), timeout=10).session.token
    clock = time.perf_counter
    arrivals: list[list[tuple[int, float]]] = [[] for _ in range(watchers)]
    latest = [0] * watchers
    changed = threading.Condition()
    channels = [grpc.insecure_channel(address) for _ in range(watchers)]
    streams = [pb_grpc.CalculatorStub(c).WatchSession(pb.WatchSessionRequest(token=token)) for c in channels]
    started_watching = [threading.Event() for _ in range(watchers)]

    def consume(index: int) -> None:
        try:
            for message in streams[index]:
                now = clock()
                started_watching[index].set()
                for step in message.steps:
                    arrivals[index].append((step.number, now))
                with changed:
                    latest[index] = message.step_count
                    changed.notify_all()
        except grpc.RpcError:
            pass  # cancelled at the end

    threads = [threading.Thread(target=consume, args=(index,), daemon=True) for index in range(watchers)]
    for thread in threads:
        thread.start()
    try:
        for event in started_watching:
            if not event.wait(10):
                raise RuntimeError("a watch sent no first message")
        request = pb.ApplyRequest(token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=1.0))
        sent: dict[int, float] = {}
        started = clock()
        applied = 0
        while clock() - started < seconds:
            pause = started + applied / rate - clock()
            if pause > 0:
                time.sleep(pause)
            call_started = clock()
            sent[stub.Apply(request, timeout=10).step.number] = call_started
            applied += 1
        elapsed = clock() - started
        last = max(sent)
        with changed:
            changed.wait_for(lambda: min(latest) >= last, timeout=10)
    finally:
        for stream in streams:
            stream.cancel()
        for thread in threads:
            thread.join(10)
        for watch_channel in channels:
            watch_channel.close()
    stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10)
    latencies = [(at - sent[number]) * 1000 for per in arrivals for number, at in per if number in sent]
    return {
        "watchers": watchers,
        "target_per_s": rate,
        "seconds": elapsed,
        "applied_per_s": applied / elapsed,
        "deliveries": len(latencies),
        "missing": watchers * applied - len(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=0.0),
    }


def measure_session_bytes(address: str, url: str, node_settings: list[list[int]]) -> list[dict[str, int]]:
    """Bytes Redis holds for one session (MEMORY USAGE of its keys), new, after 1 Apply and after 100.

    Each setting is (stream-node-max-bytes, stream-node-max-entries), set with CONFIG SET before the
    session is made (it applies to streams' new nodes) and put back as it was at the end. The calls
    carry no request id, so no stored reply is counted (the Python client sends one: a key for 2 minutes).
    """
    import redis

    client = redis.Redis.from_url(url)
    stub = pb_grpc.CalculatorStub(channel(address))
    request = pb.ApplyRequest(operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=1.0))
    saved = {name: client.config_get(name)[name] for name in ("stream-node-max-bytes", "stream-node-max-entries")}
    rows = []
    try:
        for max_bytes, max_entries in node_settings:
            client.config_set("stream-node-max-bytes", max_bytes)
            client.config_set("stream-node-max-entries", max_entries)
            token = stub.CreateSession(pb.CreateSessionRequest(value=0.0), timeout=10).session.token
            request.token = token
            sizes = [_session_bytes(client, token)]
            for count in (1, 99):
                for _ in range(count):
                    stub.Apply(request, timeout=10)
                sizes.append(_session_bytes(client, token))
            rows.append(
                {
                    "node_max_bytes": max_bytes,
                    "node_max_entries": max_entries,
                    "new": sizes[0],
                    "after_1": sizes[1],
                    "after_100": sizes[2],
                }
            )
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
        client.close()
    return rows


def _session_bytes(client: Any, token: str) -> int:
    """MEMORY USAGE (every sample) summed over the keys of one session, which all carry its hash tag."""
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(match=f"*{{{token}}}*"))

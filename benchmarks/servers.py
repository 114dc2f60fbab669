"""The servers the benchmark compares, each run in its own process: remotecalc, baseline, floor.

All three are started by remotecalc's own `start_server()`, so they are the same gRPC server (same
core, options, worker count, health and reflection services); only the calculator handlers differ.

    python -m benchmarks.servers --kind baseline --core sync [--sessions N [--expire-after SECONDS]]

prints one JSON line (address, pid, RSS) when it is serving, and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped, unused-ignore]

import remotecalc.server
import remotecalc.service
from remotecalc.article import calc_pb2, calc_pb2_grpc

__all__ = ["KINDS", "BaselineCalculator", "FloorCalculator", "main"]

KINDS = ("remotecalc", "baseline", "floor")


class BaselineCalculator(calc_pb2_grpc.CalculatorServicer):
    """The article's server: a plain dict shared by every thread, no lock, no checks."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    def Create(self, request: calc_pb2.Number, context: Any) -> calc_pb2.SessionOperation:
        token = str(uuid.uuid4())
        self.sessions[token] = request.value
        return calc_pb2.SessionOperation(token=token)

    def Answer(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        value = self.sessions[request.token]
        self.sessions[request.token] = None
        return calc_pb2.Number(value=value)

    def Add(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        self.sessions[request.token] += request.value
        return calc_pb2.Number(value=self.sessions[request.token])

    def Subtract(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        self.sessions[request.token] -= request.value
        return calc_pb2.Number(value=self.sessions[request.token])

    def Multiply(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        self.sessions[request.token] *= request.value
        return calc_pb2.Number(value=self.sessions[request.token])

    def Divide(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        self.sessions[request.token] /= request.value
        return calc_pb2.Number(value=self.sessions[request.token])


_TOKEN = calc_pb2.SessionOperation(token="floor-token-0000000000")
_NUMBER = calc_pb2.Number(value=10.0)


class FloorCalculator(calc_pb2_grpc.CalculatorServicer):
    """The same contract with handlers that do nothing: what the gRPC server costs on its own."""

    def Create(self, request: calc_pb2.Number, context: Any) -> calc_pb2.SessionOperation:
        return _TOKEN

    def Answer(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        return _NUMBER

    def Add(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        return _NUMBER

    def Subtract(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        return _NUMBER

    def Multiply(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        return _NUMBER

    def Divide(self, request: calc_pb2.SessionOperation, context: Any) -> calc_pb2.Number:
        return _NUMBER


class _Asynchronous:
    """A servicer's methods as coroutines, as remotecalc's own are on the aio core."""

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._servicer, name)

        async def handler(request: Any, context: Any) -> Any:
            return method(request, context)

        return handler


def _adder(servicer: calc_pb2_grpc.CalculatorServicer) -> Callable[..., None]:
    def add_services(server: Any, engine: object, *, asynchronous: bool = False, gate: object = None) -> None:
        registered: Any = _Asynchronous(servicer) if asynchronous else servicer
        calc_pb2_grpc.add_CalculatorServicer_to_server(registered, server)

    return add_services


def start(
    kind: str, core: str, max_sessions: int = 100_000, clock: Callable[[], float] = time.monotonic
) -> remotecalc.RunningServer:
    """Start one kind of server on a free loopback port, through remotecalc's start_server()."""
    if kind == "baseline":
        services = _adder(BaselineCalculator())
    elif kind == "floor":
        services = _adder(FloorCalculator())
    elif kind == "remotecalc":
        services = remotecalc.service.add_services
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    return remotecalc.start_server(
        port=0,
        core=core,  # type: ignore[arg-type]
        max_sessions=max_sessions,
        clock=clock,
        services=services,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes; with --sessions, first open that many sessions in the engine."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--core", choices=("sync", "aio"), default="sync")
    parser.add_argument("--sessions", type=int, default=0, help="sessions to open through the engine directly")
    parser.add_argument(
        "--expire-after",
        type=float,
        metavar="SECONDS",
        help="that long after serving, age the engine's clock so that the sessions opened expire all at once",
    )
    args = parser.parse_args(argv)
    clock = _AgingClock()
    server = start(args.kind, args.core, max_sessions=max(100_000, args.sessions + 10_000), clock=clock)
    _warm_up(server.address)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    started = time.perf_counter()
    create = server.engine.create
    for _ in range(args.sessions):
        create(0.0)
    seconds = time.perf_counter() - started
    report = {
        "address": server.address,
        "pid": process.pid,
        "kind": args.kind,
        "core": args.core,
        "sessions": len(server.engine),
        "rss_before": rss_before,
        "rss_after": process.memory_info().rss,
        "create_seconds": seconds,
    }
    print(json.dumps(report), flush=True)
    if args.expire_after is not None:
        threading.Thread(target=_expire_later, args=(server, clock, args.expire_after), daemon=True).start()
    sys.stdin.read()
    server.stop(grace=0)


class _AgingClock:
    """The engine's monotonic clock, which the benchmark can move ahead at once."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


def _expire_later(server: remotecalc.RunningServer, clock: _AgingClock, seconds: float) -> None:
    """After seconds, age every session opened before by just under the idle timeout, then report the sweep.

    The sessions opened at start are then past the timeout, a load generator's session used within
    the last half second is not: the sweeper thread expires a million sessions while it calls Apply.
    """
    time.sleep(seconds)
    before = len(server.engine)
    clock.ahead = server.engine.idle_timeout - 0.5
    aged = time.perf_counter()
    while len(server.engine) > 10:
        time.sleep(0.01)
    print(
        json.dumps({"expired": before - len(server.engine), "until_swept_seconds": time.perf_counter() - aged}),
        flush=True,
    )


def _warm_up(address: str) -> None:
    """One call, so that the RSS measured before the sessions includes gRPC's own buffers."""
    with grpc.insecure_channel(address) as channel:
        stub = calc_pb2_grpc.CalculatorStub(channel)
        token = stub.Create(calc_pb2.Number(value=1.0), timeout=10).token
        stub.Add(calc_pb2.SessionOperation(token=token, value=1.0), timeout=10)


if __name__ == "__main__":
    main()

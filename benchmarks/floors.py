"""Part 11 of the benchmark: remotecalc beside the floors, servers that do nothing in their handlers.

A floor is the article's contract on a bare grpcio server, each handler returning a constant message:
what the gRPC core costs before any work, on the sync core (`grpc.server` with a thread pool) and on
grpc.aio. remotecalc runs as `remotecalc serve --core sync` and `--core aio`, in memory. Each caller
is a thread with a channel of its own (a local subchannel pool, so its own connection) running the
article's six calls (Create, Add, Subtract, Multiply, Divide, Answer) again and again; 1 caller in one
load process, 4 and 64 split over two. Servers are measured in rotating rounds; `vs_floor` is the
median over rounds of a server's rate over the fastest floor's in the same round.

    .venv/bin/python -m benchmarks.floors [--quick]         # this part alone
    .venv/bin/python -m benchmarks.floors --serve aio       # one floor, for a load of your own
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent import futures
from typing import Any

from benchmarks.callers import in_load_processes
from benchmarks.measure import percentile
from benchmarks.processes import Child
from benchmarks.settings import progress, settings_for
from benchmarks.stores import Served
from benchmarks.table import render_floors

__all__ = ["CALLERS", "FLOORS", "floors", "main", "measure_six_calls"]

#: The numbers of concurrent callers measured.
CALLERS = (1, 4, 64)
#: The two empty-handler servers.
FLOORS = ("floor sync", "floor aio")
_SERVERS = (*FLOORS, "remotecalc sync", "remotecalc aio")


def _floor_servicer() -> Any:
    """The article's contract with handlers that return constants; a coroutine handler on grpc.aio."""
    from remotecalc.article import calc_pb2, calc_pb2_grpc

    token = calc_pb2.SessionOperation(token="floor-token-0000000000")
    number = calc_pb2.Number(value=10.0)

    class Floor(calc_pb2_grpc.CalculatorServicer):
        def Create(self, request: Any, context: Any) -> Any:
            return token

        def Answer(self, request: Any, context: Any) -> Any:
            return number

        Add = Subtract = Multiply = Divide = Answer

    return Floor()


def _serve_sync() -> None:
    import grpc

    from remotecalc.article import calc_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)])
    calc_pb2_grpc.add_CalculatorServicer_to_server(_floor_servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    sys.stdin.read()
    server.stop(0)


async def _serve_aio() -> None:
    import grpc

    from remotecalc.article import calc_pb2_grpc

    plain = _floor_servicer()

    class AsyncFloor(calc_pb2_grpc.CalculatorServicer):
        async def Create(self, request: Any, context: Any) -> Any:
            return plain.Create(request, context)

        async def Answer(self, request: Any, context: Any) -> Any:
            return plain.Answer(request, context)

        Add = Subtract = Multiply = Divide = Answer

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    calc_pb2_grpc.add_CalculatorServicer_to_server(AsyncFloor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)


def _load(address: str, callers: int, seconds: float, results: Any) -> None:
    """In a load process: callers threads, each its own channel, running the six calls until time is up."""
    import grpc

    from remotecalc.article import calc_pb2, calc_pb2_grpc

    latencies: list[list[float]] = [[] for _ in range(callers)]
    ready = threading.Barrier(callers)

    def call(index: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(address, options=options) as channel:
            stub = calc_pb2_grpc.CalculatorStub(channel)
            stub.Create(calc_pb2.Number(value=0.0), timeout=30)
            ready.wait()
            mine = latencies[index]
            clock = time.perf_counter
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                started = clock()
                token = stub.Create(calc_pb2.Number(value=1.0), timeout=30).token
                for method in (stub.Add, stub.Subtract, stub.Multiply, stub.Divide, stub.Answer):
                    method(calc_pb2.SessionOperation(token=token, value=2.0), timeout=30)
                # One sixth of the six calls' time each: the mean latency of one call in the sequence.
                per_call = (clock() - started) * 1000 / 6
                mine.extend((per_call,) * 6)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put([value for mine in latencies for value in mine])


def measure_six_calls(address: str, callers: int, seconds: float) -> dict[str, float]:
    """Calls per second and latency tails of the article's six calls from callers at once, in load processes."""
    latencies = [value for share in in_load_processes(_load, address, callers, seconds) for value in share]
    return {
        "calls_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=0.0),
    }


class _Floor:
    """One floor server in a process of its own."""

    def __init__(self, core: str) -> None:
        self._child = Child("benchmarks.floors", "--serve", core)
        self.address = str(self._child.read()["address"])

    def close(self) -> None:
        self._child.close()


def floors(settings: dict[str, Any], report: Callable[[str], None] = progress) -> dict[str, Any]:
    """Part 11: remotecalc on each core beside the two floors, at 1, 4 and 64 callers, rotating rounds."""
    servers: dict[str, _Floor | Served] = {
        "floor sync": _Floor("sync"),
        "floor aio": _Floor("aio"),
        "remotecalc sync": Served("memory", "sync"),
        "remotecalc aio": Served("memory", "aio"),
    }
    measured: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    try:
        for number in range(settings["floor_rounds"]):
            report(f"part 11, the floors: round {number + 1} of {settings['floor_rounds']}")
            order = [_SERVERS[(i + number) % len(_SERVERS)] for i in range(len(_SERVERS))]
            for count in CALLERS:
                for name in order:
                    result = measure_six_calls(servers[name].address, count, settings["floor_seconds"])
                    measured[name, count].append(result)
    finally:
        for server in servers.values():
            server.close()
    rows = []
    for count in CALLERS:
        rounds = range(settings["floor_rounds"])
        fastest = [max(measured[floor, count][r]["calls_per_s"] for floor in FLOORS) for r in rounds]
        for name in _SERVERS:
            results = measured[name, count]
            rows.append(
                {
                    "server": name,
                    "callers": count,
                    "calls_per_s": statistics.median(r["calls_per_s"] for r in results),
                    "p50_ms": statistics.median(r["p50_ms"] for r in results),
                    "p99_ms": statistics.median(r["p99_ms"] for r in results),
                    "max_ms": max(r["max_ms"] for r in results),
                    "vs_floor": statistics.median(r["calls_per_s"] / f for r, f in zip(results, fastest, strict=True)),
                }
            )
    return {"floors": rows}


def main() -> None:
    """Serve one floor (--serve), or run part 11 alone and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=("sync", "aio"), help="serve one floor until stdin closes")
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    if args.serve == "sync":
        _serve_sync()
        return
    if args.serve == "aio":
        asyncio.run(_serve_aio())
        return
    result = floors(settings_for(quick=args.quick))
    print(render_floors(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()

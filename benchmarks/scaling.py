"""Parts 7, 8 and 9 of the benchmark: the Redis store, Watch latency, and concurrent callers per core and worker count.

Every server is `remotecalc serve --port 0 --store …` in its own process, each Redis a redis-server of its own
(AOF on, appendfsync `everysec` or `always`). The load generator (the worker) and the callers' load processes
share the machine's cores with them: compare the ratios of one run.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from benchmarks.callers import CALLERS, measure_callers
from benchmarks.processes import Child
from benchmarks.stores import RedisProcess, Served

__all__ = ["NODE_SETTINGS", "callers", "redis_store"]

#: (stream-node-max-bytes, stream-node-max-entries) tried for the bytes per session: Redis's default first.
NODE_SETTINGS = ((4096, 100), (512, 100), (256, 100), (128, 100))
_T = TypeVar("_T")


def _rotated(items: Sequence[_T], by: int) -> list[_T]:
    return [items[(i + by) % len(items)] for i in range(len(items))]


def _paired(results: list[float], reference: list[float]) -> float:
    """The median over rounds of one rate over the one measured beside it in the same round."""
    return float(statistics.median(r / o for r, o in zip(results, reference, strict=True)))


def redis_store(worker: Child, settings: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """Part 7 and 8: unary Apply, ApplyBatch of 1,000 and CPU per call on Redis against memory; bytes; Watch p99."""
    redises = {fsync: RedisProcess(fsync) for fsync in ("everysec", "always")}
    servers: dict[str, Served] = {}
    try:
        servers["memory"] = Served("memory")
        for fsync, process in redises.items():
            servers[f"redis {fsync}"] = Served(process.url)
        names = list(servers)
        unary: dict[str, list[float]] = defaultdict(list)
        batch: dict[str, list[float]] = defaultdict(list)
        latency: dict[str, list[dict[str, Any]]] = defaultdict(list)
        cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for number in range(settings["redis_rounds"]):
            progress(f"part 7, Redis store: round {number + 1} of {settings['redis_rounds']}")
            for name in _rotated(names, number):
                server, redis_process = servers[name], redises.get(name.removeprefix("redis "))
                before = server.cpu_seconds(), redis_process.cpu_seconds() if redis_process else 0.0
                result = worker.ask("apply", address=server.address, seconds=settings["redis_apply"])
                after = server.cpu_seconds(), redis_process.cpu_seconds() if redis_process else 0.0
                unary[name].append(result["calls_per_s"])
                latency[name].append(result)
                calls = result["calls"] + 2  # and its CreateSession and CloseSession
                cpu[name].append(((after[0] - before[0]) / calls * 1e6, (after[1] - before[1]) / calls * 1e6))
                rows = worker.ask("batches", address=server.address, sizes=[1_000], seconds=settings["redis_batch"])
                batch[name].append(rows[0]["ops_per_s"])
        progress("part 7, bytes per session in Redis")
        session_bytes = worker.ask(
            "session_bytes",
            address=servers["redis everysec"].address,
            url=redises["everysec"].url,
            node_settings=[list(setting) for setting in NODE_SETTINGS],
        )
        watches = []
        for name in names:
            progress(f"part 8, Watch latency, 8 watchers at 500 updates/s: {name}")
            result = worker.ask("watch_latency", address=servers[name].address, seconds=settings["watch_latency"])
            watches.append({"server": name, **result})
        worker.ask("close_channels")
    finally:
        for server in servers.values():
            server.close()
        for process in redises.values():
            process.close()
    store_rows = []
    for name in names:
        store_rows.append(
            {
                "server": name,
                "apply_calls_per_s": statistics.median(unary[name]),
                "p50_ms": statistics.median(r["p50_ms"] for r in latency[name]),
                "p99_ms": statistics.median(r["p99_ms"] for r in latency[name]),
                "vs_memory": _paired(unary[name], unary["memory"]),
                "batch_1000_ops_per_s": statistics.median(batch[name]),
                "batch_vs_memory": _paired(batch[name], batch["memory"]),
                "server_cpu_us_per_call": statistics.median(c[0] for c in cpu[name]),
                "redis_cpu_us_per_call": statistics.median(c[1] for c in cpu[name]),
            }
        )
    return {"redis": store_rows, "session_bytes": session_bytes, "watch_latency": watches}


def callers(settings: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """Part 9: unary Apply from 1, 4 and 64 callers: sync and aio cores, 1 process and --workers 2 on Redis."""
    redis_process = RedisProcess("everysec")
    servers: dict[str, Served] = {}
    try:
        servers["memory sync"] = Served("memory", "sync")
        servers["memory aio"] = Served("memory", "aio")
        servers["redis 1 process"] = Served(redis_process.url)
        servers["redis --workers 2"] = Served(redis_process.url, workers=2)
        names = list(servers)
        rates: dict[tuple[str, int], list[float]] = defaultdict(list)
        for number in range(settings["callers_rounds"]):
            progress(f"part 9, concurrent callers: round {number + 1} of {settings['callers_rounds']}")
            for name in _rotated(names, number):
                for count in CALLERS:
                    result = measure_callers(servers[name].address, count, settings["callers_seconds"])
                    rates[name, count].append(result["calls_per_s"])
    finally:
        for server in servers.values():
            server.close()
        redis_process.close()
    rows = [
        {"server": name, "callers": count, "calls_per_s": statistics.median(rates[name, count])}
        for name in names
        for count in CALLERS
    ]
    ratios = [
        {
            "callers": count,
            "aio_vs_sync": _paired(rates["memory aio", count], rates["memory sync", count]),
            "workers_2_vs_1": _paired(rates["redis --workers 2", count], rates["redis 1 process", count]),
            "redis_vs_memory": _paired(rates["redis 1 process", count], rates["memory sync", count]),
        }
        for count in CALLERS
    ]
    return {"callers": rows, "callers_ratios": ratios}

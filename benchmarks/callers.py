"""Unary Apply from many concurrent callers, each a client of its own, spread over two load processes.

Each caller has its own connection, as every `remotecalc.connect()` client has (its own subchannels:
gRPC would otherwise share one connection between the channels of a process): `--workers` balances
connections, not calls, so callers sharing one connection would all land on one worker. The processes
are forked: call this from a process that has not opened a gRPC channel (run.py's orchestrator never does).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CALLERS", "in_load_processes", "measure_callers"]

#: The numbers of concurrent callers measured.
CALLERS = (1, 4, 64)


def _load(address: str, callers: int, seconds: float, results: Any) -> None:
    """In a load process: callers threads, each its own client and session, adding 1 until time is up."""
    import remotecalc

    counts = [0] * callers
    ready = threading.Barrier(callers)

    def call(index: int) -> None:
        with remotecalc.connect(address) as client:
            session = client.create(0)
            session.add(1)
            ready.wait()
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                session.add(1)
                counts[index] += 1

    threads = [threading.Thread(target=call, args=(index,)) for index in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(sum(counts))


def in_load_processes(
    load: Callable[[str, int, float, Any], None], address: str, callers: int, seconds: float
) -> list[Any]:
    """What load(address, share, seconds, results) put, from one forked process (1 caller) or two sharing callers."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    shares = [callers] if callers == 1 else [callers // 2, callers - callers // 2]
    processes = [context.Process(target=load, args=(address, share, seconds, results)) for share in shares]
    for process in processes:
        process.start()
    reported = [results.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(30)
    return reported


def measure_callers(address: str, callers: int, seconds: float) -> dict[str, float]:
    """Apply calls per second (the Python client's `add`) from callers at once, over one or two load processes."""
    total = sum(in_load_processes(_load, address, callers, seconds))
    return {"callers": callers, "calls": total, "seconds": seconds, "calls_per_s": total / seconds}

"""`serve --workers 2` against one process, both on the Redis store: unary Apply at 1, 4 and 64 callers.

    .venv/bin/python benchmarks/workers.py [--seconds S] [--rounds N] [--appendfsync everysec|always]

It starts its own redis-server (Debian's) on a free loopback port, then, round after round, a
`remotecalc serve --store` with one process and one with `--workers 2`, each measured at 1, 4 and 64
concurrent callers. Each caller is a client of its own (a connection of its own, since workers share
connections, not calls), spread over two load processes. Everything shares this machine's cores, so
compare the ratios of one run, not the rates.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import remotecalc

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CALLERS = (1, 4, 64)
LISTENING = re.compile(r"listening on (\S+)")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load(address: str, callers: int, seconds: float, results: multiprocessing.Queue[int]) -> None:
    """In a load process: callers threads, each its own client and session, adding 1 until time is up."""
    counts = [0] * callers
    ready = threading.Barrier(callers)

    def call(index: int) -> None:
        with remotecalc.connect(address) as client:
            session = client.create(0)
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


def measure(address: str, callers: int, seconds: float) -> float:
    """Calls per second with callers spread over one or two load processes."""
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    shares = [callers] if callers == 1 else [callers // 2, callers - callers // 2]
    processes = [multiprocessing.Process(target=load, args=(address, share, seconds, results)) for share in shares]
    for process in processes:
        process.start()
    total = sum(results.get() for _ in processes)
    for process in processes:
        process.join()
    return total / seconds


def serve(url: str, workers: int) -> tuple[subprocess.Popen[str], str]:
    """Start `remotecalc serve --store url` with workers processes; return it and its address."""
    command = [sys.executable, "-m", "remotecalc", "serve", "--port", "0", "--store", url, "--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    found = LISTENING.search(process.stdout.readline())
    assert found, "remotecalc serve did not start"
    return process, found.group(1)


def main() -> None:
    """Run the rounds and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="everysec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remotecalc-bench-redis-") as data:
        port = free_port()
        redis_server = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", data, "--save", "",
             "--appendonly", "yes", "--appendfsync", args.appendfsync],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert redis_server.stdout is not None
        for line in redis_server.stdout:
            if "Ready to accept connections" in line:
                break
        threading.Thread(target=redis_server.stdout.read, daemon=True).start()
        url = f"redis://127.0.0.1:{port}/0"
        rates: dict[tuple[int, int], list[float]] = {}
        try:
            for _ in range(args.rounds):
                for workers in (1, 2):
                    server, address = serve(url, workers)
                    for callers in CALLERS:
                        rates.setdefault((workers, callers), []).append(measure(address, callers, args.seconds))
                    server.terminate()
                    server.wait()
        finally:
            redis_server.terminate()
            redis_server.wait()
    print(f"unary Apply on the Redis store (appendfsync {args.appendfsync}), medians of {args.rounds} rounds:")
    for callers in CALLERS:
        one, two = statistics.median(rates[(1, callers)]), statistics.median(rates[(2, callers)])
        print(f"  {callers:>2} callers: 1 process {one:,.0f} calls/s, --workers 2 {two:,.0f} calls/s, {two / one:.2f}x")


if __name__ == "__main__":
    main()

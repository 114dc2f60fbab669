"""The Redis store against the in-memory one, in one run: unary Apply, ApplyBatch of 1,000, bytes per session.

    .venv/bin/python benchmarks/redis_store.py [--seconds S]

It starts its own redis-server (Debian's) for each appendfsync setting on a free loopback port, and
one remotecalc server per store, all in their own processes; the load runs here, alternating
between the servers so that a noisy machine treats them alike. Compare the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import psutil  # type: ignore[import-untyped, unused-ignore]
import redis

from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ROUNDS = 5


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis(directory: Path, appendfsync: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "yes", "--appendfsync", appendfsync, "--logfile", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.025)
    raise SystemExit(f"redis-server did not start on {url}")


class _Served:
    """`remotecalc serve` in its own process, on a free port, with a store."""

    def __init__(self, store: str) -> None:
        remotecalc = str(Path(sys.executable).with_name("remotecalc"))
        self.process = subprocess.Popen(
            [remotecalc, "serve", "--port", "0", "--store", store], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"remotecalc serve --store {store} did not start: {line!r}")
        self.address = line.split("listening on ")[1].split()[0]

    def stop(self) -> None:
        """SIGTERM it and wait."""
        self.process.terminate()
        self.process.wait(30)


def _rate(stub: pb_grpc.CalculatorStub, token: str, seconds: float, batch: int) -> tuple[float, int]:
    """Operations per second applied by one caller for seconds (single Apply, or ApplyBatch of batch), and calls."""
    operation = pb.Operation(operator=pb.OPERATOR_ADD, operand=1)
    request: object = (
        pb.ApplyRequest(token=token, operation=operation)
        if batch == 1
        else pb.ApplyBatchRequest(token=token, operations=[operation] * batch)
    )
    call = stub.Apply if batch == 1 else stub.ApplyBatch
    done, until = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < until:
        call(request, timeout=10)  # type: ignore[operator]
        done += batch
    return done / (time.perf_counter() - start), done // batch


def _cpu(server: _Served, client: redis.Redis | None) -> tuple[float, float]:
    """CPU seconds used so far by the server process and by its redis-server (0 without one)."""
    times = psutil.Process(server.process.pid).cpu_times()
    used = 0.0
    if client is not None:
        info = client.info("cpu")
        used = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return times.user + times.system, used


def _bytes(client: redis.Redis, token: str) -> int:
    """The bytes Redis holds for a session's keys (MEMORY USAGE, all samples)."""
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(match=f"*{{{token}}}*"))


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print a table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement (%(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        redises = {}
        for fsync in ("always", "everysec"):
            (Path(root) / fsync).mkdir()
            redises[fsync] = _redis(Path(root) / fsync, fsync)
        servers = {"memory": _Served("memory")}
        servers |= {f"redis {fsync}": _Served(url) for fsync, (_, url) in redises.items()}
        try:
            rates: dict[tuple[str, int], list[float]] = {}
            cpu: dict[str, list[tuple[float, float]]] = {}
            clients = {f"redis {fsync}": redis.Redis.from_url(url) for fsync, (_, url) in redises.items()}
            for round_ in range(ROUNDS):
                order = list(servers.items())
                for name, server in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    with grpc.insecure_channel(server.address) as channel:
                        stub = pb_grpc.CalculatorStub(channel)
                        token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
                        before = _cpu(server, clients.get(name))
                        rate, calls = _rate(stub, token, args.seconds, 1)
                        after = _cpu(server, clients.get(name))
                        rates.setdefault((name, 1), []).append(rate)
                        cpu.setdefault(name, []).append(
                            ((after[0] - before[0]) / calls * 1e6, (after[1] - before[1]) / calls * 1e6)
                        )
                        rates.setdefault((name, 1000), []).append(_rate(stub, token, args.seconds, 1000)[0])
            memory = {batch: statistics.median(rates[("memory", batch)]) for batch in (1, 1000)}
            print(
                f"{'server':<18} {'unary Apply/s':>14} {'x memory':>9} {'batch ops/s':>12} {'x memory':>9}"
                f" {'server CPU us/Apply':>20} {'Redis CPU us/Apply':>19}"
            )
            for name in servers:
                unary, batch = (statistics.median(rates[(name, size)]) for size in (1, 1000))
                server_cpu = statistics.median(sample[0] for sample in cpu[name])
                redis_cpu = statistics.median(sample[1] for sample in cpu[name])
                print(
                    f"{name:<18} {unary:>14,.0f} {unary / memory[1]:>9.2f} {batch:>12,.0f} {batch / memory[1000]:>9.2f}"
                    f" {server_cpu:>20,.0f} {redis_cpu:>19,.0f}"
                )
            _, url = redises["always"]
            with grpc.insecure_channel(servers["redis always"].address) as channel:
                stub = pb_grpc.CalculatorStub(channel)
                token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
                client = redis.Redis.from_url(url, decode_responses=True)
                operation = pb.Operation(operator=pb.OPERATOR_ADD, operand=1)
                for node_bytes in (4096, 512, 256):
                    # A stream's first node is preallocated at stream-node-max-bytes (4 KB by default).
                    client.config_set("stream-node-max-bytes", node_bytes)
                    token = stub.CreateSession(pb.CreateSessionRequest(value=0), timeout=10).session.token
                    fresh = _bytes(client, token)
                    stub.Apply(pb.ApplyRequest(token=token, operation=operation), timeout=10)
                    one = _bytes(client, token)
                    for _ in range(99):
                        stub.Apply(pb.ApplyRequest(token=token, operation=operation), timeout=10)
                    print(
                        f"bytes per session in Redis (MEMORY USAGE), stream-node-max-bytes {node_bytes}:"
                        f" new {fresh}, after 1 Apply {one}, after 100 {_bytes(client, token)}"
                    )
        finally:
            for server in servers.values():
                server.stop()
            for process, _ in redises.values():
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()

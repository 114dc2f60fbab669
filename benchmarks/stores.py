"""The benchmark's Redis and `remotecalc serve` processes: a redis-server per appendfsync, servers on a store.

The orchestrator (run.py) starts them and reads their CPU time; it never opens a gRPC channel itself, so
that it may fork the callers' load processes (`benchmarks/callers.py`).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

import psutil  # type: ignore[import-untyped, unused-ignore]
import redis

__all__ = ["RedisProcess", "Served", "free_port"]

#: Debian's redis-server, as the tests use.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_LISTENING = re.compile(r"listening on (\S+)")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """A redis-server on loopback with AOF on and the given appendfsync, its data in a temporary directory."""

    def __init__(self, appendfsync: str) -> None:
        self.appendfsync = appendfsync
        self._directory = tempfile.TemporaryDirectory(prefix=f"remotecalc-bench-{appendfsync}-")
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", self._directory.name,
             "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync, "--logfile", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on {self.url}") from None
                time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """CPU seconds redis-server has used so far (user and system, from INFO cpu)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def close(self) -> None:
        """Stop it and remove its data."""
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._directory.cleanup()


class Served:
    """`remotecalc serve --port 0` in its own process, on a store, a core, a number of workers and more options."""

    def __init__(self, store: str, core: str = "sync", workers: int = 1, options: Sequence[str] = ()) -> None:
        self.command = [sys.executable, "-m", "remotecalc", "serve", "--port", "0", "--store", store, "--core", core]
        self.command += options
        if workers > 1:
            self.command += ["--workers", str(workers)]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        self._ps = psutil.Process(self.process.pid)
        self._address: str | None = None

    @property
    def address(self) -> str:
        """Its address, once it listens (the first use waits for it: start several, then ask each)."""
        if self._address is None:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            found = _LISTENING.search(line)
            if found is None:
                raise RuntimeError(f"{' '.join(self.command)} did not start: {line!r}")
            self._address = found.group(1)
            # Read to the end, so that the server never blocks on a full pipe.
            threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return self._address

    def cpu_seconds(self) -> float:
        """CPU seconds the server process (and its workers, if any) has used so far."""
        processes = [self._ps, *self._ps.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in processes)

    def close(self) -> None:
        """SIGTERM it (its workers follow) and wait."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

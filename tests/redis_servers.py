"""Real redis-server processes for the tests: started on a free loopback port, killed, restarted."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from conftest import free_port

#: Debian's redis-server (apt install redis-server), which the README's test command installs.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
WAIT = 30.0
_READY = "Ready to accept connections"


class RedisServer:
    """One redis-server on 127.0.0.1 with its data in directory; AOF with the given appendfsync."""

    def __init__(self, directory: Path, *, appendfsync: str = "always", port: int | None = None) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and data) and return once it accepts connections."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--daemonize", "no",
                "--logfile", "",
                "--protected-mode", "yes",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"redis-server not ready in {WAIT} s: {self.log[-5:]}") from None
            if line is None:
                raise AssertionError(f"redis-server ended: {self.log[-5:]}")
            if _READY in line:
                return

    def _read(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line)
            lines.put(line)
        lines.put(None)

    def kill(self) -> None:
        """SIGKILL it, as a crash would, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(WAIT)

    def stop(self) -> None:
        """Stop it for good."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.kill()

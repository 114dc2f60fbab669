"""Run `remotecalc serve` and other Python programs as child processes, with bounded waits."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

#: The console script pip installed beside this interpreter.
REMOTECALC = str(Path(sys.executable).with_name("remotecalc"))
WAIT = 30.0
LISTENING = re.compile(r"listening on (\S+)")


class Served:
    """A `remotecalc serve` child process and the lines it prints."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [REMOTECALC, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float = WAIT) -> str:
        """The next line printed; fails if none comes within timeout or the process ended."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"`remotecalc serve` printed nothing in {timeout} s; so far: {self.output}") from None
        if line is None:
            raise AssertionError(f"`remotecalc serve` ended: {self.output}, stderr: {self.stderr_text()}")
        self.output.append(line)
        return line

    def address(self) -> str:
        """The address from the 'listening on' line."""
        line = self.next_line()
        found = LISTENING.search(line)
        assert found, line
        return found.group(1)

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send signum, wait for the process to end; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"`remotecalc serve` did not stop within {WAIT} s of signal {signum}") from None

    def rest(self) -> str:
        """Everything printed after what next_line() returned, once the process has ended."""
        while (line := self._lines.get(timeout=WAIT)) is not None:
            self.output.append(line)
        return "".join(self.output)

    def stderr_text(self) -> str:
        """What it wrote to stderr, once it has ended."""
        assert self.process.stderr is not None
        return self.process.stderr.read() if self.process.poll() is not None else ""

    def kill(self) -> None:
        """End it for sure (cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


def run_python(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with args to the end, within a bounded wait."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=WAIT)

"""The benchmark's child processes: servers and the load generator, spoken to in JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Child", "start_server_process", "start_worker_process"]

#: The repository's root, the directory that holds the benchmarks package.
ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A Python child process running a module of this package, one JSON line per reply."""

    def __init__(self, module: str, *args: str) -> None:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Any:
        """The child's next JSON line."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.process.args!r} ended with code {self.process.wait()}")
        return json.loads(line)

    def ask(self, task: str, **args: Any) -> Any:
        """Have the worker run a task and return its result."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"task": task, "args": args}) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        """Close its stdin, which ends it, and wait for it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server_process(kind: str, core: str, sessions: int = 0, expire_after: float | None = None) -> Child:
    """A server of one kind in its own process; read() gives its address once it serves."""
    more = () if expire_after is None else ("--expire-after", str(expire_after))
    return Child("benchmarks.servers", "--kind", kind, "--core", core, "--sessions", str(sessions), *more)


def start_worker_process() -> Child:
    """The load generator in its own process."""
    return Child("benchmarks.worker")

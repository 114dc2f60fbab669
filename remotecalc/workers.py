"""`remotecalc serve --workers N`: N server processes sharing one port, each on its own core.

grpcio's Python server runs its handlers under one GIL, so one process uses about one core. The
parent here serves nothing: it checks that the port is free (a port held by any other program is
refused, as for one server), holds it with a socket that has SO_REUSEPORT on but never listens, so
only processes of this user that also ask for SO_REUSEPORT (its workers) can bind it too, and runs
N `remotecalc serve --shared-port` children on it; the kernel spreads connections over them. The
workers must share their sessions through a store outside them (Redis): the CLI refuses N > 1 on
the in-memory store, and checks every file a worker reads before starting any.

The parent wakes on whatever happens first: a worker listening, a worker ending (starting or not),
a signal. A worker that ends is started again, at most RESTART_LIMIT times within RESTART_WINDOW
seconds; one more end within the window stops them all and exits 1 with the last worker's own error,
whose stderr passes through the parent's. SIGTERM or Ctrl-C to the parent stops every worker: those
listening with the grace period, those still starting at once.
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from .addresses import host_port
from .server import bind_error

__all__ = [
    "PARENT_ENV",
    "RESTART_LIMIT",
    "RESTART_WINDOW",
    "RestartBudget",
    "follow_parent",
    "quiet_after_listening",
    "supervise",
]

#: The environment variable that tells a worker its parent's pid, so it stops when the parent dies.
PARENT_ENV = "REMOTECALC_WORKERS_PARENT"
#: At most this many restarts within RESTART_WINDOW seconds; one more end and the parent gives up.
RESTART_LIMIT = 5
RESTART_WINDOW = 10.0
# How long a worker may take to print its listening line before it is killed (and restarted);
# how long beyond the grace a listening worker gets to stop, and how long one still starting gets.
_START_WAIT = 30.0
_STOP_MARGIN = 5.0
_STOP_STARTING = 0.5
# While a worker starts, the parent looks at the clock this often (its start deadline).
_TICK = 1.0
_PR_SET_PDEATHSIG = 1
_PREFIX = "remotecalc: "


class RestartBudget:
    """At most limit restarts within any window seconds of clock: spend() says whether one more may go."""

    def __init__(
        self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window = limit, window
        self._clock = clock
        self._spent: collections.deque[float] = collections.deque()

    def spend(self) -> bool:
        """Count one restart now and return True, or return False if limit were already spent in the window."""
        now = self._clock()
        while self._spent and self._spent[0] <= now - self.window:
            self._spent.popleft()
        if len(self._spent) >= self.limit:
            return False
        self._spent.append(now)
        return True


class _Worker:
    """One worker process: whether it listens, whether it has ended, and the last lines it wrote to stderr."""

    def __init__(self, command: list[str], changed: threading.Event, err: IO[str], started: float) -> None:
        env = {**os.environ, PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        # A session of its own: Ctrl-C in a terminal reaches the parent only, which stops the workers
        # itself, so that no worker ends first and is taken for a crash and replaced.
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        self.started = started
        self.listening = threading.Event()
        self.ended = threading.Event()
        self.last_lines: collections.deque[str] = collections.deque(maxlen=3)
        self._changed, self._err = changed, err
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # read to the end, so that a worker never blocks on a full pipe
            if "listening on" in line and not self.listening.is_set():
                self.listening.set()
                self._changed.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        try:
            for line in self.process.stderr:
                if line.strip():
                    self.last_lines.append(line.strip())
                try:
                    self._err.write(line)
                    self._err.flush()
                except (OSError, ValueError):  # the parent's stderr is gone: keep reading for the last lines
                    pass
        finally:
            # Ended only once its stderr is read to the end, so that its last line is known.
            self.process.wait()
            self.ended.set()
            self._changed.set()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def describe_end(self) -> str:
        """How it ended: 'exited with code 2', 'was killed by SIGKILL'."""
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def last_error(self) -> str | None:
        """The last line it wrote to stderr, without the program's prefix; None if it wrote nothing."""
        if not self.last_lines:
            return None
        line = self.last_lines[-1]
        return line[len(_PREFIX) :] if line.startswith(_PREFIX) else line


def _reserve(host: str, port: int) -> socket.socket:
    """A bound socket with SO_REUSEPORT that never listens: the port stays ours and our workers'."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    holder = socket.socket(family, kind, protocol)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(address)
    return holder


def supervise(
    host: str,
    port: int,
    count: int,
    worker_args: Sequence[str],
    *,
    grace: float,
    summary: str = "",
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run count workers on host:port until SIGTERM or Ctrl-C, restarting any that ends; return the exit code.

    summary says what the workers serve with, in the listening line; clock times the restart
    window and each worker's start (a test passes its own).
    """
    refusal = bind_error(host, port)
    if refusal is not None:
        print(f"remotecalc: {refusal.strerror or refusal}", file=err)
        return 1
    holder = _reserve(host, port)
    port = int(holder.getsockname()[1])
    command = [sys.executable, "-m", "remotecalc", "serve", "--host", host, "--port", str(port), "--shared-port"]
    command += worker_args
    changed, stop = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        changed.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    budget = RestartBudget(clock=clock)
    workers: list[_Worker] = []
    try:
        for _ in range(count):
            workers.append(_Worker(command, changed, err, clock()))
        announced = False
        while not stop.is_set():
            starting = any(not worker.listening.is_set() for worker in workers)
            changed.wait(_TICK if starting else None)
            changed.clear()
            if stop.is_set():
                break
            for index, worker in enumerate(workers):
                if worker.ended.is_set():
                    if not budget.spend():
                        print(_giving_up(worker, budget), file=err, flush=True)
                        return 1
                    workers[index] = _Worker(command, changed, err, clock())
                    print(
                        f"remotecalc: worker {worker.pid} {worker.describe_end()}; "
                        f"started worker {workers[index].pid} in its place",
                        file=err,
                        flush=True,
                    )
                elif not worker.listening.is_set() and clock() - worker.started > _START_WAIT:
                    print(
                        f"remotecalc: worker {worker.pid} did not listen within {_START_WAIT:g} s: killing it",
                        file=err,
                        flush=True,
                    )
                    worker.process.kill()
            if not announced and all(worker.listening.is_set() for worker in workers):
                announced = True
                pids = " ".join(str(worker.pid) for worker in workers)
                served = f"{summary}, " if summary else ""
                print(
                    f"remotecalc listening on {host_port(host, port)} with {served}{count} worker processes "
                    f"(pids {pids}) (Ctrl-C to stop)",
                    file=out,
                    flush=True,
                )
        print("remotecalc stopping", file=out, flush=True)
        return 0
    finally:
        _stop_all(workers, grace)
        holder.close()
        if stop.is_set():
            print("remotecalc stopped", file=out, flush=True)


def _giving_up(worker: _Worker, budget: RestartBudget) -> str:
    """The one line the parent ends with: how often workers ended, and the last one's own error."""
    error = worker.last_error()
    said = f": {error}" if error else ""
    return (
        f"remotecalc: workers ended {budget.limit + 1} times within {budget.window:g} s, giving up; "
        f"the last, worker {worker.pid}, {worker.describe_end()}{said}"
    )


def _stop_all(workers: list[_Worker], grace: float) -> None:
    """SIGTERM every worker: one listening gets grace to finish its calls, one still starting a moment; then SIGKILL."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    began = time.monotonic()
    for worker in workers:
        allowed = grace + _STOP_MARGIN if worker.listening.is_set() else _STOP_STARTING
        try:
            worker.process.wait(max(0.0, began + allowed - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def follow_parent() -> None:
    """In a worker: end with SIGTERM when the parent that started it dies, even by SIGKILL (Linux)."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def quiet_after_listening() -> None:
    """In a worker that has printed its listening line: send the rest of its output nowhere.

    Its stdout is a pipe to the parent, read only for that line; after the parent dies, a print
    to it would fail with BrokenPipeError and could skip the worker's orderly stop.
    """
    sys.stdout.flush()
    nowhere = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nowhere, sys.stdout.fileno())
    os.close(nowhere)

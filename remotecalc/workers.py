"""`remotecalc serve --workers N`: N server processes sharing one port, each on its own core.

grpcio's Python server runs its handlers under one GIL, so one process uses about one core. The
parent here serves nothing: it checks that the port is free (a port held by any other program is
refused, as for one server), holds it with a socket that has SO_REUSEPORT on but never listens, so
only processes of this user that also ask for SO_REUSEPORT (its workers) can bind it too, and runs
N `remotecalc serve --shared-port` children on it; the kernel spreads connections over them. The
workers must share their sessions through a store outside them (Redis): the CLI refuses N > 1 on
the in-memory store. A worker that dies is started again; SIGTERM or Ctrl-C to the parent stops
every worker with the grace period, then the parent exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from .server import _address, _bind_error

__all__ = ["PARENT_ENV", "follow_parent", "quiet_after_listening", "supervise"]

#: The environment variable that tells a worker its parent's pid, so it stops when the parent dies.
PARENT_ENV = "REMOTECALC_WORKERS_PARENT"
# How long a worker may take to print its listening line, and beyond the grace to stop.
_START_WAIT = 30.0
_STOP_MARGIN = 5.0
_PR_SET_PDEATHSIG = 1


class _Worker:
    """One worker process, and an event set once it listens."""

    def __init__(self, command: list[str], ended: threading.Event) -> None:
        env = {**os.environ, PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        # A session of its own: Ctrl-C in a terminal reaches the parent only, which stops the workers
        # itself, so that no worker ends first and is taken for a crash and replaced.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._wait, args=(ended,), daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # read to the end, so that a worker never blocks on a full pipe
            if "listening on" in line:
                self.listening.set()

    def _wait(self, ended: threading.Event) -> None:
        self.process.wait()
        ended.set()

    def describe_end(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"


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
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
) -> int:
    """Run count workers on host:port until SIGTERM or Ctrl-C, restarting any that dies; return the exit code."""
    refusal = _bind_error(host, port)
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
    workers: list[_Worker] = []
    try:
        for _ in range(count):
            workers.append(_Worker(command, changed))
        if not _all_listening(workers, err):
            return 1
        pids = " ".join(str(worker.process.pid) for worker in workers)
        print(f"remotecalc listening on {_address(host, port)} with {count} workers, pids {pids} (Ctrl-C to stop)")
        out.flush()
        while True:
            changed.wait()
            changed.clear()
            if stop.is_set():
                break
            for index, worker in enumerate(workers):
                if worker.process.poll() is None:
                    continue
                again = _Worker(command, changed)
                workers[index] = again
                print(
                    f"remotecalc: worker {worker.process.pid} {worker.describe_end()}; "
                    f"started worker {again.process.pid} in its place",
                    file=err,
                    flush=True,
                )
                if not _all_listening([again], err):
                    return 1
        print("remotecalc stopping", file=out, flush=True)
        return 0
    finally:
        _stop_all(workers, grace)
        holder.close()
        if stop.is_set():
            print("remotecalc stopped", file=out, flush=True)


def _all_listening(workers: list[_Worker], err: IO[str]) -> bool:
    for worker in workers:
        if not worker.listening.wait(_START_WAIT) or worker.process.poll() is not None:
            state = "did not start listening" if worker.process.poll() is None else worker.describe_end()
            print(f"remotecalc: worker {worker.process.pid} {state} (its error is above)", file=err, flush=True)
            return False
    return True


def _stop_all(workers: list[_Worker], grace: float) -> None:
    """SIGTERM every worker, which lets its calls finish within grace; SIGKILL those still running after."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(grace + _STOP_MARGIN)
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

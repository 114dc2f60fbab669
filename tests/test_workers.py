"""`remotecalc serve --workers N`: one port, N processes, a dead worker replaced, all stopped on SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading

import pytest
from load import Writer, read_steps
from processes import WAIT, Served, run_python

import remotecalc

# In-memory workers (the CLI refuses that pairing) are enough to see processes start, share a
# port, die and stop; what they share through Redis is tested in test_scaling.py.
_SUPERVISE = (
    "import sys; from remotecalc.workers import supervise; "
    "sys.exit(supervise('127.0.0.1', {port}, {count}, [], grace=1.0))"
)
_LISTENING = re.compile(r"listening on (\S+) with (\d+) workers, pids ([\d ]+) \(")
_REPLACED = re.compile(r"worker (\d+) was killed by SIGKILL; started worker (\d+) in its place")


class Supervisor:
    """A supervise() parent process and the lines it prints (stdout and stderr)."""

    def __init__(self, port: int = 0, count: int = 2) -> None:
        code = _SUPERVISE.format(port=port, count=count)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self) -> str:
        """The next line it prints, within a bounded wait."""
        line = self.lines.get(timeout=WAIT)
        assert line is not None, "the supervisor ended"
        return line

    def kill(self) -> None:
        """End it for sure (cleanup); its workers follow it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


def _ends_within(pid: int, timeout: float = WAIT) -> bool:
    """True once process pid has ended (a zombie counts), waiting up to timeout; False if it still runs."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        watcher = select.poll()
        watcher.register(handle, select.POLLIN)
        return bool(watcher.poll(timeout * 1000))
    finally:
        os.close(handle)


def _served(address: str, calls: int) -> list[float]:
    """One create and close on each of calls connections, opened one after another (spread over the workers)."""
    values = []
    for n in range(calls):
        with remotecalc.connect(address, timeout=5) as client:
            values.append(client.create(n).answer())
    return values


def test_workers_share_one_port_a_killed_one_is_replaced_and_sigterm_stops_all() -> None:
    supervisor = Supervisor(count=2)
    try:
        found = _LISTENING.search(supervisor.next_line())
        assert found, "no listening line"
        address, count, pids = found.group(1), int(found.group(2)), [int(p) for p in found.group(3).split()]
        assert count == 2 and len(set(pids)) == 2 and not any(_ends_within(pid, 0) for pid in pids)
        assert _served(address, 6) == [float(n) for n in range(6)]

        os.kill(pids[0], signal.SIGKILL)
        replaced = _REPLACED.search(supervisor.next_line())
        assert replaced and int(replaced.group(1)) == pids[0]
        pids[0] = int(replaced.group(2))
        assert not _ends_within(pids[0], 0)
        assert _served(address, 6) == [float(n) for n in range(6)]

        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.wait(timeout=WAIT) == 0
        assert all(_ends_within(pid) for pid in pids)
        assert list(iter(supervisor.lines.get, None))[-2:] == ["remotecalc stopping\n", "remotecalc stopped\n"]
        with pytest.raises(remotecalc.Unavailable):
            _served(address, 1)
    finally:
        supervisor.kill()


def test_a_port_held_by_another_program_is_refused() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        supervisor = Supervisor(port=port, count=2)
        try:
            assert supervisor.process.wait(timeout=WAIT) == 1
            assert supervisor.next_line() == f"remotecalc: cannot listen on 127.0.0.1:{port}: the port is in use\n"
        finally:
            supervisor.kill()


def test_a_killed_supervisor_takes_its_workers_with_it() -> None:
    supervisor = Supervisor(count=2)
    try:
        found = _LISTENING.search(supervisor.next_line())
        assert found
        pids = [int(p) for p in found.group(3).split()]
        supervisor.process.kill()
        supervisor.process.wait(timeout=WAIT)
        assert all(_ends_within(pid) for pid in pids)
    finally:
        supervisor.kill()


def test_several_workers_on_the_in_memory_store_are_refused_with_why() -> None:
    ran = run_python("-m", "remotecalc", "serve", "--port", "0", "--workers", "2")
    assert ran.returncode == 2
    assert ran.stderr.splitlines()[-1] == (
        "remotecalc serve: error: --workers 2 needs a shared store (--store redis://HOST:PORT/DB): "
        "with sessions in memory, each worker would hold its own"
    )


def test_a_killed_worker_under_load_loses_and_doubles_nothing_and_a_watch_resumes(redis_url: str) -> None:
    served = Served("--port", "0", "--workers", "2", "--store", redis_url)
    progress = threading.Condition()
    try:
        found = _LISTENING.search(served.next_line())
        assert found, served.output
        address, pids = found.group(1), [int(p) for p in found.group(3).split()]
        # A client per thread: each its own connection, which the kernel gives to either worker.
        clients = [remotecalc.connect(address, timeout=10) for _ in range(4)]
        writers = [Writer(client, 100, progress) for client in clients[:3]]
        watch = clients[3].session(writers[0].session.token).watch()
        stream = iter(watch)
        assert next(stream).step_count == 0
        seen: list[int] = []
        reader = threading.Thread(target=read_steps, args=(stream, seen, 100), daemon=True)
        for thread in (*writers, reader):
            thread.start()
        with progress:
            assert progress.wait_for(lambda: all(w.acknowledged >= 30 or not w.is_alive() for w in writers), WAIT)
        for pid in pids:  # both, one after the other: whichever held a connection loses it
            os.kill(pid, signal.SIGKILL)
            assert _ends_within(pid)
        for thread in (*writers, reader):
            thread.join(WAIT)
        assert [w.failure for w in writers] == [None, None, None]
        assert [w.acknowledged for w in writers] == [100, 100, 100]
        assert [w.session.state().step_count for w in writers] == [100, 100, 100]
        assert seen == list(range(1, 101))
        watch.cancel()
        for client in clients:
            client.close()
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    # The supervisor replaced both workers (stderr, once it has ended).
    assert served.stderr_text().count("was killed by SIGKILL; started worker") == 2

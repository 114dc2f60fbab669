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
import time
from pathlib import Path

import psutil
import pytest
import trustme
from conftest import FakeClock
from load import Writer, read_steps
from processes import REMOTECALC, WAIT, Served, run_python

import remotecalc
from remotecalc.auth import new_token
from remotecalc.workers import RESTART_LIMIT, RESTART_WINDOW, RestartBudget

# In-memory workers (the CLI refuses that pairing) are enough to see processes start, share a
# port, die and stop; what they share through Redis is tested in test_scaling.py.
_SUPERVISE = (
    "import sys; from remotecalc.workers import supervise; "
    "sys.exit(supervise('127.0.0.1', {port}, {count}, {args!r}, grace=1.0{clock}))"
)
# A clock that never moves: every restart falls in one window, however slowly the workers start.
_FROZEN = ", clock=lambda: 0.0"
# A clock 100 times as fast as time: a worker's 30 s to listen pass in 0.3 s.
_FAST = ", clock=lambda: __import__('time').monotonic() * 100"
_LISTENING = re.compile(r"listening on (\S+) with .*?(\d+) worker processes \(pids ([\d ]+)\) \(")
_REPLACED = re.compile(r"worker (\d+) was killed by SIGKILL; started worker (\d+) in its place")


class Supervisor:
    """A supervise() parent process and the lines it prints (stdout and stderr)."""

    def __init__(self, port: int = 0, count: int = 2, args: tuple[str, ...] = (), *, clock: str = "") -> None:
        code = _SUPERVISE.format(port=port, count=count, args=list(args), clock=clock)
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

    def rest(self) -> list[str]:
        """Every line still to come, once it has ended."""
        return list(iter(lambda: self.lines.get(timeout=WAIT), None))

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


def _replaced(supervisor: Supervisor, pid: int) -> int:
    """The pid of the worker started in place of pid, from the supervisor's next line."""
    found = _REPLACED.search(supervisor.next_line())
    assert found and int(found.group(1)) == pid, found
    return int(found.group(2))


def test_a_worker_killed_while_starting_is_started_again_and_the_port_still_serves() -> None:
    supervisor = Supervisor(count=2)
    try:
        found = _LISTENING.search(supervisor.next_line())
        assert found, "no listening line"
        address, pids = found.group(1), [int(p) for p in found.group(3).split()]
        os.kill(pids[0], signal.SIGKILL)
        starting = _replaced(supervisor, pids[0])
        # At once, as an OOM kill would: the new worker is still importing, far from listening.
        os.kill(starting, signal.SIGKILL)
        again = _replaced(supervisor, starting)
        assert supervisor.process.poll() is None
        assert not _ends_within(again, 0)
        assert _served(address, 6) == [float(n) for n in range(6)]
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.wait(timeout=WAIT) == 0
        assert all(_ends_within(pid) for pid in (pids[1], again))
    finally:
        supervisor.kill()


def test_workers_that_cannot_start_end_the_parent_at_once_with_their_own_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    args = ("--tls-cert", str(missing), "--tls-key", str(missing))
    supervisor = Supervisor(count=2, args=args, clock=_FROZEN)
    began = time.monotonic()
    try:
        code = supervisor.process.wait(timeout=WAIT)
    finally:
        supervisor.kill()
    took = time.monotonic() - began
    print(f"the parent gave up after {took:.2f} s")
    lines = supervisor.rest()
    error = f"cannot read the TLS certificate {missing}: No such file or directory"
    assert code == 1
    # Each worker's own line passes through; the parent's last line quotes it.
    assert lines.count(f"remotecalc: {error}\n") >= RESTART_LIMIT + 1, lines
    assert len([line for line in lines if "started worker" in line]) == RESTART_LIMIT, lines
    assert re.fullmatch(
        rf"remotecalc: workers ended {RESTART_LIMIT + 1} times within {RESTART_WINDOW:g} s, giving up; "
        rf"the last, worker \d+, exited with code 2: {re.escape(error)}\n",
        lines[-1],
    ), lines[-1]
    assert not any("listening" in line or "Traceback" in line for line in lines), lines
    assert took < 20, "the parent waited on workers that had ended"


def test_ctrl_c_while_workers_start_stops_them_all_within_a_second(tmp_path: Path) -> None:
    # A key that is a named pipe nobody writes to: each worker waits to read it, never listening.
    key = tmp_path / "key.pem"
    os.mkfifo(key)
    cert = tmp_path / "cert.pem"
    cert.write_text("")
    supervisor = Supervisor(count=2, args=("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        parent = psutil.Process(supervisor.process.pid)
        deadline = time.monotonic() + WAIT
        while len(workers := parent.children()) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        supervisor.process.send_signal(signal.SIGINT)
        began = time.monotonic()
        code = supervisor.process.wait(timeout=WAIT)
        took = time.monotonic() - began
        print(f"stopped {took:.2f} s after Ctrl-C")
        assert code == 0
        assert all(_ends_within(worker.pid) for worker in workers)
        assert took < 5, "Ctrl-C waited for the workers to listen"
        assert supervisor.rest()[-2:] == ["remotecalc stopping\n", "remotecalc stopped\n"]
    finally:
        supervisor.kill()


def test_a_worker_that_does_not_listen_in_30_s_is_killed_and_started_again(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    os.mkfifo(key)
    (tmp_path / "cert.pem").write_text("")
    args = ("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(key))
    supervisor = Supervisor(count=1, args=args, clock=_FAST)
    try:
        line = supervisor.next_line()
        killing = re.fullmatch(r"remotecalc: worker (\d+) did not listen within 30 s: killing it\n", line)
        assert killing, line
        stuck = int(killing.group(1))
        assert _ends_within(stuck)
        _replaced(supervisor, stuck)
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.wait(timeout=WAIT) == 0
    finally:
        supervisor.kill()


def test_the_restart_budget_allows_five_in_any_ten_seconds() -> None:
    clock = FakeClock()
    budget = RestartBudget(clock=clock)
    assert (budget.limit, budget.window) == (5, 10.0)
    for _ in range(5):
        assert budget.spend()
        clock.advance(1)
    assert not budget.spend()  # a sixth within 10 s of the first
    clock.advance(5.5)  # the first is now 10.5 s old
    assert budget.spend()
    assert not budget.spend()
    clock.advance(100)
    assert all(budget.spend() for _ in range(5))
    assert not budget.spend()


def test_a_bad_file_with_workers_is_one_line_and_exit_2_before_any_worker_starts(
    redis_url: str, tmp_path: Path
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    missing = tmp_path / "missing.pem"
    ran = run_python(
        "-m", "remotecalc", "serve", "--port", "0", "--workers", "2", "--store", redis_url,
        "--tls-cert", str(cert), "--tls-key", str(missing),
    )  # fmt: skip
    assert ran.returncode == 2
    assert ran.stderr == f"remotecalc: cannot read the TLS key {missing}: No such file or directory\n"
    assert ran.stdout == ""


def _readme_unit() -> dict[str, str]:
    """The settings of the systemd unit docs/operations.md shows for `--workers` (its ```ini block)."""
    text = (Path(__file__).parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    block = text.split("Under systemd", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    settings = {}
    for line in block.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_the_readmes_systemd_unit_serves_and_stops_as_systemd_would_run_it(redis_url: str, tmp_path: Path) -> None:
    unit = _readme_unit()
    assert unit["KillMode"] == "mixed"  # SIGTERM to the parent alone, as below
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server-key.pem"))
    token = new_token()
    (tmp_path / "tokens").write_text(f"alice:{token}\n")
    (tmp_path / "tokens").chmod(0o600)
    # As written, but for loopback, a free port, the test's Redis and two workers on two cores.
    command = unit["ExecStart"].replace("/etc/remotecalc/", f"{tmp_path}/").replace("0.0.0.0", "127.0.0.1")
    command = command.replace("--port 3000", "--port 0").replace("redis://127.0.0.1:6379/0", redis_url)
    command = command.replace("--workers 4", "--workers 2")
    program, serve, *args = command.split()
    assert (Path(program).name, serve) == ("remotecalc", "serve")
    served = Served(*args)
    try:
        found = _LISTENING.search(served.next_line())
        assert found, served.output
        pids = [int(p) for p in found.group(3).split()]
        roots = ca.cert_pem.bytes()
        with remotecalc.connect(found.group(1), root_certificates=roots, auth_token=token, timeout=5) as client:
            assert client.create(2).add(3) == 5
        began = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=float(unit["TimeoutStopSec"])) == 0
        print(f"stopped in {time.monotonic() - began:.2f} s")
        assert all(_ends_within(pid, 0) for pid in pids)
    finally:
        served.kill()
    # A file that cannot serve will not mend by itself: its exit code is the one systemd does not restart.
    (tmp_path / "server-key.pem").unlink()
    ran = subprocess.run([REMOTECALC, serve, *args], capture_output=True, text=True, timeout=WAIT)
    assert str(ran.returncode) == unit["RestartPreventExitStatus"], ran.stderr

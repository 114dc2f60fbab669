"""Several replicas: a client balances over their addresses, a dead one costs nothing, a Watch resumes."""

from __future__ import annotations

import subprocess
import sys
import threading

import grpc
import pytest
from conftest import FakeClock, free_port
from load import Writer, read_steps
from processes import WAIT

import remotecalc
from remotecalc.client import grpc_target
from remotecalc.errors import StepsNotKept


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:3000", ("127.0.0.1:3000", False)),
        ("localhost:3000", ("localhost:3000", False)),
        ("127.0.0.1:3001, 127.0.0.2:3002", ("ipv4:127.0.0.1:3001,127.0.0.2:3002", True)),
        ("[::1]:3001,::1:3002", ("ipv6:[::1]:3001,[::1]:3002", True)),
        ("dns:///replicas.example:3000", ("dns:///replicas.example:3000", True)),
    ],
)
def test_several_addresses_become_one_balanced_target(target: str, expected: tuple[str, bool]) -> None:
    assert grpc_target(target) == expected


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("localhost:3001,localhost:3002", "use dns:///NAME:PORT"),
        ("127.0.0.1:3001,[::1]:3002", "must all be IPv4 or all IPv6"),
        ("127.0.0.1:3001,127.0.0.1:0", "the port must be 1 to 65535"),
        ("127.0.0.1:3001,127.0.0.1", "is not IP:PORT"),
    ],
)
def test_several_addresses_that_cannot_be_balanced_are_refused_with_why(target: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        remotecalc.connect(target)
    with pytest.raises(ValueError, match="no address"):
        remotecalc.connect([])


def test_a_dead_replica_among_the_addresses_costs_no_call() -> None:
    with remotecalc.start_server(port=0, clock=FakeClock()) as live:
        dead = f"127.0.0.1:{free_port()}"
        with remotecalc.connect([dead, live, dead], timeout=5) as client:
            assert client.target == f"{dead},{live.address},{dead}"
            sessions = [client.create(n) for n in range(20)]
            assert [session.add(1) for session in sessions] == [n + 1 for n in range(20)]
        assert len(live.engine) == 20


def test_calls_are_spread_over_every_replica() -> None:
    # Clocks of their own: the same arguments would return the same server.
    with (
        remotecalc.start_server(port=0, clock=FakeClock()) as one,
        remotecalc.start_server(port=0, clock=FakeClock()) as two,
    ):
        with remotecalc.connect(f"{one.address},{two.address}") as client:
            # Calls go to the replicas whose connection is ready: at first, maybe only one.
            for _ in range(200):
                client.create(0)
                if len(one.engine) and len(two.engine):
                    break
            before = (len(one.engine), len(two.engine))
            for n in range(20):
                client.create(n)
        # Once both are ready, round_robin sends each new call to the next one.
        assert (len(one.engine) - before[0], len(two.engine) - before[1]) == (10, 10)


# -- replicas on one Redis store -------------------------------------------------------------------

_REPLICA = (
    "import signal, remotecalc; "
    "server = remotecalc.start_server(port={port}, store={url!r}); "
    "print('listening on', server.address, flush=True); "
    "signal.sigwait({{signal.SIGTERM, signal.SIGINT}}); server.stop(0)"
)


class Replica:
    """A replica in a process of its own (start_server on the Redis store), to SIGKILL."""

    def __init__(self, url: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        code = _REPLICA.format(port=self.port, url=url)
        self.process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # bounded: the process prints it or ends
        assert line == f"listening on {self.address}\n", line

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)


def test_replicas_on_one_store_share_sessions_and_a_stopped_one_costs_no_call(redis_url: str) -> None:
    one = remotecalc.start_server(port=0, store=redis_url, clock=FakeClock())
    two = remotecalc.start_server(port=0, store=redis_url, clock=FakeClock())
    try:
        with remotecalc.connect([one, two]) as both, remotecalc.connect(two) as only_two:
            session = both.create(1)
            with only_two.session(session.token).watch() as updates:
                seen = iter(updates)
                assert next(seen).value == 1
                assert [session.add(1) for _ in range(4)] == [2, 3, 4, 5]
                one.stop(grace=0)
                assert [session.add(1) for _ in range(4)] == [6, 7, 8, 9]
                assert [next(seen).step_count for _ in range(8)] == list(range(1, 9))
            assert session.value() == 9
    finally:
        one.stop(grace=0)
        two.stop(grace=0)


def test_killed_replicas_under_load_lose_and_double_nothing_and_watches_resume(redis_url: str) -> None:
    first, second = Replica(redis_url), Replica(redis_url)
    restarted: Replica | None = None
    progress = threading.Condition()
    try:
        with remotecalc.connect([first.address, second.address], timeout=10) as client:
            # The watched session's writer waits at 70 adds until both kills are done, so its watches are still open.
            release = threading.Event()
            writers = [Writer(client, 120, progress, hold=(70, release))]
            writers += [Writer(client, 120, progress) for _ in range(2)]
            watched = writers[0].session
            # Two watches: round_robin may put both on one replica, so both replicas are killed in turn.
            watches = [watched.watch() for _ in range(2)]
            streams = [iter(watch) for watch in watches]
            assert [next(stream).step_count for stream in streams] == [0, 0]
            seen: list[list[int]] = [[], []]
            readers = [
                threading.Thread(target=read_steps, args=(stream, seen[i], 120), daemon=True)
                for i, stream in enumerate(streams)
            ]
            for thread in (*writers, *readers):
                thread.start()

            def done(count: int) -> bool:
                return all(w.acknowledged >= count or w.failure or not w.is_alive() for w in writers)

            with progress:
                assert progress.wait_for(lambda: done(30), WAIT)
            first.kill()
            restarted = Replica(redis_url, first.port)
            with progress:
                assert progress.wait_for(lambda: done(70), WAIT)
            second.kill()
            release.set()
            for thread in (*writers, *readers):
                thread.join(WAIT)
            assert [w.failure for w in writers] == [None, None, None]
            # Every acknowledged add is there exactly once, as the replica left standing reads it.
            assert [w.acknowledged for w in writers] == [120, 120, 120]
            with remotecalc.connect(restarted.address) as reader:
                states = [reader.session(w.session.token).state() for w in writers]
            assert [(state.step_count, state.value) for state in states] == [(120, 120.0)] * 3
            # Each watch saw every step once, in order, across a broken stream.
            assert seen == [list(range(1, 121)), list(range(1, 121))]
            assert all(watch.resumes >= 1 for watch in watches)
            for watch in watches:
                watch.cancel()
    finally:
        for replica in (first, second, restarted):
            if replica is not None:
                replica.kill()


def test_a_watch_broken_before_any_step_resumes_with_the_steps_it_missed(redis_url: str) -> None:
    # after_step 0 means "from now", so a watch that had delivered no step yet fills the gap from the history.
    one = remotecalc.start_server(port=0, store=redis_url, clock=FakeClock())
    two = remotecalc.start_server(port=0, store=redis_url, clock=FakeClock())
    again: remotecalc.RunningServer | None = None
    try:
        with remotecalc.connect(one, timeout=10) as watcher, remotecalc.connect(two) as writer:
            session = writer.create(1)
            breaks: list[str] = []
            watch = watcher.session(session.token).watch(on_resume=lambda error: breaks.append(repr(error)))
            updates = iter(watch)
            assert next(updates).step_count == 0
            one.stop(grace=0)
            assert [session.add(1) for _ in range(3)] == [2, 3, 4]
            again = remotecalc.start_server(port=one.port, store=redis_url, clock=FakeClock())
            update = next(updates)
            assert (update.step_count, [step.number for step in update.steps], update.value) == (3, [1, 2, 3], 4)
            session.add(1)
            assert [step.number for step in next(updates).steps] == [4]
            assert (
                watch.resumes >= 1
                and breaks[0].startswith(("ServerStopping(", "Unavailable("))
                and breaks[-1] == "None"
            )
            watch.cancel()
    finally:
        for server in (one, two, again):
            if server is not None:
                server.stop(grace=0)


@pytest.mark.parametrize("delivered", [0, 1], ids=["no step delivered: the client fills", "after_step served"])
def test_a_watch_that_cannot_resume_without_a_gap_says_so(redis_url: str, delivered: int) -> None:
    # Only the last 3 steps are kept: a watch that missed 5 cannot resume without skipping some.
    def replica(port: int = 0) -> remotecalc.RunningServer:
        return remotecalc.start_server(port=port, store=redis_url, clock=FakeClock(), history_limit=3)

    one, two = replica(), replica()
    again: remotecalc.RunningServer | None = None
    try:
        with remotecalc.connect(one, timeout=10) as watcher, remotecalc.connect(two) as writer:
            session = writer.create(0)
            updates = iter(watcher.session(session.token).watch())
            assert next(updates).step_count == 0
            for step in range(1, delivered + 1):
                session.add(1)
                assert next(updates).step_count == step
            one.stop(grace=0)
            session.apply_many([("+", 1)] * 5)  # one change, of which only the last 3 steps are kept
            again = replica(one.port)
            with pytest.raises(StepsNotKept) as raised:
                next(updates)
            assert raised.value.code is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        for server in (one, two, again):
            if server is not None:
                server.stop(grace=0)

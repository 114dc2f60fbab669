"""Behind Debian's nginx with the configuration docs/operations.md gives: Watch, balancing, a replica killed.

Two `remotecalc serve` replicas share sessions in Redis; nginx (`grpc_pass`) is the clients' one address.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from load import Writer, read_steps
from nginx_proxy import Nginx, connections_to, documented_configuration, unread_bytes
from processes import WAIT, Served

import remotecalc
from remotecalc.client import uuid7
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

APPLY = "/remotecalc.v1.Calculator/Apply"
CREATE = "/remotecalc.v1.Calculator/CreateSession"
# More than HTTP/2's control frames (a PING ack is 17 bytes, a WINDOW_UPDATE 13): a call's headers and message.
A_CALL = 100


class Replica(NamedTuple):
    """A `remotecalc serve` process on the Redis store and the address it printed."""

    served: Served
    address: str

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.address.rsplit(":", 1)[1])


@pytest.fixture
def replicas(redis_url: str) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas on one Redis, each a `remotecalc serve` of its own, started side by side."""
    started = [Served("--port", "0", "--store", redis_url) for _ in range(2)]
    try:
        one, two = (Replica(served, served.address()) for served in started)
        yield one, two
    finally:
        for served in started:
            served.kill()


@contextmanager
def _nginx(directory: Path, replicas: tuple[Replica, Replica], **timeouts: str) -> Iterator[Nginx]:
    nginx = Nginx(directory, [replica.address for replica in replicas], **timeouts)
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture
def proxy(tmp_path: Path, replicas: tuple[Replica, Replica]) -> Iterator[Nginx]:
    """nginx in front of the replicas, with the documented configuration."""
    with _nginx(tmp_path, replicas) as nginx:
        yield nginx


def _wait_for_a_call_held_by(replica: Replica, done: threading.Event | None = None) -> bool:
    """Wait until a call waits unread at the (frozen) replica: True; or until done is set first: False."""
    deadline = time.monotonic() + WAIT
    while unread_bytes(replica.port) <= A_CALL:
        if done is not None and done.is_set():
            return False
        assert time.monotonic() < deadline, f"no call reached the frozen replica on {replica.address} in {WAIT} s"
        time.sleep(0.005)  # polling the kernel's socket table, not waiting for time to pass
    return True


def test_the_documented_configuration_keeps_a_quiet_watch_open_and_balances_per_call() -> None:
    documented = documented_configuration()
    assert "grpc_pass grpc://remotecalc;" in documented
    assert "grpc_read_timeout 1h;" in documented and "grpc_send_timeout 60s;" in documented
    assert "keepalive 32;" in documented and "http2;" in documented


def test_a_quiet_watch_reset_by_the_proxy_resumes_with_no_step_missing_or_repeated(
    tmp_path: Path, replicas: tuple[Replica, Replica]
) -> None:
    # nginx resets a stream that sends nothing for grpc_read_timeout (60 s by default; 2 s here). The send
    # timeout, shorter, runs only while nginx has a message for the replica: a Watch sends one, at once.
    with (
        _nginx(tmp_path, replicas, grpc_read_timeout="2s", grpc_send_timeout="1s") as proxy,
        remotecalc.connect(proxy.address, timeout=10) as client,
        client.create(1) as session,
    ):
        heard = threading.Event()
        reasons: list[BaseException | None] = []
        ended: list[BaseException] = []

        def on_resume(error: BaseException | None) -> None:
            reasons.append(error)
            heard.set()

        def read(updates: Iterator[remotecalc.Update], seen: list[int]) -> None:
            try:
                read_steps(updates, seen, 4)
            except BaseException as error:  # the Watch ended instead of resuming: the test reports it
                ended.append(error)
                heard.set()

        with session.watch(on_resume=on_resume) as watch:
            updates = iter(watch)
            assert next(updates).step_count == 0
            assert session.add(1) == 2
            assert [step.number for step in next(updates).steps] == [1]
            seen: list[int] = []
            reader = threading.Thread(target=read, args=(updates, seen), daemon=True)
            reader.start()
            # Quiet now: nginx resets the stream after 2 s, and the client watches again by itself.
            assert heard.wait(WAIT), "the Watch was never reset by nginx, or never said so"
            assert not ended, f"the Watch ended when nginx reset it, instead of resuming: {ended[0]!r}"
            print(f"the proxy's reset, as on_resume heard it: {reasons[0]!r}")
            assert "RST_STREAM" in str(reasons[0])
            # nginx says which timeout it was: reading from the replica, not sending to it.
            assert "upstream timed out (110: Connection timed out) while reading upstream" in proxy.error_log()
            assert "while sending" not in proxy.error_log()
            for operand in (1, 1, 1):
                session.add(operand)
            reader.join(WAIT)
            assert seen == [2, 3, 4]
            assert watch.resumes >= 1
        assert session.value() == 5


def test_unary_calls_on_one_connection_are_balanced_call_by_call(
    proxy: Nginx, replicas: tuple[Replica, Replica]
) -> None:
    with remotecalc.connect(proxy.address, timeout=10) as client:
        sessions = [client.create(n) for n in range(10)]
        assert [session.add(1) for session in sessions] == [n + 1 for n in range(10)]
    calls = proxy.calls(at_least=20)
    assert [(call.path, call.status) for call in calls] == [(CREATE, 200)] * 10 + [(APPLY, 200)] * 10
    # One client, one connection to nginx; nginx sends its calls to the replicas in turn.
    assert len({call.connection for call in calls}) == 1
    served_by = Counter(call.replicas for call in calls)
    print(f"calls per replica: {dict(served_by)}")
    assert served_by == {(replicas[0].address,): 10, (replicas[1].address,): 10}


def test_each_open_watch_holds_a_connection_from_the_proxy_to_a_replica(
    proxy: Nginx, replicas: tuple[Replica, Replica]
) -> None:
    with remotecalc.connect(proxy.address, timeout=10) as client, client.create(0) as session:
        watches = [session.watch() for _ in range(4)]
        for watch in watches:
            assert next(iter(watch)).step_count == 0
        # nginx does not multiplex calls to a replica: a call in progress has a connection of its own.
        held = [connections_to(replica.port) for replica in replicas]
        print(f"connections from nginx to each replica with 4 Watches open: {held}")
        assert sum(held) >= 4
        for watch in watches:
            watch.cancel()


def test_a_call_in_flight_on_a_killed_replica_is_unavailable_and_its_request_id_settles_it(
    proxy: Nginx, replicas: tuple[Replica, Replica]
) -> None:
    victim = replicas[0]
    with remotecalc.connect(proxy.address, timeout=10) as client:
        session = client.create(0)
        # Any gRPC client, retries off: what the caller sees is nginx's answer itself.
        with grpc.insecure_channel(proxy.address, options=[("grpc.enable_retries", 0)]) as channel:
            stub = pb_grpc.CalculatorStub(channel)
            victim.served.process.send_signal(signal.SIGSTOP)
            applied = 0
            for _ in range(4):  # nginx takes the replicas in turn: the first or the second call goes to the victim
                held = pb.ApplyRequest(
                    token=session.token,
                    operation=pb.Operation(operator=pb.Operator.OPERATOR_ADD, operand=1),
                    request_id=str(uuid7()),
                )
                future = stub.Apply.future(held, timeout=WAIT)
                answered = threading.Event()
                future.add_done_callback(lambda _, answered=answered: answered.set())
                if _wait_for_a_call_held_by(victim, answered):
                    break
                applied += 1
                assert future.result().value == applied
            else:
                raise AssertionError("no call went to the frozen replica")
            victim.served.process.kill()
            error = future.exception(timeout=WAIT)
            assert isinstance(error, grpc.RpcError)
            print(f"the call in flight on the killed replica: {error.code().name} {error.details()!r}")
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "502" in str(error.details())
            # Sent again with its request id, twice: applied once, answered with that first outcome both times.
            assert stub.Apply(held, timeout=WAIT).value == applied + 1
            assert stub.Apply(held, timeout=WAIT).value == applied + 1
        assert (session.state().step_count, session.value()) == (applied + 1, applied + 1)
    assert [call.status for call in proxy.calls() if call.replicas == (victim.address,)][-1] == 502


def test_replicas_killed_behind_the_proxy_under_load_lose_and_double_nothing(
    proxy: Nginx, replicas: tuple[Replica, Replica]
) -> None:
    victim = replicas[0]
    progress = threading.Condition()
    with remotecalc.connect(proxy.address, timeout=10) as client:
        writers = [Writer(client, 150, progress) for _ in range(3)]
        for writer in writers:
            writer.start()
        with progress:
            assert progress.wait_for(lambda: all(w.acknowledged >= 40 or w.failure for w in writers), WAIT)
        # Frozen first, so that calls are surely in flight on it when it dies.
        victim.served.process.send_signal(signal.SIGSTOP)
        _wait_for_a_call_held_by(victim)
        victim.served.process.kill()
        for writer in writers:
            writer.join(WAIT)
        assert [w.failure for w in writers] == [None, None, None]
        assert [w.acknowledged for w in writers] == [150, 150, 150]
        # Every add, acknowledged at once or settled by its request id, is in its session exactly once.
        assert [(w.session.state().step_count, w.session.value()) for w in writers] == [(150, 150.0)] * 3
    failed = [call for call in proxy.calls() if call.status != 200]
    assert failed, "no call was in flight on the killed replica"
    assert {(call.path, call.status, call.replicas) for call in failed} == {(APPLY, 502, (victim.address,))}
    print(
        f"{len(failed)} calls answered 502 by nginx; resent by gRPC with their request ids, "
        f"or settled by OutcomeUnknown.resolve(): {[w.resolved for w in writers]}"
    )

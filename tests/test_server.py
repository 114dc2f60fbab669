"""The launcher: port clashes, re-runs, stopping, reflection, health, the aio core, exit."""

from __future__ import annotations

import collections
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import FakeClock
from contracts import ArticleCalls, V1Calls, reason_of, rpc_error
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from processes import REMOTECALC, WAIT, run_python

import remotecalc
from remotecalc import OutcomeUnknown, PortInUse, RunningServer, Unavailable, start_server
from remotecalc.v1 import calculator_pb2 as pb

SERVICES = {"Calculator", "remotecalc.v1.Calculator", "grpc.health.v1.Health"}


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningServer]:
    """One server for the tests that only read from it."""
    with start_server(port=0, clock=FakeClock()) as running:
        yield running


def test_a_second_launch_on_a_taken_port_fails_at_once_and_does_not_share_it(server: RunningServer) -> None:
    with pytest.raises(PortInUse, match=f"127.0.0.1:{server.port}.*in use"):
        start_server(port=server.port)
    with pytest.raises(PortInUse):
        start_server(port=server.port)  # a failed launch is not remembered as running
    # With SO_REUSEPORT the kernel would spread new connections over both listeners.
    for _ in range(20):
        with grpc.insecure_channel(server.address) as channel:
            V1Calls(channel).create(1)
    assert len(server.engine) == 20


def test_remotecalc_serve_on_a_taken_port_exits_1_with_a_message(server: RunningServer) -> None:
    ran = subprocess.run(
        [REMOTECALC, "serve", "--port", str(server.port)], capture_output=True, text=True, timeout=WAIT
    )
    assert ran.returncode == 1
    # One line, ours: gRPC's own "E... add_port.cc" log line must not precede it.
    assert ran.stderr == f"remotecalc: cannot listen on 127.0.0.1:{server.port}: the port is in use\n"
    assert "listening" not in ran.stdout


def test_the_same_arguments_return_the_running_server_and_a_new_one_after_stop() -> None:
    clock = FakeClock()
    first = start_server(port=0, clock=clock)
    try:
        assert start_server(port=0, clock=clock) is first
        assert start_server(port=0, clock=FakeClock()) is not first
    finally:
        first.stop()
    again = start_server(port=0, clock=clock)
    try:
        assert again is not first
        assert again.running and not first.running
        with grpc.insecure_channel(again.address) as channel:
            assert V1Calls(channel).create(3)
    finally:
        again.stop()


def test_stop_is_idempotent() -> None:
    running = start_server(port=0, clock=FakeClock())
    assert running.running
    running.stop()
    running.stop(grace=0)
    assert not running.running
    assert running.wait(timeout=0)
    assert "stopped" in repr(running)


def test_the_context_manager_stops_the_server() -> None:
    with start_server(port=0, clock=FakeClock()) as running, grpc.insecure_channel(running.address) as channel:
        V1Calls(channel).create(1)
    assert not running.running
    with grpc.insecure_channel(running.address) as channel:
        assert rpc_error(lambda: V1Calls(channel).create(1)).code() is grpc.StatusCode.UNAVAILABLE


def test_reflection_lists_both_calculators_and_health(shared: RunningServer) -> None:
    with grpc.insecure_channel(shared.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert set(database.get_services()) >= SERVICES
        pool = DescriptorPool(database)
        v1 = pool.FindServiceByName("remotecalc.v1.Calculator")
        assert {method.name for method in v1.methods} == {
            "CreateSession",
            "Apply",
            "ApplyBatch",
            "GetSession",
            "CloseSession",
            "WatchSession",
        }
        article = pool.FindServiceByName("Calculator")
        assert {method.name for method in article.methods} == {
            "Create",
            "Answer",
            "Add",
            "Subtract",
            "Multiply",
            "Divide",
        }


def test_health_answers_serving(shared: RunningServer) -> None:
    with grpc.insecure_channel(shared.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "Calculator", "remotecalc.v1.Calculator"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_the_aio_core_serves_both_contracts_errors_and_watch() -> None:
    with (
        start_server(port=0, clock=FakeClock(), core="aio") as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        article, v1 = ArticleCalls(channel), V1Calls(channel)
        token = article.create(0)
        stream = v1.stub.WatchSession(pb.WatchSessionRequest(token=token))
        assert next(stream).value == 0
        for symbol, operand in (("+", 5), ("-", 3), ("*", 10), ("/", 2)):
            article.apply(token, symbol, operand)
        error = rpc_error(lambda: v1.apply(token, "/", 0))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(error) == "DIVISION_BY_ZERO"
        assert article.close(token) == 10.0
        assert [message.value for message in stream] == [5, 2, 20, 10, 10]
    assert not running.running


def test_servers_still_running_are_stopped_at_interpreter_exit() -> None:
    script = textwrap.dedent(
        """
        import atexit
        servers = []
        # Registered before remotecalc's own handler, so it runs after it.
        atexit.register(lambda: print("running at exit:", [s.running for s in servers], flush=True))
        import remotecalc
        servers.append(remotecalc.start_server(port=0))
        servers.append(remotecalc.start_server(port=0, core="aio"))
        print("started", flush=True)
        """
    )
    ran = run_python("-c", script)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["started", "running at exit: [False, False]"]


def test_connect_accepts_a_running_server(shared: RunningServer) -> None:
    with remotecalc.connect(shared) as client:
        assert client.target == shared.address
        with client.create(2) as session:
            assert session.add(3) == 5


def test_sixteen_clients_adding_to_one_session_are_all_counted(server: RunningServer) -> None:
    threads, adds = 16, 500
    with remotecalc.connect(server) as owner:
        session = owner.create(0)
        start = threading.Barrier(threads)
        failures: list[BaseException] = []

        def add_many() -> None:
            try:
                with remotecalc.connect(server) as client:
                    mine = client.session(session.token)
                    start.wait(timeout=30)
                    for _ in range(adds):
                        mine.add(1)
            except BaseException as error:  # reported below, from the test's thread
                failures.append(error)

        workers = [threading.Thread(target=add_many) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not failures
        assert not any(worker.is_alive() for worker in workers)
        state = session.state()
    assert state.value == threads * adds == 8000
    assert state.step_count == 8000


def test_idle_timeout_and_history_limit_are_configurable() -> None:
    clock = FakeClock()
    with (
        start_server(port=0, clock=clock, idle_timeout=5, history_limit=2) as running,
        remotecalc.connect(running) as client,
    ):
        session = client.create(0)
        session.apply_many([("+", 1), ("+", 2), ("+", 3)])
        assert [step.number for step in session.history()] == [2, 3]
        clock.advance(5)
        assert session.add(4) == 10
        clock.advance(5.5)
        with pytest.raises(remotecalc.SessionNotFound):
            session.value()


def test_watches_beyond_the_spare_workers_are_refused_and_other_calls_still_run() -> None:
    # Each open Watch holds a worker thread of the sync core; 6 workers keep 4 free, so 2 watches.
    with start_server(port=0, max_workers=6) as running, remotecalc.connect(running, timeout=5) as client:
        session = client.create(1)
        watches = [session.watch() for _ in range(2)]
        firsts = [next(iter(watch)) for watch in watches]
        assert [update.value for update in firsts] == [1.0, 1.0]
        with pytest.raises(remotecalc.TooManyWatchers) as refused:
            next(iter(session.watch()))
        assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert session.add(2) == 3.0
        for watch in watches:
            watch.cancel()


@pytest.mark.parametrize("core", ["sync", "aio"])
def test_a_burst_of_4000_concurrent_calls_on_one_channel_all_run(core: str) -> None:
    # gRPC's core drops calls beyond 1,000 waiting for a server thread as CANCELLED unless told otherwise.
    with (
        start_server(port=0, core=core, clock=FakeClock()) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        v1 = V1Calls(channel)
        token = v1.create(0)
        add = pb.ApplyRequest(token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=1))
        calls = [v1.stub.Apply.future(add, timeout=60) for _ in range(4000)]
        codes = collections.Counter(_code_of(call) for call in calls)
        assert codes == {grpc.StatusCode.OK: 4000}
        assert v1.read(token)[:2] == (4000, 4000)


def _code_of(call: Any) -> grpc.StatusCode:
    try:
        call.result()
    except grpc.RpcError as error:
        failed: Any = error
        return failed.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


class _Adder(threading.Thread):
    """A client adding batches to its own session until a call fails; keeps its count and the error."""

    BATCH = 2000

    def __init__(self, address: str, first_done: threading.Semaphore) -> None:
        super().__init__()
        self.client = remotecalc.connect(address)
        self.session = self.client.create(0)
        self.applied = 0
        self.error: BaseException | None = None
        self._first_done = first_done

    def run(self) -> None:
        try:
            while True:
                self.session.apply_many([("+", 1)] * self.BATCH)
                self.applied += 1
                if self.applied == 1:
                    self._first_done.release()
        except BaseException as error:  # kept for the test's thread
            self.error = error
            if self.applied == 0:
                self._first_done.release()


@pytest.mark.parametrize("core", ["sync", "aio"])
def test_stopping_with_calls_in_flight_loses_none_and_every_unknown_outcome_resolves_once(core: str) -> None:
    running = start_server(port=0, core=core, clock=FakeClock())
    first_done = threading.Semaphore(0)
    adders = [_Adder(running.address, first_done) for _ in range(6)]
    try:
        for adder in adders:
            adder.start()
        for _ in adders:
            assert first_done.acquire(timeout=30)
        running.stop(grace=10)
        for adder in adders:
            adder.join(timeout=30)
        errors = [adder.error for adder in adders]
        # A call the server never ran is retried by the client and ends UNAVAILABLE, never CANCELLED.
        assert all(isinstance(error, Unavailable) for error in errors), errors
        steps = {adder.session.token: running.engine.snapshot(adder.session.token).step_count for adder in adders}
        # Calls in flight finished; the one that failed did nothing.
        assert steps == {adder.session.token: adder.applied * _Adder.BATCH for adder in adders}
        # Back on the same port over the same sessions, each unknown outcome resolves, applied once.
        again = RunningServer(running.engine, "127.0.0.1", running.port, core, 8)
        try:
            for adder in adders:
                error = adder.error
                assert isinstance(error, OutcomeUnknown)
                expected = (adder.applied + 1) * _Adder.BATCH
                assert error.resolve() == expected
                assert error.resolve() == expected
                assert adder.session.state().step_count == expected
        finally:
            again.stop(grace=0)
    finally:
        running.stop(grace=0)
        for adder in adders:
            adder.client.close()

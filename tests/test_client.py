"""The Python client: exception classes and codes, deadlines, sessions, on_call."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import FakeClock
from markdown_pages import python_block

import remotecalc
from remotecalc import (
    CallRecord,
    Client,
    DeadlineExceeded,
    DivisionByZero,
    InvalidOperand,
    InvalidToken,
    OutcomeUnknown,
    OutOfRange,
    RemoteCalcError,
    RunningServer,
    SessionNotFound,
    TooManySessions,
    Unavailable,
    start_server,
)
from remotecalc.client import DEFAULT_TIMEOUT, uuid7
from remotecalc.errors import class_for_code, error_for
from remotecalc.service import add_services
from remotecalc.stores.memory import MemoryStore


@pytest.mark.parametrize(
    ("provoke", "error", "code"),
    [
        (lambda c: c.session("A" * 22).value(), SessionNotFound, grpc.StatusCode.NOT_FOUND),
        (lambda c: c.create(1).divide(0), DivisionByZero, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.session("").add(1), InvalidToken, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.session("x" * 100_000).add(1), InvalidToken, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.create(math.nan), InvalidOperand, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.create(1).add(math.inf), InvalidOperand, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.create(1e308).multiply(10), OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    ],
)
def test_errors_are_the_right_class_and_carry_their_status_code(
    client: Client, provoke: Callable[[Client], Any], error: type[RemoteCalcError], code: grpc.StatusCode
) -> None:
    with pytest.raises(error) as raised:
        provoke(client)
    assert type(raised.value) is error
    assert raised.value.code is code
    assert isinstance(raised.value, RemoteCalcError)
    assert str(raised.value) == raised.value.message and len(raised.value.message) < 120


def test_too_many_sessions_is_its_own_class() -> None:
    with start_server(port=0, clock=FakeClock(), max_sessions=1) as running, remotecalc.connect(running) as client:
        client.create(0)
        with pytest.raises(TooManySessions) as raised:
            client.create(0)
    assert raised.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_call_to_a_stopped_server_is_unavailable(server: RunningServer, client: Client) -> None:
    session = client.create(0)
    server.stop()
    with pytest.raises(Unavailable) as raised:
        session.add(1)
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE


def _error_while_held(lock: Any, call: Callable[[], object]) -> BaseException | None:
    """Run call in a thread while holding lock; the error it ended with, if it ends within a bounded wait."""
    outcome: dict[str, BaseException] = {}
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error
        done.set()

    with lock:
        threading.Thread(target=run, daemon=True).start()
        finished = done.wait(timeout=10)
    assert finished, "the call was still waiting 10 s after its 0.05 s deadline: it has no deadline"
    return outcome.get("error")


def test_a_call_past_its_deadline_raises_deadline_exceeded(server: RunningServer, client: Client) -> None:
    # gRPC rounds deadlines up to about a millisecond, in which a loopback call can finish, so a
    # tiny timeout proves nothing; instead the server is held up on the locks the engine takes.
    session = client.create(5)
    with remotecalc.connect(server, timeout=0.05) as hurried:
        held_up = hurried.session(session.token)
        error = _error_while_held(server.engine._create_lock, lambda: hurried.create(0))
        assert isinstance(error, DeadlineExceeded), error
        assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        for call in (lambda: held_up.add(1), lambda: held_up.apply_many([("+", 1)]), held_up.state, held_up.answer):
            error = _error_while_held(server.engine._sessions[session.token].lock, call)
            assert isinstance(error, DeadlineExceeded), error


class _DeadlineRecorder(grpc.ServerInterceptor):
    """Records, for every call the server receives, the seconds its deadline left."""

    def __init__(self) -> None:
        self.remaining: dict[str, float | None] = {}

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def record(request: Any, context: grpc.ServicerContext) -> Any:
            self.remaining[details.method.rsplit("/", 1)[-1]] = context.time_remaining()
            return inner(request, context)

        return handler._replace(unary_unary=record)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[str, _DeadlineRecorder]]:
    """A plain gRPC server with remotecalc's services and a deadline recorder, and its address."""
    from concurrent import futures

    recorder = _DeadlineRecorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[recorder])
    add_services(server, MemoryStore())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        server.stop(0)


@pytest.mark.parametrize("timeout", [None, 2.5])
def test_every_unary_call_carries_a_deadline(recorded: tuple[str, _DeadlineRecorder], timeout: float | None) -> None:
    address, recorder = recorded
    recorder.remaining.clear()
    limit = DEFAULT_TIMEOUT if timeout is None else timeout
    with remotecalc.connect(address) if timeout is None else remotecalc.connect(address, timeout=timeout) as client:
        session = client.create(0)
        session.add(1)
        session.apply_many([("*", 2)])
        session.state()
        session.answer()
    assert set(recorder.remaining) == {"CreateSession", "Apply", "ApplyBatch", "GetSession", "CloseSession"}
    for method, remaining in recorder.remaining.items():
        # gRPC sends a deadline rounded up, and the server's clock reads it a little later.
        assert remaining is not None and limit / 2 < remaining <= limit + 0.5, (method, remaining)
    assert DEFAULT_TIMEOUT == 10.0


def test_the_session_context_manager_closes_the_session(server: RunningServer, client: Client) -> None:
    with client.create(1) as session:
        session.add(1)
        assert len(server.engine) == 1
    assert len(server.engine) == 0
    with pytest.raises(SessionNotFound):
        session.value()


def test_leaving_the_context_of_an_already_closed_session_is_quiet(client: Client) -> None:
    with client.create(1) as session:
        assert session.answer() == 1


def test_connect_accepts_a_running_server_or_an_address(server: RunningServer) -> None:
    for target in (server, server.address):
        with remotecalc.connect(target) as client:
            assert client.target == server.address
            assert client.create(4).multiply(2) == 8


def test_on_call_records_method_code_and_latency(server: RunningServer) -> None:
    records: list[CallRecord] = []
    with Client(server, on_call=records.append) as client:
        session = client.create(3)
        session.add(1)
        with pytest.raises(DivisionByZero):
            session.divide(0)
        session.answer()
    assert [(r.method, r.code) for r in records] == [
        ("CreateSession", "OK"),
        ("Apply", "OK"),
        ("Apply", "INVALID_ARGUMENT"),
        ("CloseSession", "OK"),
    ]
    assert records[1].request == "+ 1"
    assert all(isinstance(r.latency_ms, float) and r.latency_ms >= 0 for r in records)


def test_session_operations_and_reads(client: Client) -> None:
    session = client.create(0)
    assert [session.apply(op, x) for op, x in (("+", 5), ("-", 3), ("x", 10), ("÷", 2))] == [5, 2, 20, 10]
    assert session.value() == 10
    assert [(step.number, step.operator.symbol) for step in session.history()] == [
        (1, "+"),
        (2, "-"),
        (3, "×"),
        (4, "÷"),
    ]
    with pytest.raises(InvalidOperand):
        session.apply("%", 1)
    assert session.answer() == 10


def test_every_status_code_has_its_own_class_built_from_the_classes() -> None:
    classes = {code: class_for_code(code.name) for code in grpc.StatusCode if code is not grpc.StatusCode.OK}
    assert len(set(classes.values())) == len(classes) == 16
    for code, cls in classes.items():
        assert cls.code_name == code.name
        error = error_for(code.name, "a message")
        assert type(error) is cls and error.code is code and isinstance(error, RemoteCalcError)
    assert classes[grpc.StatusCode.NOT_FOUND] is SessionNotFound
    assert classes[grpc.StatusCode.INTERNAL] is remotecalc.InternalError
    assert classes[grpc.StatusCode.CANCELLED] is remotecalc.Cancelled
    assert classes[grpc.StatusCode.UNIMPLEMENTED] is remotecalc.Unimplemented
    assert classes[grpc.StatusCode.UNKNOWN] is remotecalc.Unknown


def test_a_reason_picks_its_subclass_only_with_its_own_code() -> None:
    assert type(error_for("INVALID_ARGUMENT", "division by zero", "DIVISION_BY_ZERO")) is DivisionByZero
    assert type(error_for("UNAVAILABLE", "stopping", "SERVER_STOPPING")) is remotecalc.ServerStopping
    # A reason that came with another code than its class's is not trusted: the code decides.
    assert type(error_for("INTERNAL", "odd", "DIVISION_BY_ZERO")) is remotecalc.InternalError
    assert type(error_for("INVALID_ARGUMENT", "new", "A_REASON_FROM_A_NEWER_SERVER")) is remotecalc.InvalidArgument


def test_the_unknown_outcomes_are_one_family_and_the_others_are_not() -> None:
    unknown = {
        cls.code_name for cls in map(class_for_code, grpc.StatusCode.__members__) if issubclass(cls, OutcomeUnknown)
    }
    assert unknown == {"DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE"}
    assert issubclass(remotecalc.ServerStopping, OutcomeUnknown)


def test_the_rpc_error_stays_as_the_cause(client: Client) -> None:
    with pytest.raises(DivisionByZero) as raised:
        client.create(1).divide(0)
    cause: Any = raised.value.__cause__
    assert isinstance(cause, grpc.RpcError)
    assert cause.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert cause.details() == raised.value.message


def test_uuid7_has_the_time_version_and_variant_bits() -> None:
    made = uuid7(0x0123_4567_89AB)
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert made.int >> 80 == 0x0123_4567_89AB
    assert uuid7(1000) < uuid7(1001) < uuid7()
    assert len({uuid7(5) for _ in range(1000)}) == 1000
    now_ms = time.time_ns() // 1_000_000
    assert abs((uuid7().int >> 80) - now_ms) < 60_000


def test_a_deadline_exceeded_call_is_resolved_by_resending_it_once(server: RunningServer, client: Client) -> None:
    session = client.create(5)
    hurried = remotecalc.connect(server, timeout=0.05)
    try:
        held_up = hurried.session(session.token)
        error = _error_while_held(server.engine._sessions[session.token].lock, lambda: held_up.add(1))
        assert isinstance(error, DeadlineExceeded) and isinstance(error, OutcomeUnknown), error
        assert uuid.UUID(error.request_id).version == 7
        assert error.request.request_id == error.request_id  # type: ignore[attr-defined]
        assert error.resolvable
        hurried.timeout = 10
        assert error.resolve() == 6
        assert error.resolve() == 6
        assert (session.value(), session.state().step_count) == (6, 1)
        created = _error_while_held(
            server.engine._create_lock, lambda: remotecalc.connect(server, timeout=0.05).create(7)
        )
        assert isinstance(created, DeadlineExceeded)
    finally:
        hurried.close()


def test_an_unknown_create_resolves_to_its_session(server: RunningServer) -> None:
    with remotecalc.connect(server, timeout=0.05) as hurried:
        error = _error_while_held(server.engine._create_lock, lambda: hurried.create(7))
        assert isinstance(error, DeadlineExceeded), error
        hurried.timeout = 10
        first = error.resolve()
        assert isinstance(first, remotecalc.Session) and first.value() == 7
        assert error.resolve().token == first.token
    assert len(server.engine) == 1


def test_a_watch_error_cannot_be_resolved(server: RunningServer) -> None:
    client = remotecalc.connect(server, timeout=0.5)  # a Watch tries to resume for the client's timeout
    session = client.create(1)
    watch = session.watch()
    assert next(iter(watch)).value == 1
    server.stop(grace=0)
    with pytest.raises(Unavailable) as raised:
        list(watch)
    assert watch.resumes >= 1
    client.close()
    assert not raised.value.resolvable
    with pytest.raises(TypeError, match="watch again"):
        raised.value.resolve()


def _readme_python(page: str, heading: str) -> str:
    """The first ```python block under heading of page (README.md, docs/client.md...), as written."""
    return python_block(page, heading)


def test_the_readme_client_example_runs_as_written_and_ends(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _readme_python("docs/client.md", "# The Python client")
    assert '"127.0.0.1:3000"' in example
    exec(example.replace('"127.0.0.1:3000"', repr(server.address)), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("10.5 [Step(number=1")
    assert lines[1:] == ["StatusCode.INVALID_ARGUMENT division by zero", "5 10.5", "6 11.5", "7 12.5"]
    assert len(server.engine) == 0  # the session was closed when its block ended


def test_the_readme_resolve_example_runs_as_written(client: Client) -> None:
    session = client.create(1)
    namespace = {"remotecalc": remotecalc, "session": session}
    exec(_readme_python("docs/errors.md", "# Errors"), namespace)
    assert namespace["value"] == 2 == session.value()


@pytest.mark.parametrize("after_step", [0, 1, 3])
def test_a_watch_after_a_step_read_brings_every_later_step_in_its_first_update(
    server: RunningServer, after_step: int
) -> None:
    with remotecalc.connect(server) as client, client.create(1) as session:
        for operand in (1, 2, 3):
            session.add(operand)
        with session.watch(after_step=after_step) as watch:
            first = next(iter(watch))
            assert (first.step_count, first.value) == (3, 7)
            assert [step.number for step in first.steps] == list(range(after_step + 1, 4))
            session.add(4)
            following = next(iter(watch))
            assert [(step.number, step.result) for step in following.steps] == [(4, 11.0)]

"""Every exception path of the one status handler, on both cores, read as grpcurl and Postman read it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import FakeClock
from contracts import ArticleCalls, V1Calls, reason_of, rpc_error, trailing
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_errors import assert_short_and_clean

from remotecalc import RunningServer
from remotecalc.article import calc_pb2
from remotecalc.stores.memory import MemoryStore
from remotecalc.v1 import calculator_pb2 as pb

CORES = ["sync", "aio"]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
METHODS: list[MethodDescriptor] = [
    method
    for service in (calc_pb2.DESCRIPTOR.services_by_name["Calculator"], pb.DESCRIPTOR.services_by_name["Calculator"])
    for method in service.methods
]
TOKEN = "A" * 22
_OPERATION = pb.Operation(operator=pb.OPERATOR_DIVIDE, operand=0.5)
# A well-formed request of every request type, each field set, to be cut short at any byte.
SAMPLES = {
    "Number": calc_pb2.Number(value=1.5),
    "SessionOperation": calc_pb2.SessionOperation(token=TOKEN, value=2.5),
    "CreateSessionRequest": pb.CreateSessionRequest(value=1.5, request_id="0190a3b4-1c2d-7e8f-9a0b-1c2d3e4f5a6b"),
    "ApplyRequest": pb.ApplyRequest(token=TOKEN, operation=_OPERATION, request_id="r" * 36),
    "ApplyBatchRequest": pb.ApplyBatchRequest(token=TOKEN, operations=[_OPERATION] * 3, request_id="r" * 36),
    "GetSessionRequest": pb.GetSessionRequest(token=TOKEN),
    "CloseSessionRequest": pb.CloseSessionRequest(token=TOKEN, request_id="r" * 36),
    "WatchSessionRequest": pb.WatchSessionRequest(token=TOKEN),
}
# Bytes no protobuf parser accepts: a field tag of 0, a length beyond the end, a varint of 11 bytes.
UNPARSEABLE = [b"\x00", b"\x0a\x05ab", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]


def _start(engine: MemoryStore, core: str) -> RunningServer:
    return RunningServer(engine, "127.0.0.1", 0, core, 8)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=CORES)
def served(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server on each core, shared by the tests of this module that do not need a fresh one."""
    running = _start(MemoryStore(clock=FakeClock()), request.param)
    try:
        yield running
    finally:
        running.stop(grace=0)


def _call(channel: grpc.Channel, method: MethodDescriptor, data: bytes) -> None:
    """Send data as the request of method, bytes as they are (a stream: read its first message)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        stream = channel.unary_stream(path)(data, timeout=10)
        next(stream, None)
        stream.cancel()
    else:
        channel.unary_unary(path)(data, timeout=10)


def _raw(channel: grpc.Channel, method: MethodDescriptor, data: bytes) -> grpc.StatusCode:
    """Send data as the request of method; the status it ends with, its text checked."""
    try:
        _call(channel, method, data)
    except grpc.RpcError as error:
        call: Any = error
        if call.code() is not grpc.StatusCode.CANCELLED:
            assert call.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (method.name, data)
            assert_short_and_clean(call.details())
        return call.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS, ids=[f"{m.containing_service.name}-{m.name}" for m in METHODS])
def test_unparseable_bytes_are_invalid_argument_on_every_method(
    served: RunningServer, method: MethodDescriptor
) -> None:
    with grpc.insecure_channel(served.address) as channel:
        for data in UNPARSEABLE:
            error = rpc_error(lambda data=data: _call(channel, method, data))  # type: ignore[misc]
            assert error.code() is INVALID_ARGUMENT, (data, error.details())
            assert error.details() == "the request is not a valid message of this method's request type"
            assert reason_of(error) == "REQUEST_NOT_DECODABLE"


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), data=st.binary(max_size=64))
def test_random_bytes_never_get_unknown_internal_or_a_python_name(
    served: RunningServer, method: MethodDescriptor, data: bytes
) -> None:
    with grpc.insecure_channel(served.address) as channel:
        _raw(channel, method, data)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), cut=st.integers(min_value=0, max_value=200))
def test_truncated_requests_never_get_unknown_internal_or_a_python_name(
    served: RunningServer, method: MethodDescriptor, cut: int
) -> None:
    whole = SAMPLES[method.input_type.name].SerializeToString()
    with grpc.insecure_channel(served.address) as channel:
        _raw(channel, method, whole[: cut % (len(whole) + 1)])


def _details(error: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, list[error_details_pb2.BadRequest]]:
    """The ErrorInfo and BadRequest details of the standard google.rpc.Status a call ended with."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin"
    assert status.code == error.code().value[0] and status.message == error.details()
    infos, bad_requests = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            infos.append(error_details_pb2.ErrorInfo())
            detail.Unpack(infos[-1])
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_requests.append(error_details_pb2.BadRequest())
            detail.Unpack(bad_requests[-1])
    assert len(infos) == 1
    return infos[0], bad_requests


def test_a_domain_error_carries_error_info(served: RunningServer) -> None:
    with grpc.insecure_channel(served.address) as channel:
        v1 = V1Calls(channel)
        token = v1.create(1)
        for call, reason in (
            (lambda: v1.apply(token, "/", 0), "DIVISION_BY_ZERO"),
            (lambda: ArticleCalls(channel).apply(token, "/", 0), "DIVISION_BY_ZERO"),
            (lambda: v1.apply("", "+", 1), "INVALID_TOKEN"),
            (lambda: next(v1.stub.WatchSession(pb.WatchSessionRequest(token=TOKEN))), "SESSION_NOT_FOUND"),
        ):
            error = rpc_error(call)
            info, bad_requests = _details(error)
            assert (info.reason, info.domain) == (reason, "remotecalc.dev")
            assert reason_of(error) == reason
            assert bad_requests == []
            assert "remotecalc-operation-index" not in trailing(error)


def test_a_failed_batch_names_the_operation_in_bad_request(served: RunningServer) -> None:
    with grpc.insecure_channel(served.address) as channel:
        v1 = V1Calls(channel)
        token = v1.create(1)
        operations = [pb.Operation(operator=pb.OPERATOR_ADD, operand=1)] * 3
        operations.append(pb.Operation(operator=pb.OPERATOR_DIVIDE, operand=0))
        error = rpc_error(lambda: v1.stub.ApplyBatch(pb.ApplyBatchRequest(token=token, operations=operations)))
        assert error.code() is INVALID_ARGUMENT
        info, bad_requests = _details(error)
        assert info.reason == "DIVISION_BY_ZERO" and dict(info.metadata) == {"operation_index": "3"}
        [violation] = [v for bad in bad_requests for v in bad.field_violations]
        assert violation.field == "operations[3]"
        assert violation.description == error.details()
        assert trailing(error)["remotecalc-operation-index"] == "3"
        assert v1.read(token) == (1, 0, [])


class _FaultyEngine(MemoryStore):
    """An engine with a bug: what a fault outside the domain errors looks like to a client."""

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Fail as a bug would."""
        raise ZeroDivisionError("float division by zero")

    def watch(self, token: str) -> Any:
        """Fail as a bug would."""
        raise KeyError(token)


@pytest.mark.parametrize("core", CORES)
def test_a_bug_is_internal_with_a_status_and_leaks_nothing_on_both_cores(core: str) -> None:
    running = _start(_FaultyEngine(), core)
    try:
        with grpc.insecure_channel(running.address) as channel:
            article, v1 = ArticleCalls(channel), V1Calls(channel)
            token = v1.create(1)
            for call in (
                lambda: article.apply(token, "+", 1),
                lambda: v1.apply(token, "+", 1),
                lambda: next(v1.stub.WatchSession(pb.WatchSessionRequest(token=token))),
            ):
                error = rpc_error(call)
                assert error.code() is grpc.StatusCode.INTERNAL, error.details()
                assert error.details() == "internal server error"
                assert _details(error)[0].reason == "INTERNAL"
                assert token not in str(trailing(error))
    finally:
        running.stop(grace=0)

"""The batch limit: 4 MiB a request, and a batch over it told so by remotecalc, never by gRPC's raw text."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from conftest import FakeClock
from contracts import reason_of, rpc_error
from test_errors import assert_short_and_clean

import remotecalc
from remotecalc import RunningServer
from remotecalc.errors import MAX_REQUEST_BYTES
from remotecalc.status import RECEIVE_LIMIT
from remotecalc.stores.memory import MemoryStore
from remotecalc.v1 import calculator_pb2 as pb

_APPLY_BATCH = "/remotecalc.v1.Calculator/ApplyBatch"


def _batch(token: str, operations: int) -> bytes:
    """An ApplyBatchRequest of operations additions of 1, serialized (13 bytes an operation), built as bytes."""
    head = pb.ApplyBatchRequest(token=token, request_id=str(remotecalc.client.uuid7())).SerializeToString()
    operation = pb.ApplyBatchRequest(operations=[pb.Operation(operator=pb.OPERATOR_ADD, operand=1.0)])
    data = head + operation.SerializeToString() * operations  # a repeated field's entries may follow the rest
    assert len(pb.ApplyBatchRequest.FromString(data).operations) == operations
    return data


@pytest.fixture(params=["sync", "aio"])
def core_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server on each core."""
    running = RunningServer(MemoryStore(clock=FakeClock()), "127.0.0.1", 0, request.param, 8)
    try:
        yield running
    finally:
        running.stop(grace=0)


def test_the_client_refuses_a_batch_over_the_limit_before_sending_and_says_how_to_split(server: RunningServer) -> None:
    calls: list[remotecalc.CallRecord] = []
    with remotecalc.Client(server, on_call=calls.append) as client, client.create(0) as session:
        with pytest.raises(remotecalc.BatchTooLarge) as refused:
            session.apply_many([("+", 1)] * 330_000)
        assert [call.method for call in calls] == ["CreateSession"]  # nothing was sent
        assert session.state().step_count == 0
    error = refused.value
    print(error)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "BATCH_TOO_LARGE"
    assert str(error).startswith(
        "this batch of 330,000 operations is 4,290,062 bytes, over the limit of 4,194,304 bytes "
        "(about 322,000 operations): split it into calls of at most 300,000 operations"
    )


def test_a_batch_split_as_the_error_advises_is_taken(server: RunningServer) -> None:
    with remotecalc.connect(server, timeout=60) as client, client.create(0) as session:
        assert session.apply_many([("+", 1)] * 300_000) == 300_000


def test_the_server_answers_a_request_over_the_limit_with_its_own_reason(core_server: RunningServer) -> None:
    with remotecalc.connect(core_server) as client:
        token = client.create(0).token
    data = _batch(token, 400_000)
    assert MAX_REQUEST_BYTES < len(data) < RECEIVE_LIMIT
    with grpc.insecure_channel(core_server.address) as channel:
        error: Any = rpc_error(lambda: channel.unary_unary(_APPLY_BATCH)(data, timeout=30))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(error) == "BATCH_TOO_LARGE"
    assert error.details() == (
        f"the request is {len(data):,} bytes, over the limit of 4,194,304 bytes (about 322,000 operations): "
        "split the batch"
    )
    assert_short_and_clean(error.details())


def test_a_request_beyond_what_the_server_receives_gets_grpcs_own_refusal(server: RunningServer) -> None:
    data = _batch("A" * 22, RECEIVE_LIMIT // 13 + 1)
    with grpc.insecure_channel(server.address) as channel:
        error: Any = rpc_error(lambda: channel.unary_unary(_APPLY_BATCH)(data, timeout=30))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and reason_of(error) is None
    assert error.details() == f"SERVER: Received message larger than max ({len(data)} vs. {RECEIVE_LIMIT})"


def test_a_server_that_takes_less_is_told_as_batch_too_large_too() -> None:
    # gRPC's own refusal, as a proxy with a smaller limit (or an older server) answers a batch: its core
    # refuses the message before any handler runs.
    proxy = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.max_receive_message_length", 2**20)])
    never_reached = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    handlers = grpc.method_handlers_generic_handler("remotecalc.v1.Calculator", {"ApplyBatch": never_reached})
    proxy.add_generic_rpc_handlers((handlers,))
    port = proxy.add_insecure_port("127.0.0.1:0")
    proxy.start()
    try:
        with remotecalc.connect(f"127.0.0.1:{port}") as client, pytest.raises(remotecalc.BatchTooLarge) as refused:
            client.session("A" * 22).apply_many([("+", 1)] * 100_000)
        print(refused.value)
        assert str(refused.value).startswith(
            "the request is 1,300,062 bytes, more than the server (or a proxy before it) takes: split the batch"
        )
    finally:
        proxy.stop(grace=0).wait()

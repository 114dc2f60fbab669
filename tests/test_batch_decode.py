"""ApplyBatch's reading of its operations: the fast path over the encoding against the per-message one."""

from __future__ import annotations

import struct
from operator import attrgetter

from hypothesis import given, settings
from hypothesis import strategies as st

from remotecalc.service import batch_operations
from remotecalc.v1 import calculator_pb2 as pb

# Any operator a client can send (proto3 enums are open: unknown and negative values arrive as ints),
# any double including NaN, -0.0 and 0.0 (which proto3 does not send), with or without unknown fields.
_OPERATION = st.tuples(
    st.one_of(st.integers(min_value=0, max_value=5), st.integers(min_value=-(2**31), max_value=2**31 - 1)),
    st.one_of(st.sampled_from([1.0, 0.0, -0.0, float("nan"), float("inf")]), st.floats()),
    st.sampled_from([b"", b"\x18\x01", b"\x22\x00"]),
)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (short payloads only: one length byte)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _read(operations: list[tuple[int, float]]) -> list[tuple[int, bytes]]:
    return [(operator, struct.pack("<d", operand)) for operator, operand in operations]


@settings(max_examples=150, deadline=None)
@given(
    token=st.text(max_size=140),
    request_id=st.text(max_size=40),
    operations=st.lists(_OPERATION, max_size=40),
    unknown_at=st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
)
def test_the_operations_read_are_exactly_those_of_the_message(
    token: str, request_id: str, operations: list[tuple[int, float, bytes]], unknown_at: int | None
) -> None:
    # Built on the wire, so that a request may hold what a client could send but the fast path does not expect.
    records = [
        _field(2, pb.Operation(operator=operator, operand=operand).SerializeToString() + extra)  # type: ignore[arg-type]
        for operator, operand, extra in operations
    ]
    if unknown_at is not None:
        records.insert(min(unknown_at, len(records)), b"\x28\x07")  # field 5, a varint the contract does not know
    head = pb.ApplyBatchRequest(token=token).SerializeToString()
    tail = pb.ApplyBatchRequest(request_id=request_id).SerializeToString()
    request = pb.ApplyBatchRequest.FromString(head + b"".join(records) + tail)
    expected = list(map(attrgetter("operator", "operand"), request.operations))
    assert len(expected) == len(operations)
    assert _read(batch_operations(request)) == _read(expected)


def test_a_typical_batch_is_read_in_order() -> None:
    cycle = [(1, 1.5), (2, -2.25), (3, 1e300), (4, 5e-324)]
    request = pb.ApplyBatchRequest(
        token="t" * 22,
        request_id="r",
        operations=[pb.Operation(operator=operator, operand=operand) for operator, operand in cycle * 250],  # type: ignore[arg-type]
    )
    assert _read(batch_operations(request)) == _read(cycle * 250)

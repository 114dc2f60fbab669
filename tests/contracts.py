"""Raw gRPC calls to both contracts, behind one small interface, for tests that run on each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import grpc

from remotecalc.article import calc_pb2, calc_pb2_grpc
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

TIMEOUT = 10.0


class ArticleCalls:
    """The article's contract (calc.proto) through its generated stub."""

    name = "article"

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = calc_pb2_grpc.CalculatorStub(channel)
        self._methods = {
            "+": self.stub.Add,
            "-": self.stub.Subtract,
            "*": self.stub.Multiply,
            "/": self.stub.Divide,
        }

    def create(self, value: float) -> str:
        """Open a session; return its token."""
        return str(self.stub.Create(calc_pb2.Number(value=value), timeout=TIMEOUT).token)

    def apply(self, token: str, symbol: str, operand: float) -> float:
        """Apply one operation; return the new value."""
        reply = self._methods[symbol](calc_pb2.SessionOperation(token=token, value=operand), timeout=TIMEOUT)
        return float(reply.value)

    def close(self, token: str) -> float:
        """Answer: close the session and return its final value."""
        return float(self.stub.Answer(calc_pb2.SessionOperation(token=token), timeout=TIMEOUT).value)


class V1Calls:
    """remotecalc.v1 through its generated stub."""

    name = "v1"
    operators: ClassVar[dict[str, int]] = {
        "+": pb.OPERATOR_ADD,
        "-": pb.OPERATOR_SUBTRACT,
        "*": pb.OPERATOR_MULTIPLY,
        "/": pb.OPERATOR_DIVIDE,
    }

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = pb_grpc.CalculatorStub(channel)

    def create(self, value: float) -> str:
        """Open a session; return its token."""
        return str(self.stub.CreateSession(pb.CreateSessionRequest(value=value), timeout=TIMEOUT).session.token)

    def apply(self, token: str, symbol: str, operand: float) -> float:
        """Apply one operation; return the new value."""
        operation = pb.Operation(operator=pb.Operator.ValueType(self.operators[symbol]), operand=operand)
        return float(self.stub.Apply(pb.ApplyRequest(token=token, operation=operation), timeout=TIMEOUT).value)

    def close(self, token: str) -> float:
        """CloseSession: close the session and return its final value."""
        return float(self.stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=TIMEOUT).value)

    def read(self, token: str) -> tuple[float, int, list[tuple[int, int, float, float]]]:
        """The session's value, step count and history, as plain values."""
        session = self.stub.GetSession(pb.GetSessionRequest(token=token), timeout=TIMEOUT).session
        history = [(s.number, int(s.operator), s.operand, s.result) for s in session.history]
        return session.value, session.step_count, history


Calls = ArticleCalls | V1Calls


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The RpcError the call fails with; fails the test if it succeeds."""
    try:
        result = call()
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"the call succeeded with {result!r} but was expected to fail")


def trailing(error: grpc.RpcError) -> dict[str, str]:
    """The trailing metadata of a failed call, as text."""
    call: Any = error
    return {str(key): str(value) for key, value in call.trailing_metadata() or ()}


def reason_of(error: grpc.RpcError) -> str | None:
    """The remotecalc-error-reason trailing metadata of a failed call."""
    return trailing(error).get("remotecalc-error-reason")

"""A Python client for remotecalc.v1: sessions as objects, status codes as exceptions."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import grpc

from .errors import INDEX_KEY, REASON_KEY, OutcomeUnknown, RemoteCalcError, SessionNotFound, error_for
from .model import Operator, Snapshot, Step, Update
from .v1 import calculator_pb2 as pb
from .v1 import calculator_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from .server import RunningServer

__all__ = ["DEFAULT_TIMEOUT", "CallRecord", "Client", "Session", "Watch", "connect", "uuid7"]

#: Seconds a unary call may take before it fails with DeadlineExceeded.
DEFAULT_TIMEOUT = 10.0

# Every mutating call carries a fresh request id, so gRPC may resend it after a dropped
# connection: the server applies it once and answers the retry with the first reply. CANCELLED
# is retried too: a server cancels a call it received but never ran when it starts to stop (or
# drops one beyond its queue of pending calls), and a call the caller cancels is never retried.
# Unary calls only, and Watch streams go on a channel of their own with retries off: a stream
# started as the server stops, on a channel with retries on, can hang for good (grpcio 1.85:
# its status is UNAVAILABLE but its reads never complete, and cancel() does not end them).
_RETRIED_METHODS = ("CreateSession", "Apply", "ApplyBatch", "GetSession", "CloseSession")
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "remotecalc.v1.Calculator", "method": method} for method in _RETRIED_METHODS],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ]
    }
)
Operation = tuple["str | int | Operator", float]
Result = TypeVar("Result")


class CallRecord(NamedTuple):
    """One RPC the client made: what, with what, how it ended and how long it took."""

    method: str
    request: str
    code: str
    latency_ms: float


class Client:
    """A connection to a remotecalc server; use it as a context manager or close() it."""

    def __init__(
        self,
        target: str | RunningServer,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.target = target if isinstance(target, str) else target.address
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive, or None for no deadline")
        self.timeout = timeout
        self.on_call = on_call
        self._channel = grpc.insecure_channel(self.target, options=[("grpc.service_config", _SERVICE_CONFIG)])
        self._stub = pb_grpc.CalculatorStub(self._channel)
        self._watch_channel = grpc.insecure_channel(self.target, options=[("grpc.enable_retries", 0)])
        self._watch_stub = pb_grpc.CalculatorStub(self._watch_channel)

    def create(self, value: float = 0.0) -> Session:
        """Open a session holding value."""
        request = pb.CreateSessionRequest(value=value, request_id=_request_id())
        return self._call(
            "CreateSession", request, f"value={value:g}", lambda reply: Session(self, reply.session.token)
        )

    def session(self, token: str) -> Session:
        """A Session object for a token made elsewhere (by another client or contract)."""
        return Session(self, token)

    def close(self) -> None:
        """Close the connection; sessions on the server stay open."""
        self._channel.close()
        self._watch_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.target}>"

    def _call(
        self, method: str, request: Any, summary: str, result: Callable[[Any], Result], *, resending: bool = False
    ) -> Result:
        start = time.perf_counter()
        code = "OK"
        try:
            # A resend waits, within the deadline, for a server that is restarting or not reached yet.
            return result(getattr(self._stub, method)(request, timeout=self.timeout, wait_for_ready=resending))
        except grpc.RpcError as error:
            code = error.code().name
            translated = _translate(error)
            if isinstance(translated, OutcomeUnknown):
                # The same request, same id: the server answers it with the first outcome or applies it once.
                translated.request_id = getattr(request, "request_id", "")
                translated.request = request
                translated._resend = lambda: self._call(method, request, summary, result, resending=True)
            raise translated from error
        finally:
            if self.on_call is not None:
                self.on_call(CallRecord(method, summary, code, (time.perf_counter() - start) * 1000))


class Session:
    """One calculator session on the server; as a context manager it closes the session."""

    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.token = token

    def add(self, operand: float) -> float:
        """Add operand and return the new value."""
        return self.apply(Operator.ADD, operand)

    def subtract(self, operand: float) -> float:
        """Subtract operand and return the new value."""
        return self.apply(Operator.SUBTRACT, operand)

    def multiply(self, operand: float) -> float:
        """Multiply by operand and return the new value."""
        return self.apply(Operator.MULTIPLY, operand)

    def divide(self, operand: float) -> float:
        """Divide by operand and return the new value."""
        return self.apply(Operator.DIVIDE, operand)

    def apply(self, operator: str | int | Operator, operand: float) -> float:
        """Apply one operation, given as a symbol (+ - * /), a name or an Operator."""
        return self._apply(operator, operand, _value)

    def apply_step(self, operator: str | int | Operator, operand: float) -> Step:
        """Apply one operation and return the Step it made: its number in the session and its result."""
        return self._apply(operator, operand, lambda reply: _step(reply.step))

    def _apply(self, operator: str | int | Operator, operand: float, result: Callable[[Any], Result]) -> Result:
        op = Operator.parse(operator)
        request = pb.ApplyRequest(
            token=self.token,
            operation=pb.Operation(operator=pb.Operator.ValueType(op), operand=operand),
            request_id=_request_id(),
        )
        return self.client._call("Apply", request, f"{op.symbol} {operand:g}", result)

    def apply_many(self, operations: Iterable[Operation]) -> float:
        """Apply (operator, operand) pairs in one call, all or nothing; return the new value."""
        messages = [
            pb.Operation(operator=pb.Operator.ValueType(Operator.parse(op)), operand=operand)
            for op, operand in operations
        ]
        request = pb.ApplyBatchRequest(token=self.token, operations=messages, request_id=_request_id())
        return self.client._call("ApplyBatch", request, f"{len(messages)} operations", _value)

    def state(self) -> Snapshot:
        """The session's value, step count and recent steps, read without changing it."""
        request = pb.GetSessionRequest(token=self.token)
        return self.client._call("GetSession", request, f"token={self.token[:6]}…", _snapshot)

    def value(self) -> float:
        """The session's current value."""
        return self.state().value

    def history(self) -> list[Step]:
        """The session's recent steps, oldest first."""
        return list(self.state().history)

    def answer(self) -> float:
        """Close the session and return its final value."""
        request = pb.CloseSessionRequest(token=self.token, request_id=_request_id())
        return self.client._call("CloseSession", request, f"token={self.token[:6]}…", _value)

    close = answer

    def watch(self) -> Watch:
        """A live feed of this session's state: now, then after every change, until it closes."""
        return Watch(self.client, self.token)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(SessionNotFound):
            self.answer()

    def __repr__(self) -> str:
        return f"<Session {self.token[:6]}… on {self.client.target}>"


class Watch:
    """An iterator of a session's Updates; cancel() or leave the with block to stop it."""

    def __init__(self, client: Client, token: str) -> None:
        self.token = token
        self._call = client._watch_stub.WatchSession(pb.WatchSessionRequest(token=token))
        self._cancelled = False

    def __iter__(self) -> Iterator[Update]:
        try:
            for message in self._call:
                yield Update(
                    message.token,
                    message.value,
                    message.step_count,
                    tuple(_step(s) for s in message.steps),
                    message.closed,
                )
        except grpc.RpcError as error:
            if self._cancelled and error.code() == grpc.StatusCode.CANCELLED:
                return
            raise _translate(error) from error

    def cancel(self) -> None:
        """Stop watching; an iteration in progress ends quietly."""
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


def connect(target: str | RunningServer, *, timeout: float | None = DEFAULT_TIMEOUT) -> Client:
    """A client for a server address ("127.0.0.1:3000") or a running embedded server."""
    return Client(target, timeout=timeout)


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix time in milliseconds, then 74 random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = (random >> 62) & 0xFFF, random & ((1 << 62) - 1)
    return uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def _request_id() -> str:
    return str(uuid7())


def _step(message: pb.Step) -> Step:
    return Step(message.number, Operator(message.operator), message.operand, message.result)


def _value(reply: Any) -> float:
    return float(reply.value)


def _snapshot(reply: Any) -> Snapshot:
    session = reply.session
    history = tuple(_step(s) for s in session.history)
    return Snapshot(session.token, session.value, session.step_count, history, session.initial_value)


def _translate(error: grpc.RpcError) -> RemoteCalcError:
    call: Any = error
    metadata = dict(call.trailing_metadata() or ())
    index = metadata.get(INDEX_KEY)
    return error_for(
        call.code().name,
        call.details() or "",
        metadata.get(REASON_KEY, ""),
        int(index) if index is not None else None,
    )

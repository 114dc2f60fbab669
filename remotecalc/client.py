"""A Python client for remotecalc.v1: sessions as objects, status codes as exceptions."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import grpc

from .addresses import Reachable, grpc_target, joined, loopback_only
from .auth import AUTHORIZATION_KEY, TOKEN_VARIABLE, token_problem
from .errors import (
    INDEX_KEY,
    MAX_REQUEST_BYTES,
    REASON_KEY,
    BatchTooLarge,
    OutcomeUnknown,
    RemoteCalcError,
    SessionNotFound,
    StepsNotKept,
    Unavailable,
    error_for,
)
from .model import Operator, Snapshot, Step, Update
from .tls import PemSource, channel_credentials, explain_unreachable
from .v1 import calculator_pb2 as pb
from .v1 import calculator_pb2_grpc as pb_grpc

__all__ = ["DEFAULT_TIMEOUT", "CallRecord", "Client", "Session", "Watch", "connect", "grpc_target", "uuid7"]

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
_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
}
# Several addresses are balanced call by call: round_robin keeps a connection to each, skips
# the ones that fail, and a retried call (above) goes to the next, so a dead replica costs a
# retry, not an error. One address keeps gRPC's default, pick_first.
_ROUND_ROBIN: list[dict[str, dict[str, str]]] = [{"round_robin": {}}]
# A broken Watch is opened again after these pauses (the last one repeats), within the client's timeout.
_RESUME_BACKOFF = (0.05, 0.1, 0.2, 0.4, 0.8)
_CONNECTION_OPTIONS = [
    # gRPC shares connections between channels with the same target and options in one process:
    # clients would then all talk to one `--workers` process (it balances connections, not calls).
    ("grpc.use_local_subchannel_pool", 1),
    # A server that comes back is reached within a second: gRPC's reconnect backoff would grow from
    # 1 s to 120 s (after a 20 s outage, callers came back 6 to 7 s after it listened again). It starts
    # at 1 s as gRPC's does: sooner, the client's own retries would see a second pass over a name's
    # addresses, whose last error (say ::1 refused) hides the first's (127.0.0.1 closed in the handshake).
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _service_config(*, retries: bool, balanced: bool) -> str:
    config: dict[str, Any] = {}
    if retries:
        names = [{"service": "remotecalc.v1.Calculator", "method": method} for method in _RETRIED_METHODS]
        config["methodConfig"] = [{"name": names, "retryPolicy": _RETRY_POLICY}]
    if balanced:
        config["loadBalancingConfig"] = _ROUND_ROBIN
    return json.dumps(config)


Operation = tuple["str | int | Operator", float]
Result = TypeVar("Result")


class CallRecord(NamedTuple):
    """One RPC the client made: what, with what, how it ended and how long it took."""

    method: str
    request: str
    code: str
    latency_ms: float


class Client:
    """A connection to a remotecalc server, or to several replicas balanced call by call; close() it."""

    def __init__(
        self,
        target: str | Reachable | Sequence[str | Reachable],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_call: Callable[[CallRecord], None] | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        auth_token: str | None = None,
    ) -> None:
        credentials = channel_credentials(
            tls=tls, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key
        )
        #: True when the client speaks TLS (tls=True, root_certificates or a client certificate given).
        self.secure = credentials is not None
        self._client_cert = client_cert is not None
        #: What the client connects to: an address, "a,b" for several, or a gRPC target such as dns:///host:port.
        self.target = joined(target)
        if auth_token is None:
            auth_token = os.environ.get(TOKEN_VARIABLE) or None
        problem = None if auth_token is None else token_problem(auth_token)
        if problem is not None:
            raise ValueError(f"auth_token cannot be sent: {problem}")
        if auth_token is not None and not self.secure and not loopback_only(self.target):
            raise ValueError(
                f"refusing to send a bearer token in plaintext to {self.target}: connect with tls=True or "
                "root_certificates=... (only a loopback address may be reached without TLS)"
            )
        # Every call carries the token, the Watch and a resend included; None sends no metadata at all.
        self._metadata = None if auth_token is None else ((AUTHORIZATION_KEY, f"Bearer {auth_token}"),)
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive, or None for no deadline")
        self.timeout = timeout
        self.on_call = on_call
        channel_target, balanced = grpc_target(self.target)
        self._channel = _channel(
            channel_target,
            credentials,
            [("grpc.service_config", _service_config(retries=True, balanced=balanced)), *_CONNECTION_OPTIONS],
        )
        self._stub = pb_grpc.CalculatorStub(self._channel)
        self._watch_channel = _channel(
            channel_target,
            credentials,
            [
                ("grpc.enable_retries", 0),
                ("grpc.service_config", _service_config(retries=False, balanced=balanced)),
                *_CONNECTION_OPTIONS,
            ],
        )
        self._watch_stub = pb_grpc.CalculatorStub(self._watch_channel)
        self._closed = False

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
        self._closed = True
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
            call = getattr(self._stub, method)
            return result(call(request, timeout=self.timeout, wait_for_ready=resending, metadata=self._metadata))
        except grpc.RpcError as error:
            code = error.code().name
            translated = _translate(error, self)
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
        """Apply (operator, operand) pairs in one call, all or nothing; return the new value.

        A batch is at most 4 MiB as sent (about 322,000 operations): a larger one raises BatchTooLarge
        before anything is sent.
        """
        messages = [
            pb.Operation(operator=pb.Operator.ValueType(Operator.parse(op)), operand=operand)
            for op, operand in operations
        ]
        request = pb.ApplyBatchRequest(token=self.token, operations=messages, request_id=_request_id())
        # An operation takes at most 13 bytes: only a batch that may not fit is measured (20 ms at 4 MB).
        if len(messages) * 13 + len(self.token) + 100 > MAX_REQUEST_BYTES:
            size = request.ByteSize()
            if size > MAX_REQUEST_BYTES:
                raise BatchTooLarge.of(size, len(messages))
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

    def watch(
        self, *, after_step: int | None = None, on_resume: Callable[[RemoteCalcError | None], None] | None = None
    ) -> Watch:
        """A live feed of this session's state: now, then after every change, until it closes.

        With after_step (a step count already read, say by state()), the first update also carries every
        step after it, so nothing falls between that read and the feed. A broken stream is resumed on
        its own (see Watch); on_resume hears of each break and recovery.
        """
        return Watch(self.client, self.token, after_step=after_step, on_resume=on_resume)

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
    """An iterator of a session's Updates; cancel() or leave the with block to stop it.

    When the stream breaks (UNAVAILABLE: its replica died or is stopping; or any end that is not
    remotecalc's own, such as a proxy resetting a quiet stream with INTERNAL), the watch opens it
    again, on any replica the client reaches, after the last step it delivered: the loop sees every
    step once, in order. It gives up with Unavailable when no replica answers within the client's timeout
    (with timeout None it keeps trying until cancelled), and with StepsNotKept when the server no
    longer has every step it missed.
    """

    def __init__(
        self,
        client: Client,
        token: str,
        *,
        after_step: int | None = None,
        on_resume: Callable[[RemoteCalcError | None], None] | None = None,
    ) -> None:
        self.token = token
        self._client = client
        #: Told the error when the stream breaks and a resume begins, then None once a resumed stream answers.
        self.on_resume = on_resume
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._call = self._open(after_step or 0)
        #: The step count of the last update delivered (or after_step); a resumed stream starts after it.
        self.last_step: int | None = after_step
        self._greeted = False
        #: How many times the stream was opened again after it broke.
        self.resumes = 0

    def _open(self, after_step: int) -> Any:
        request = pb.WatchSessionRequest(token=self.token, after_step=after_step)
        return self._client._watch_stub.WatchSession(request, metadata=self._client._metadata)

    def __iter__(self) -> Iterator[Update]:
        broken_since: float | None = None
        attempts = 0
        while True:
            closed = False
            try:
                for message in self._call:
                    if broken_since is not None:
                        broken_since, attempts = None, 0
                        self._tell(None)
                    update = self._fresh(_update(message))
                    closed = message.closed
                    if update is not None:
                        self.last_step = max(update.step_count, self.last_step or 0)
                        self._greeted = True
                        yield update
                if closed or self._stopped.is_set():
                    return
                # Only remotecalc's closed update ends a stream well: something between ended this one.
                broken: RemoteCalcError = Unavailable(f"the stream ended before the session closed{self._resuming()}")
                cause: grpc.RpcError | None = None
            except grpc.RpcError as error:
                if self._stopped.is_set():
                    return
                if not _broken_stream(error) or self._client._closed:
                    raise _translate(error, self._client) from error
                broken, cause = _translate(error, self._client), error
                if broken.code_name != "UNAVAILABLE":
                    # No reason from remotecalc: a proxy reset it (nginx's grpc_read_timeout on a quiet stream).
                    broken.message = f"the stream was broken between client and server{self._resuming()}: {broken}"
                    broken.args = (broken.message,)
            if broken_since is None:
                broken_since = time.monotonic()
                self._tell(broken)
            attempts += 1
            if not self._reopen(broken_since, attempts):
                if self._stopped.is_set():
                    return
                raise broken from cause

    def _resuming(self) -> str:
        return f"; resuming after step {self.last_step or 0}"

    def _tell(self, error: RemoteCalcError | None) -> None:
        if self.on_resume is not None:
            self.on_resume(error)

    def _fresh(self, update: Update) -> Update | None:
        """The part of update not delivered yet, None if it is all old: a resumed stream may repeat."""
        last = self.last_step
        if last is None:
            return update
        if update.step_count <= last:
            # The first update is the state now, even with no step the reader has not seen.
            fresh = update.closed or not self._greeted
            return update._replace(steps=tuple(s for s in update.steps if s.number > last)) if fresh else None
        steps = tuple(step for step in update.steps if step.number > last)
        if not update.closed and (not steps or steps[0].number != last + 1):
            # A server that resumed "from now" (after_step 0, or not served) skipped steps: its history has them.
            steps = self._missed(last, steps[0].number if steps else update.step_count + 1) + steps
            if not steps or steps[0].number != last + 1:
                raise StepsNotKept(f"steps no longer kept: the steps after {last} are gone; watch again from now")
        return update._replace(steps=steps)

    def _missed(self, last: int, before: int) -> tuple[Step, ...]:
        """The session's kept steps after last and before before, read with GetSession."""
        history = Session(self._client, self.token).state().history
        return tuple(step for step in history if last < step.number < before)

    def _reopen(self, broken_since: float, attempt: int) -> bool:
        """Open the stream again after a pause; False when the client's timeout has passed or on cancel."""
        timeout = self._client.timeout
        pause = _RESUME_BACKOFF[min(attempt, len(_RESUME_BACKOFF)) - 1]
        if timeout is not None and time.monotonic() + pause - broken_since > timeout:
            return False
        if self._stopped.wait(pause):
            return False
        with self._lock:
            if self._stopped.is_set():
                return False
            self._call = self._open(self.last_step or 0)
            self.resumes += 1
        return True

    def cancel(self) -> None:
        """Stop watching; an iteration in progress ends quietly."""
        with self._lock:
            self._stopped.set()
            self._call.cancel()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


def connect(
    target: str | Reachable | Sequence[str | Reachable],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    tls: bool = False,
    root_certificates: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    auth_token: str | None = None,
) -> Client:
    """A client for an address ("127.0.0.1:3000"), several ("host:port,host:port" or a list), or a running server.

    Plaintext unless tls=True (the system's trusted roots) or root_certificates (PEM bytes or a file) is
    given; client_cert and client_key (PEM bytes or files) present a client certificate (mutual TLS).
    auth_token is the bearer token sent with every call (REMOTECALC_AUTH_TOKEN when None); it is
    refused (ValueError) in plaintext to anything but loopback.
    """
    return Client(
        target,
        timeout=timeout,
        tls=tls,
        root_certificates=root_certificates,
        client_cert=client_cert,
        client_key=client_key,
        auth_token=auth_token,
    )


def _channel(target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]]) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix time in milliseconds, then 74 random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = (random >> 62) & 0xFFF, random & ((1 << 62) - 1)
    return uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def _request_id() -> str:
    return str(uuid7())


def _update(message: pb.WatchSessionResponse) -> Update:
    steps = tuple(_step(s) for s in message.steps)
    return Update(message.token, message.value, message.step_count, steps, message.closed)


def _step(message: pb.Step) -> Step:
    return Step(message.number, Operator(message.operator), message.operand, message.result)


def _value(reply: Any) -> float:
    return float(reply.value)


def _snapshot(reply: Any) -> Snapshot:
    session = reply.session
    history = tuple(_step(s) for s in session.history)
    return Snapshot(session.token, session.value, session.step_count, history, session.initial_value)


# How a stream is broken by what lies between client and server (a proxy, the connection): a Watch
# resumes from these; with remotecalc's reason in the trailers, only UNAVAILABLE (stopping, store down).
_BROKEN_STREAM = frozenset(
    {grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
)


def _broken_stream(error: grpc.RpcError) -> bool:
    """True when a Watch stream ended with error may be resumed: not a domain error of remotecalc's."""
    call: Any = error
    if call.code() == grpc.StatusCode.UNAVAILABLE:
        return True
    return call.code() in _BROKEN_STREAM and REASON_KEY not in dict(call.trailing_metadata() or ())


_TOO_LARGE = re.compile(r"Received message larger than max \((\d+) vs\. \d+\)")


def _translate(error: grpc.RpcError, client: Client) -> RemoteCalcError:
    call: Any = error
    metadata = dict(call.trailing_metadata() or ())
    index = metadata.get(INDEX_KEY)
    details = call.details() or ""
    # Without the server's reason, UNAVAILABLE is gRPC's own text about the connection.
    if call.code() == grpc.StatusCode.UNAVAILABLE and REASON_KEY not in metadata:
        details = explain_unreachable(details, secure=client.secure, client_cert=client._client_cert)
    sizes = _TOO_LARGE.search(details) if REASON_KEY not in metadata else None
    if sizes is not None and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC's own refusal, from a server or proxy that takes less than remotecalc's 4 MiB.
        return BatchTooLarge(
            f"the request is {int(sizes.group(1)):,} bytes, more than the server (or a proxy before it) takes: "
            f"split the batch into smaller calls, each all or nothing on its own. gRPC: {details}"
        )
    return error_for(
        call.code().name,
        details,
        metadata.get(REASON_KEY, ""),
        int(index) if index is not None else None,
    )

"""One exception-to-status handler for both gRPC cores, applied to every calculator method.

`status_of` turns any exception into a status code, a short message and trailing metadata: the
standard ``google.rpc.Status`` (``grpc-status-details-bin``, with an ``ErrorInfo`` and, for a
batch, a ``BadRequest`` naming the operation) that grpcurl, Postman and every gRPC language read,
beside remotecalc's own keys. `SyncCore` and `AsyncCore` only differ in how they deliver it.

Methods are wrapped once, when they are registered, so that a call pays one Python frame and
no lookup; request bytes are decoded by a deserializer that never raises, so that unparseable
bytes reach the handler as a marker and become INVALID_ARGUMENT on both cores. A `Gate` counts
the calls inside the handlers, so that a stopping server can refuse new ones and wait for the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from .auth import Callers
from .errors import (
    ERROR_DOMAIN,
    INDEX_KEY,
    MAX_REQUEST_BYTES,
    REASON_KEY,
    BatchTooLarge,
    InternalError,
    RemoteCalcError,
    RequestNotDecodable,
    ServerStopping,
)

__all__ = ["RECEIVE_LIMIT", "STATUS_DETAILS_KEY", "AsyncCore", "Gate", "Status", "SyncCore", "register", "status_of"]

log = logging.getLogger(__name__)

#: The trailing metadata key of the standard google.rpc.Status, serialized.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Status(NamedTuple):
    """What a failed call ends with: code, message, trailing metadata."""

    code: grpc.StatusCode
    message: str
    metadata: tuple[tuple[str, str | bytes], ...]


class _Refused:
    """What the deserializer returns for bytes a method never sees: the error its call ends with."""

    def __init__(self, error: Callable[[], RemoteCalcError], name: str) -> None:
        self.error = error
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name} request>"


_NOT_DECODABLE = "the request is not a valid message of this method's request type"
UNDECODABLE: Any = _Refused(lambda: RequestNotDecodable(_NOT_DECODABLE), "undecodable")
#: The largest message gRPC hands the handlers (a server option): up to it, one over MAX_REQUEST_BYTES
#: is answered BATCH_TOO_LARGE by remotecalc; beyond it, gRPC refuses it with its own text.
RECEIVE_LIMIT = 4 * MAX_REQUEST_BYTES


def status_of(error: BaseException) -> Status:
    """The status a call that raised error ends with; a bug becomes INTERNAL and is logged."""
    if not isinstance(error, RemoteCalcError):
        # A bug must not reach the client as UNKNOWN with a Python exception text.
        log.error("unexpected error in a handler", exc_info=error)
        error = InternalError("internal server error")
    code = error.code
    metadata: tuple[tuple[str, str | bytes], ...] = ((REASON_KEY, error.reason),)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    details = [_packed(info)]
    if error.index is not None:
        info.metadata["operation_index"] = str(error.index)
        details[0] = _packed(info)
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=f"operations[{error.index}]", description=error.message, reason=error.reason
        )
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
        metadata += ((INDEX_KEY, str(error.index)),)
    status = status_pb2.Status(code=_RPC_CODES[code], message=error.message, details=details)
    return Status(code, error.message, (*metadata, (STATUS_DETAILS_KEY, status.SerializeToString())))


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_RPC_CODES = {code: getattr(code_pb2, code.name) for code in grpc.StatusCode}


def decoder(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A request deserializer that returns a marker instead of raising, or for a request over MAX_REQUEST_BYTES."""

    def decode(data: bytes) -> Any:
        if len(data) > MAX_REQUEST_BYTES:
            size = len(data)
            return _Refused(lambda: BatchTooLarge.of(size), "too large")
        try:
            return parse(data)
        except Exception:  # any failure to parse is the client's bad bytes
            return UNDECODABLE

    return decode


class Gate:
    """Lets calls into the handlers until closed, then refuses new ones; tells when the last has left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._closed = False
        self._empty = threading.Event()

    def enter(self) -> None:
        """Count a call in, or raise ServerStopping once closed: it never started, so resending is safe."""
        with self._lock:
            if self._closed:
                raise ServerStopping()
            self._inside += 1

    def leave(self) -> None:
        """Count a call out."""
        with self._lock:
            self._inside -= 1
            if self._closed and self._inside == 0:
                self._empty.set()

    def close(self) -> None:
        """Refuse every call from now on."""
        with self._lock:
            self._closed = True
            if self._inside == 0:
                self._empty.set()

    def wait_empty(self, timeout: float) -> bool:
        """Once closed, wait until no call is in a handler; False if timeout passed first."""
        return self._empty.wait(timeout)


def _identified(method: Callable[..., Any], callers: Callers | None) -> Callable[[Any, Any], Any]:
    """method, given its caller as owner once callers has authenticated the call; as it is without callers."""
    if callers is None:
        # Nobody is identified: no wrapper at all, so that a call costs what it did before callers existed.
        return method
    of = callers.of

    @functools.wraps(method)
    def identified(request: Any, context: Any) -> Any:
        return method(request, context, of(context))

    return identified


class SyncCore:
    """Wraps methods for grpc.server: a status is set on the context, then the call aborts.

    With callers, each call is first authenticated and its method is given the caller.
    """

    def __init__(self, gate: Gate, callers: Callers | None = None) -> None:
        self._gate = gate
        self._callers = callers

    def unary(self, method: Callable[..., Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        """method, counted by the gate, its exceptions turned into statuses."""
        enter, leave = self._gate.enter, self._gate.leave
        method = _identified(method, self._callers)

        @functools.wraps(method)
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                enter()
                try:
                    if type(request) is _Refused:
                        raise request.error()
                    return method(request, context)
                finally:
                    leave()
            except Exception as error:  # every error becomes a status
                _abort(context, error)

        return handle

    def stream(self, method: Callable[..., Iterator[Any]]) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        """A server-streaming method, counted by the gate, its exceptions turned into statuses."""
        enter, leave = self._gate.enter, self._gate.leave
        method = _identified(method, self._callers)

        @functools.wraps(method)
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                enter()
                try:
                    if type(request) is _Refused:
                        raise request.error()
                    yield from method(request, context)
                finally:
                    leave()
            except Exception as error:  # every error becomes a status
                _abort(context, error)

        return handle


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    status = status_of(error)
    context.set_trailing_metadata(status.metadata)
    context.abort(status.code, status.message)


class AsyncCore:
    """Wraps methods for grpc.aio.server: unary ones run on the loop, streams wait in threads.

    offload is for a store whose calls wait on the network (Redis): they run in threads too, so that
    the loop never waits with them.
    """

    def __init__(self, gate: Gate, callers: Callers | None = None, *, offload: bool = False) -> None:
        self._gate = gate
        self._callers = callers
        self._offload = offload

    def unary(self, method: Callable[..., Any]) -> Callable[[Any, Any], Any]:
        """method as a coroutine, counted by the gate, its exceptions turned into statuses."""
        enter, leave = self._gate.enter, self._gate.leave
        method = _identified(method, self._callers)
        offload = self._offload

        @functools.wraps(method)
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                enter()
                try:
                    if type(request) is _Refused:
                        raise request.error()
                    if offload:
                        return await asyncio.get_running_loop().run_in_executor(None, method, request, context)
                    return method(request, context)
                finally:
                    leave()
            except Exception as error:  # every error becomes a status
                status = status_of(error)
                await context.abort(status.code, status.message, status.metadata)

        return handle

    def stream(self, method: Callable[..., Iterator[Any]]) -> Callable[[Any, Any], AsyncIterator[Any]]:
        """A server-streaming method as an async generator, each wait run in a thread off the loop."""
        enter, leave = self._gate.enter, self._gate.leave
        method = _identified(method, self._callers)

        @functools.wraps(method)
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            ends = _StreamEnd(context)
            end = object()
            try:
                enter()
                try:
                    if type(request) is _Refused:
                        raise request.error()
                    updates = iter(method(request, ends))
                    while (message := await loop.run_in_executor(None, next, updates, end)) is not end:
                        yield message
                finally:
                    # A cancelled stream must free the thread still blocked waiting for its next update.
                    ends.run()
                    leave()
            except Exception as error:  # every error becomes a status
                status = status_of(error)
                await context.abort(status.code, status.message, status.metadata)

        return handle


Core = SyncCore | AsyncCore


class _StreamEnd:
    """An aio context with the sync context's add_callback: the callbacks run when the stream ends."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self._callbacks: list[Callable[[], object]] = []

    def add_callback(self, callback: Callable[[], object]) -> bool:
        """Run callback when the stream ends, however it ends."""
        self._callbacks.append(callback)
        return True

    def run(self) -> None:
        """Run the callbacks, once."""
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Collector:
    """Stands in for a server to a generated add_*Servicer_to_server: keeps the method handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Ignored: register() adds the wrapped handlers itself."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Keep the generated handlers of service."""
        self.service, self.handlers = service, handlers


def register(
    server: grpc.Server | grpc.aio.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: object,
    core: Core,
) -> None:
    """Register servicer through its generated add_*_to_server, each method wrapped by core."""
    collected = _Collector()
    add_to_server(servicer, collected)
    handlers: dict[str, Any] = {}
    for name, handler in collected.handlers.items():
        generated: Any = handler
        if generated.unary_unary is not None:
            wrapped = generated._replace(unary_unary=core.unary(generated.unary_unary))
        else:
            wrapped = generated._replace(unary_stream=core.stream(generated.unary_stream))
        handlers[name] = wrapped._replace(request_deserializer=decoder(generated.request_deserializer))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(collected.service, handlers),))
    server.add_registered_method_handlers(collected.service, handlers)

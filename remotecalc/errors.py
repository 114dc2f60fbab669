"""Every error remotecalc raises, on the server and in the client, in one hierarchy.

Each class names the gRPC status code it travels as and a reason, sent in the trailing
metadata ``remotecalc-error-reason`` so that a client can tell, say, a division by zero
from a malformed token although both are INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import grpc

#: Trailing metadata naming the exact reason of an error status.
REASON_KEY = "remotecalc-error-reason"
#: Trailing metadata of a failed batch: the zero-based index of the operation that failed.
INDEX_KEY = "remotecalc-operation-index"

__all__ = [
    "CallerGone",
    "DeadlineExceeded",
    "DivisionByZero",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "InvalidOperand",
    "InvalidToken",
    "OutOfRange",
    "PortInUse",
    "RemoteCalcError",
    "RequestExpired",
    "RequestIdFromTheFuture",
    "RequestIdReused",
    "RequestLogFull",
    "ResourceExhausted",
    "ServerStopping",
    "SessionNotFound",
    "TooManySessions",
    "TooManyWatchers",
    "Unavailable",
    "WatcherTooSlow",
    "error_for",
]


class RemoteCalcError(Exception):
    """Base of every remotecalc error; carries its gRPC status code and a reason."""

    code_name: str = "UNKNOWN"
    reason: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: In a failed batch, the zero-based index of the operation that failed.
        self.index = index

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code this error travels as."""
        import grpc

        return grpc.StatusCode[self.code_name]


class SessionNotFound(RemoteCalcError):
    """The token names no live session: unknown, closed or expired."""

    code_name = "NOT_FOUND"
    reason = "SESSION_NOT_FOUND"


class InvalidArgument(RemoteCalcError):
    """The request itself is wrong; resending it unchanged will fail again."""

    code_name = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class InvalidToken(InvalidArgument):
    """The token is empty or not of the form the server issues."""

    reason = "INVALID_TOKEN"


class DivisionByZero(InvalidArgument):
    """A division by zero was asked for."""

    reason = "DIVISION_BY_ZERO"


class InvalidOperand(InvalidArgument):
    """An operand or initial value is NaN or infinite, or the operator is not set."""

    reason = "INVALID_OPERAND"


class RequestIdReused(InvalidArgument):
    """A request id came back with a different request."""

    reason = "REQUEST_ID_REUSED"


class OutOfRange(RemoteCalcError):
    """The result is not finite, or does not fit the contract's number type."""

    code_name = "OUT_OF_RANGE"
    reason = "RESULT_OUT_OF_RANGE"


class ResourceExhausted(RemoteCalcError):
    """The server is out of a bounded resource."""

    code_name = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class TooManySessions(ResourceExhausted):
    """The server holds as many live sessions as it is allowed to."""

    reason = "TOO_MANY_SESSIONS"


class TooManyWatchers(ResourceExhausted):
    """The server holds as many open watches as it has threads to spare for them."""

    reason = "TOO_MANY_WATCHERS"


class WatcherTooSlow(ResourceExhausted):
    """A watcher fell so far behind that its stream was ended."""

    reason = "WATCHER_TOO_SLOW"


class Unavailable(RemoteCalcError):
    """The server cannot be reached or is going away; the call may be retried."""

    code_name = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class ServerStopping(Unavailable):
    """The server is shutting down."""

    reason = "SERVER_STOPPING"


class DeadlineExceeded(RemoteCalcError):
    """The call did not finish within its deadline."""

    code_name = "DEADLINE_EXCEEDED"
    reason = "DEADLINE_EXCEEDED"


class InternalError(RemoteCalcError):
    """A fault on the server, or a status the client does not expect."""

    code_name = "INTERNAL"
    reason = "INTERNAL"


class PortInUse(OSError):
    """The address a server was asked to listen on is taken."""


class FailedPrecondition(RemoteCalcError):
    """The request is well formed but cannot be served in the server's present state."""

    code_name = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class RequestExpired(FailedPrecondition):
    """A request id is dated outside the server's retention window; its outcome can no longer be told."""

    reason = "REQUEST_EXPIRED"


class RequestIdFromTheFuture(FailedPrecondition):
    """A UUIDv7 request id is dated further ahead of the server's clock than the allowed skew."""

    reason = "REQUEST_ID_FROM_THE_FUTURE"


class RequestLogFull(ResourceExhausted):
    """The server remembers as many request ids as it may; a new id is refused, an old one still answered."""

    reason = "REQUEST_LOG_FULL"


class CallerGone(RemoteCalcError):
    """The caller cancelled or its deadline passed before the change was made, so nothing was changed.

    It travels as DEADLINE_EXCEEDED: a cancelled caller hears nothing, and a caller whose deadline the
    server saw pass first (its clock runs a hair ahead) gets the code its own clock would have given.
    """

    code_name = "DEADLINE_EXCEEDED"
    reason = "CALLER_GONE"


_BY_REASON: dict[str, type[RemoteCalcError]] = {
    cls.reason: cls
    for cls in (
        SessionNotFound,
        InvalidArgument,
        InvalidToken,
        DivisionByZero,
        InvalidOperand,
        RequestIdReused,
        OutOfRange,
        ResourceExhausted,
        TooManySessions,
        TooManyWatchers,
        WatcherTooSlow,
        Unavailable,
        ServerStopping,
        DeadlineExceeded,
        InternalError,
    )
}
_BY_CODE: dict[str, type[RemoteCalcError]] = {
    "NOT_FOUND": SessionNotFound,
    "INVALID_ARGUMENT": InvalidArgument,
    "OUT_OF_RANGE": OutOfRange,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


def error_for(code_name: str, message: str, reason: str = "", index: int | None = None) -> RemoteCalcError:
    """The exception for a status code name and, when known, the server's reason."""
    cls = _BY_REASON.get(reason)
    if cls is None or cls.code_name != code_name:
        cls = _BY_CODE.get(code_name, RemoteCalcError)
    error = cls(message or code_name, index=index)
    error.code_name = code_name
    return error

"""Every error remotecalc raises, on the server and in the client, in one hierarchy.

Each class names the gRPC status code it travels as and a reason, sent in the trailing
metadata ``remotecalc-error-reason`` (and as the ``ErrorInfo`` of the standard
``google.rpc.Status``) so that a client can tell, say, a division by zero from a malformed
token although both are INVALID_ARGUMENT.

The classes build the client's tables themselves: the first class that declares a
``code_name`` is that status code's class, and every class that declares a ``reason`` is the
class of that reason. Every gRPC status code but OK has a class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import grpc

#: Trailing metadata naming the exact reason of an error status.
REASON_KEY = "remotecalc-error-reason"
#: Trailing metadata of a failed batch: the zero-based index of the operation that failed.
INDEX_KEY = "remotecalc-operation-index"
#: The ErrorInfo domain of every error remotecalc sends.
ERROR_DOMAIN = "remotecalc.dev"
#: The largest request a server takes, in bytes (gRPC's default message limit); beyond it, BATCH_TOO_LARGE.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: About how many operations fit one batch (13 bytes each, and the token and request id).
MAX_BATCH_OPERATIONS = 322_000
#: The batch size the error advises splitting into.
SPLIT_OPERATIONS = 300_000

__all__ = [
    "ERROR_DOMAIN",
    "MAX_REQUEST_BYTES",
    "Aborted",
    "AlreadyExists",
    "BatchTooLarge",
    "BeyondLimit",
    "CallerGone",
    "Cancelled",
    "CredentialsMissing",
    "CredentialsUnknown",
    "DataLoss",
    "DeadlineExceeded",
    "DivisionByZero",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "InvalidOperand",
    "InvalidToken",
    "OutOfRange",
    "OutcomeUnknown",
    "PermissionDenied",
    "PortInUse",
    "RemoteCalcError",
    "RequestExpired",
    "RequestIdFromTheFuture",
    "RequestIdReused",
    "RequestLogFull",
    "RequestNotDecodable",
    "ResourceExhausted",
    "ServerStopping",
    "SessionNotFound",
    "StepsNotKept",
    "StoreFull",
    "StoreUnavailable",
    "TooManySessions",
    "TooManyWatchers",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "WatcherTooSlow",
    "class_for_code",
    "error_for",
]

_BY_CODE: dict[str, type[RemoteCalcError]] = {}
_BY_REASON: dict[str, type[RemoteCalcError]] = {}


class RemoteCalcError(Exception):
    """Base of every remotecalc error; carries its gRPC status code and a reason."""

    code_name: str = "UNKNOWN"
    reason: ClassVar[str] = "UNKNOWN"
    #: What an error of this class says when it is raised without a message of its own.
    default_message: ClassVar[str] = "remotecalc error"

    def __init__(self, message: str | None = None, *, index: int | None = None) -> None:
        message = self.default_message if message is None else message
        super().__init__(message)
        self.message = message
        #: In a failed batch, the zero-based index of the operation that failed.
        self.index = index

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code_name" in cls.__dict__:
            _BY_CODE.setdefault(cls.code_name, cls)
        if "reason" in cls.__dict__:
            _BY_REASON[cls.reason] = cls

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code this error travels as."""
        import grpc

        return grpc.StatusCode[self.code_name]


class OutcomeUnknown(RemoteCalcError):
    """The call ended without saying whether it took effect; resolve() asks again to find out.

    The client resends the same request with the same request id: the server answers a request
    it already applied with its first reply, and applies one it never saw once. Raised by the
    client for DEADLINE_EXCEEDED, CANCELLED and UNAVAILABLE.
    """

    #: The request id of the call whose outcome is unknown ("" for a read, which has none).
    request_id: str = ""
    #: The request message that was sent.
    request: object = None
    _resend: Callable[[], Any] | None = None

    @property
    def resolvable(self) -> bool:
        """True when resolve() can ask again: the client made this call and it was not a Watch."""
        return self._resend is not None

    def resolve(self) -> Any:
        """Send the same request with the same id again; return what the first call would have.

        A create resolves to its Session, an apply to the new value, and so on. If this call's
        outcome is unknown too, it raises an OutcomeUnknown that can be resolved in turn.
        """
        if self._resend is None:
            raise TypeError(f"{type(self).__name__} from a Watch or a raw call cannot be resolved; watch again")
        return self._resend()


class Cancelled(OutcomeUnknown):
    """The call was cancelled, by the caller or by the server, before it said how it ended."""

    code_name = "CANCELLED"
    reason = "CANCELLED"


class Unknown(RemoteCalcError):
    """A status remotecalc never sends: the error came from something between client and server."""

    code_name = "UNKNOWN"
    reason = "UNKNOWN"


class InvalidArgument(RemoteCalcError):
    """The request itself is wrong; resending it unchanged will fail again."""

    code_name = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class DeadlineExceeded(OutcomeUnknown):
    """The call did not finish within its deadline; whether it took effect is unknown."""

    code_name = "DEADLINE_EXCEEDED"
    reason = "DEADLINE_EXCEEDED"


class SessionNotFound(RemoteCalcError):
    """The token names no live session: unknown, closed or expired."""

    code_name = "NOT_FOUND"
    reason = "SESSION_NOT_FOUND"
    default_message = "no live session has this token: it was closed, expired or never made"


class AlreadyExists(RemoteCalcError):
    """What the call would create exists already."""

    code_name = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class PermissionDenied(RemoteCalcError):
    """The caller may not do this."""

    code_name = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class ResourceExhausted(RemoteCalcError):
    """The server is out of a bounded resource."""

    code_name = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class FailedPrecondition(RemoteCalcError):
    """The system is not in a state in which this call can run."""

    code_name = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Aborted(RemoteCalcError):
    """The call was aborted by a conflict with another."""

    code_name = "ABORTED"
    reason = "ABORTED"


class OutOfRange(RemoteCalcError):
    """The result is not finite, or does not fit the contract's number type."""

    code_name = "OUT_OF_RANGE"
    reason = "RESULT_OUT_OF_RANGE"


class Unimplemented(RemoteCalcError):
    """The server does not have this method."""

    code_name = "UNIMPLEMENTED"
    reason = "UNIMPLEMENTED"


class InternalError(RemoteCalcError):
    """A fault on the server."""

    code_name = "INTERNAL"
    reason = "INTERNAL"


class Unavailable(OutcomeUnknown):
    """The server could not be reached or went away during the call; resolve() or retry."""

    code_name = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class DataLoss(RemoteCalcError):
    """Data was lost or corrupted."""

    code_name = "DATA_LOSS"
    reason = "DATA_LOSS"


class Unauthenticated(RemoteCalcError):
    """The call carried no valid credentials."""

    code_name = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


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


class RequestNotDecodable(InvalidArgument):
    """The request's bytes are not a message of the method's request type."""

    reason = "REQUEST_NOT_DECODABLE"


class TooManySessions(ResourceExhausted):
    """The server holds as many live sessions as it is allowed to."""

    reason = "TOO_MANY_SESSIONS"


class TooManyWatchers(ResourceExhausted):
    """The server holds as many open watches as it has threads to spare for them."""

    reason = "TOO_MANY_WATCHERS"


class WatcherTooSlow(ResourceExhausted):
    """A watcher fell so far behind that its stream was ended."""

    reason = "WATCHER_TOO_SLOW"


class ServerStopping(Unavailable):
    """The server is shutting down and refused the call before it did anything."""

    reason = "SERVER_STOPPING"
    default_message = "the server is stopping"


class BatchTooLarge(ResourceExhausted):
    """A request (a batch) larger than MAX_REQUEST_BYTES: split it into several calls."""

    reason = "BATCH_TOO_LARGE"

    @classmethod
    def of(cls, size: int, operations: int | None = None) -> BatchTooLarge:
        """The error for a request of size bytes: short for the wire, with how to split when operations is known."""
        limit = f"over the limit of {MAX_REQUEST_BYTES:,} bytes (about {MAX_BATCH_OPERATIONS:,} operations)"
        if operations is None:
            return cls(f"the request is {size:,} bytes, {limit}: split the batch")
        return cls(
            f"this batch of {operations:,} operations is {size:,} bytes, {limit}: split it into calls of at "
            f"most {SPLIT_OPERATIONS:,} operations, each all or nothing on its own, e.g. "
            f"for start in range(0, len(operations), {SPLIT_OPERATIONS}): "
            f"session.apply_many(operations[start : start + {SPLIT_OPERATIONS}])"
        )


class RequestExpired(FailedPrecondition):
    """A request id is dated outside the server's retention window; its outcome can no longer be told."""

    reason = "REQUEST_EXPIRED"


class RequestIdFromTheFuture(FailedPrecondition):
    """A UUIDv7 request id is dated further ahead of the server's clock than the allowed skew."""

    reason = "REQUEST_ID_FROM_THE_FUTURE"


class RequestLogFull(ResourceExhausted):
    """The server remembers as many request ids as it may; a new id is refused, an old one still answered."""

    reason = "REQUEST_LOG_FULL"


class BeyondLimit(OutOfRange):
    """A value beyond the limit a contract set (the article's float32): its adapter words the message."""


class StepsNotKept(FailedPrecondition):
    """A Watch asked to resume after a step the store no longer keeps: watch from now instead."""

    reason = "STEPS_NOT_KEPT"


class StoreUnavailable(Unavailable):
    """The session store (Redis) could not be reached: a change may or may not have been made."""

    reason = "STORE_UNAVAILABLE"


class StoreFull(ResourceExhausted):
    """The session store (Redis) is full and refused the change before making it: nothing was changed."""

    reason = "STORE_FULL"


class CallerGone(DeadlineExceeded):
    """The caller cancelled or its deadline passed before the change was made, so nothing was changed.

    It travels as DEADLINE_EXCEEDED: a cancelled caller hears nothing, and a caller whose deadline the
    server saw pass first (its clock runs a hair ahead) gets the code its own clock would have given.
    """

    reason = "CALLER_GONE"
    default_message = "the caller cancelled or its deadline passed before the change was made: nothing changed"


class CredentialsMissing(Unauthenticated):
    """The server requires a bearer token and the call carried none."""

    reason = "CREDENTIALS_MISSING"


class CredentialsUnknown(Unauthenticated):
    """The call's bearer token is not one the server knows."""

    reason = "CREDENTIALS_UNKNOWN"


class CertificateAnonymous(Unauthenticated):
    """Under mutual TLS without tokens, the client certificate names no caller: no SPIFFE ID, no subject."""

    reason = "CERTIFICATE_ANONYMOUS"


class PortInUse(OSError):
    """The address a server was asked to listen on is taken."""


def class_for_code(code_name: str) -> type[RemoteCalcError]:
    """The exception class of a status code name (every code but OK has one)."""
    return _BY_CODE.get(code_name, RemoteCalcError)


def error_for(code_name: str, message: str, reason: str = "", index: int | None = None) -> RemoteCalcError:
    """The exception for a status code name and, when known, the server's reason."""
    cls = _BY_REASON.get(reason)
    if cls is None or cls.code_name != code_name:
        cls = class_for_code(code_name)
    error = cls(message or code_name, index=index)
    error.code_name = code_name
    return error

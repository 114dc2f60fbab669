"""remotecalc: a stateful remote calculator over gRPC, to learn and use gRPC from a notebook.

The server (`start_server`, `RunningServer`) is imported on first use, so that a program that only
connects loads no server, health, reflection or store module.
"""

from typing import TYPE_CHECKING, Any

from .auth import AuthTokens, new_token
from .client import CallRecord, Client, Session, Watch, connect
from .errors import (
    Aborted,
    AlreadyExists,
    BatchTooLarge,
    BeyondLimit,
    CallerGone,
    Cancelled,
    CertificateAnonymous,
    CredentialsMissing,
    CredentialsUnknown,
    DataLoss,
    DeadlineExceeded,
    DivisionByZero,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    InvalidOperand,
    InvalidToken,
    OutcomeUnknown,
    OutOfRange,
    PermissionDenied,
    PortInUse,
    RemoteCalcError,
    RequestExpired,
    RequestIdFromTheFuture,
    RequestIdReused,
    RequestLogFull,
    RequestNotDecodable,
    ResourceExhausted,
    ServerStopping,
    SessionNotFound,
    StepsNotKept,
    StoreFull,
    StoreUnavailable,
    TooManySessions,
    TooManyWatchers,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    WatcherTooSlow,
)
from .model import Operator, Snapshot, Step, Update
from .tls import TLS

if TYPE_CHECKING:
    from .server import RunningServer, start_server

__version__ = "0.1.0"

_SERVER_NAMES = ("RunningServer", "start_server")


def __getattr__(name: str) -> Any:
    """The server's names, imported when first asked for."""
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TLS",
    "Aborted",
    "AlreadyExists",
    "AuthTokens",
    "BatchTooLarge",
    "BeyondLimit",
    "CallRecord",
    "CallerGone",
    "Cancelled",
    "CertificateAnonymous",
    "Client",
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
    "Operator",
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
    "RunningServer",
    "ServerStopping",
    "Session",
    "SessionNotFound",
    "Snapshot",
    "Step",
    "StepsNotKept",
    "StoreFull",
    "StoreUnavailable",
    "TooManySessions",
    "TooManyWatchers",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "Update",
    "Watch",
    "WatcherTooSlow",
    "connect",
    "new_token",
    "start_server",
]

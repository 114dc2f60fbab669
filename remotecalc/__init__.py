"""remotecalc: a stateful remote calculator over gRPC, to learn and use gRPC from a notebook."""

from .client import CallRecord, Client, Session, Watch, connect
from .errors import (
    DeadlineExceeded,
    DivisionByZero,
    InternalError,
    InvalidArgument,
    InvalidOperand,
    InvalidToken,
    OutOfRange,
    PortInUse,
    RemoteCalcError,
    RequestIdReused,
    ResourceExhausted,
    ServerStopping,
    SessionNotFound,
    TooManySessions,
    TooManyWatchers,
    Unavailable,
    WatcherTooSlow,
)
from .model import Operator, Snapshot, Step, Update
from .server import RunningServer, start_server

__version__ = "0.1.0"

__all__ = [
    "CallRecord",
    "Client",
    "DeadlineExceeded",
    "DivisionByZero",
    "InternalError",
    "InvalidArgument",
    "InvalidOperand",
    "InvalidToken",
    "Operator",
    "OutOfRange",
    "PortInUse",
    "RemoteCalcError",
    "RequestIdReused",
    "ResourceExhausted",
    "RunningServer",
    "ServerStopping",
    "Session",
    "SessionNotFound",
    "Snapshot",
    "Step",
    "TooManySessions",
    "TooManyWatchers",
    "Unavailable",
    "Update",
    "Watch",
    "WatcherTooSlow",
    "connect",
    "start_server",
]

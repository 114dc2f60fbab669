"""Build the server, run it in the background of a notebook's kernel, or in the foreground."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sized
from concurrent.futures.thread import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .addresses import host_port, is_loopback, plaintext_refusal
from .auth import AuthTokens, Callers
from .connections import IDLE_CONNECTION_TIMEOUT, connection_options, raise_open_file_limit
from .errors import PortInUse
from .guard import guards
from .service import SERVICE_NAMES, add_services
from .status import RECEIVE_LIMIT, Gate
from .stores import Store, open_store
from .tls import TLS

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "RunningServer",
    "bind_error",
    "is_loopback",
    "plaintext_refusal",
    "start_server",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
Core = Literal["sync", "aio"]

# gRPC turns SO_REUSEPORT on by default: a second server on a taken port would then start
# and silently take half of the connections, and so half of the sessions.
# A call the transport has received waits in gRPC's core until a server thread takes it; beyond
# 1,000 such calls (3,000 for sure) the core drops new ones at random as CANCELLED, which a burst
# of a few thousand calls on one channel reaches. Those calls never ran; the limits are raised so
# that a burst queues instead (HTTP/2 flow control still bounds what each connection buffers).
MAX_PENDING_CALLS = 20_000
_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
    # A request over 4 MiB reaches the handlers, which answer BATCH_TOO_LARGE instead of gRPC's raw text.
    ("grpc.max_receive_message_length", RECEIVE_LIMIT),
]
# Workers of one `remotecalc serve --workers N` share their port: their parent checked it was free
# and holds it (remotecalc.workers), so they skip the probe and turn SO_REUSEPORT on.
_WORKER_OPTIONS = [("grpc.so_reuseport", 1), *_OPTIONS[1:]]

_WORKERS_KEPT_FREE = 4
#: Seconds a stopping aio server gives the tasks of cancelled calls to end by themselves, then once cancelled.
_TASKS_FINISH = 0.5
_TASKS_WAIT = 2.0
# Seconds the interpreter's exit gives calls in flight: the store's shutdown ends every Watch, in memory
# at once, on Redis within its 0.5 s block; a call cut short instead (grace 0) makes gRPC log on stderr.
_EXIT_GRACE = 1.0


class AddServices(Protocol):
    """What registers the calculator services on a server: remotecalc.service.add_services by default."""

    def __call__(
        self,
        server: grpc.Server | grpc.aio.Server,
        engine: Store,
        *,
        asynchronous: bool = False,
        gate: Gate | None = None,
        callers: Callers | None = None,
    ) -> None: ...


_running: dict[tuple[object, ...], RunningServer] = {}
_running_lock = threading.Lock()
#: Every server not yet stopped, however it was made: the interpreter's exit stops them.
_live: weakref.WeakSet[RunningServer] = weakref.WeakSet()


def bind_error(host: str, port: int) -> OSError | None:
    """Why host:port cannot be listened on, found by binding a probe socket; None if it can."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return OSError(errno.EADDRNOTAVAIL, f"cannot listen on {host_port(host, port)}: {error.strerror}")
    failures: list[OSError] = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As gRPC binds: a port left in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return PortInUse(errno.EADDRINUSE, f"cannot listen on {host_port(host, port)}: the port is in use")
                failures.append(error)
    # gRPC listens if any of the host's addresses binds ("localhost" without IPv6, say).
    if failures and len(failures) == len(addresses):
        return OSError(failures[0].errno, f"cannot listen on {host_port(host, port)}: {failures[0].strerror}")
    return None


def _listen(
    server: grpc.Server | grpc.aio.Server, host: str, port: int, *, shared: bool = False, tls: TLS | None = None
) -> int:
    # Read before probing: a missing certificate file is the error to report, not the port.
    credentials = None if tls is None else tls.server_credentials()
    # Probing first keeps gRPC from logging its own error line before ours.
    refusal = None if shared else bind_error(host, port)
    if refusal is not None:
        raise refusal
    try:
        if credentials is None:
            bound = server.add_insecure_port(host_port(host, port))
        else:
            bound = server.add_secure_port(host_port(host, port), credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise bind_error(host, port) or OSError(f"cannot listen on {host_port(host, port)}")
    return bound


def _add_standard_services(server: grpc.Server | grpc.aio.Server) -> health.HealthServicer:
    status = health.HealthServicer()
    for name in ("", *SERVICE_NAMES):
        status.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    return status


class RunningServer:
    """A calculator server running in background threads: its address, and a way to stop it."""

    def __init__(
        self,
        engine: Store,
        host: str,
        port: int,
        core: Core,
        max_workers: int,
        *,
        services: AddServices = add_services,
        shared_port: bool = False,
        tls: TLS | None = None,
        callers: Callers | None = None,
        idle_connection_timeout: float = IDLE_CONNECTION_TIMEOUT,
    ) -> None:
        #: How many files (so connections) this process may hold open: its soft limit, raised to the hard one.
        self.open_file_limit = raise_open_file_limit()
        #: How clients reach this server: TLS with these files, or plaintext when None.
        self.tls = tls
        #: Who calls come from (bearer tokens or client certificates); None: everyone is one anonymous caller.
        self.callers = callers
        # Only a server that identifies callers hands the services its Callers (a benchmark's need not take it).
        self._service_options: dict[str, Any] = {} if callers is None else {"callers": callers}
        #: Where this server's sessions live (the in-memory store by default).
        self.engine = engine
        self._shared_port = shared_port
        self._options = [*(_WORKER_OPTIONS if shared_port else _OPTIONS), *connection_options(idle_connection_timeout)]
        options = self._options
        self.host = host
        self.core: Core = core
        self._stopped = threading.Event()
        self._key: tuple[object, ...] | None = None
        self._gate = Gate()
        self._services = services
        if core == "sync":
            self._server = grpc.server(
                ThreadPoolExecutor(max_workers=max_workers),
                options=options,
                interceptors=guards(callers, asynchronous=False),
            )
            services(self._server, engine, gate=self._gate, **self._service_options)
            self._health = _add_standard_services(self._server)
            self.port = _listen(self._server, host, port, shared=shared_port, tls=tls)
            self._server.start()
        else:
            self._loop = asyncio.new_event_loop()
            # Each watch waits in a thread of the loop's executor, and so does each call to a store that waits on
            # the network: open watches (at most max_workers - 4) leave as many threads again for such calls.
            self._loop.set_default_executor(ThreadPoolExecutor(2 * max_workers, thread_name_prefix="remotecalc-aio"))
            self._thread = threading.Thread(target=self._loop.run_forever, name="remotecalc-aio", daemon=True)
            self._thread.start()
            try:
                self.port = asyncio.run_coroutine_threadsafe(self._start_aio(host, port), self._loop).result()
            except BaseException:
                self._loop.call_soon_threadsafe(self._loop.stop)
                raise
        _live.add(self)

    async def _start_aio(self, host: str, port: int) -> int:
        self._aio_server = grpc.aio.server(
            options=self._options,
            interceptors=guards(self.callers, asynchronous=True),
        )
        self._services(self._aio_server, self.engine, asynchronous=True, gate=self._gate, **self._service_options)
        self._health = _add_standard_services(self._aio_server)
        bound = _listen(self._aio_server, host, port, shared=self._shared_port, tls=self.tls)
        await self._aio_server.start()
        return bound

    @property
    def address(self) -> str:
        """Where clients connect: host:port."""
        return host_port(self.host, self.port)

    @property
    def running(self) -> bool:
        """True until stop() has finished."""
        return not self._stopped.is_set()

    def stop(self, grace: float = 1.0) -> None:
        """Refuse new calls, let calls in flight finish for up to grace seconds, then stop."""
        if self._stopped.is_set():
            return
        _live.discard(self)
        with _running_lock:
            if self._key is not None and _running.get(self._key) is self:
                del _running[self._key]
        until = time.monotonic() + grace
        self._health.enter_graceful_shutdown()
        # gRPC's core cancels the calls it has received but not yet handed to a handler the moment
        # it shuts down, and those arriving then: their callers see CANCELLED. So the handlers refuse
        # new calls first (UNAVAILABLE, SERVER_STOPPING: never started, safe to resend), watches end,
        # the calls already running finish, and only then does the transport stop.
        self._gate.close()
        self.engine.shutdown()
        self._gate.wait_empty(grace)
        rest = max(0.0, until - time.monotonic())
        if self.core == "sync":
            self._server.stop(rest).wait()
        else:
            asyncio.run_coroutine_threadsafe(self._stop_aio(rest), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        self._stopped.set()

    async def _stop_aio(self, grace: float) -> None:
        await self._aio_server.stop(grace)
        # Calls gRPC cancelled may leave their tasks a step from done: end them here, or closing the
        # loop would destroy them pending (and asyncio log it). Most end by themselves at once (the
        # store's shutdown ended every Watch); cancelling one still running prints gRPC's traceback.
        left = {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}
        if left:
            _, left = await asyncio.wait(left, timeout=_TASKS_FINISH)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=_TASKS_WAIT)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server is stopped; False if timeout passed first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        engine = self.engine
        count = len(engine) if isinstance(engine, Sized) else None
        where = f"sessions in {engine!r}" if count is None else f"{count} session{'' if count == 1 else 's'}"
        guards = []
        if self.tls is not None:
            guards.append("mutual TLS" if self.tls.client_ca is not None else "TLS")
        if self.callers is not None and self.callers.tokens is not None:
            guards.append("bearer tokens")
        shown = "".join(f", {guard}" for guard in guards)
        return f"<RunningServer {self.address} {state}, {where}{shown}>"


def start_server(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    max_sessions: int = 100_000,
    idle_timeout: float = 3600.0,
    history_limit: int = 1000,
    clock: Callable[[], float] = time.monotonic,
    core: Core = "sync",
    max_workers: int = 32,
    store: str | Store | None = None,
    services: AddServices = add_services,
    shared_port: bool = False,
    tls: TLS | None = None,
    insecure: bool = False,
    auth_tokens: AuthTokens | str | os.PathLike[str] | None = None,
    idle_connection_timeout: float = IDLE_CONNECTION_TIMEOUT,
) -> RunningServer:
    """Start a server in background threads; the same arguments again return the running one.

    Port 0 picks a free port. Loopback unless host says otherwise. Servers still running
    when the interpreter exits are stopped then. store is where sessions live: None or "memory"
    (this process), a ``redis://HOST:PORT/DB`` or ``rediss://`` URL, or a store object. services
    registers the calculator services on the gRPC server (a benchmark passes its own). shared_port
    is for the workers of `remotecalc serve --workers N` (SO_REUSEPORT on a port their parent holds).
    tls serves TLS only, with remotecalc.TLS(cert=..., key=...) (PEM files); its client_ca requires
    client certificates signed by that CA (mutual TLS). A host other than loopback without tls is
    refused (ValueError) unless insecure=True. auth_tokens (an AuthTokens, or the path of a token file
    of NAME:TOKEN lines) requires a bearer token on every call but health's, and each session then
    belongs to the caller that made it; with mutual TLS and no tokens, the client certificate's SPIFFE ID
    (its spiffe:// URI SAN), else its subject, is the caller. idle_connection_timeout closes a connection
    with no call open after that many seconds (its client reconnects by itself on its next call).
    """
    refusal = None if tls is not None or insecure else plaintext_refusal(host)
    if refusal is not None:
        raise ValueError(refusal)
    key: tuple[object, ...] = (host, port, max_sessions, idle_timeout, history_limit, clock, core, max_workers)
    key += (store, services, shared_port, tls, auth_tokens, idle_connection_timeout)
    with _running_lock:
        existing = _running.get(key)
        if existing is not None and existing.running:
            return existing
        callers = _callers(auth_tokens, tls)
        engine = open_store(
            store,
            max_sessions=max_sessions,
            idle_timeout=idle_timeout,
            history_limit=history_limit,
            # An open Watch holds a worker thread: keep some free so that other calls still run.
            max_watchers=max(1, max_workers - _WORKERS_KEPT_FREE),
            clock=clock,
        )
        server = RunningServer(
            engine,
            host,
            port,
            core,
            max_workers,
            services=services,
            shared_port=shared_port,
            tls=tls,
            callers=callers,
            idle_connection_timeout=idle_connection_timeout,
        )
        engine.start()
        server._key = key
        _running[key] = server
    return server


def _callers(auth_tokens: AuthTokens | str | os.PathLike[str] | None, tls: TLS | None) -> Callers | None:
    """Who calls come from: bearer tokens, else mutual TLS's certificates; None when no one is identified."""
    mutual_tls = tls is not None and tls.client_ca is not None
    if auth_tokens is None:
        return Callers(None, mutual_tls=True) if mutual_tls else None
    tokens = auth_tokens if isinstance(auth_tokens, AuthTokens) else AuthTokens.from_file(auth_tokens)
    return Callers(tokens, mutual_tls=mutual_tls)


def _stop_all() -> None:
    for server in list(_live):
        server.stop(grace=_EXIT_GRACE)


# At exit the interpreter joins every thread that is not a daemon before it runs atexit's functions,
# and a server thread serving a Watch (the panel's own, say) never ends by itself: the servers must
# stop first. threading's exit functions run before that join, newest first, so this one is
# registered after concurrent.futures.thread's (imported above), which joins every ThreadPoolExecutor's threads.
threading._register_atexit(_stop_all)  # type: ignore[attr-defined]

"""A Watch resumes from any stream end that is not remotecalc's own: a proxy between breaks it for real."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import remotecalc
from remotecalc import RunningServer

_WATCH = "/remotecalc.v1.Calculator/WatchSession"
# What nginx's grpc_read_timeout gives a client on a quiet stream.
_NGINX_RESET = "Received RST_STREAM with error code 2"


class BreakingProxy:
    """A gRPC proxy on loopback that passes every call through to upstream, and breaks the first Watch.

    The first WatchSession stream ends after `after` messages, the way `how` says: "internal" (a status
    INTERNAL with no reason of remotecalc's, as a proxy's reset reaches the client), "reset" (the stream
    cancelled: an RST_STREAM frame), "ended" (a clean end before the session closed), or "domain" (INTERNAL
    carrying remotecalc's reason, as a bug on the server would). Later streams pass through untouched.
    """

    def __init__(self, upstream: str, how: str, after: int) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._how, self._after = how, after
        self._lock = threading.Lock()
        #: How many Watch streams were opened through the proxy.
        self.watches = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((self,))
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        """Every method, passed through as bytes."""
        method: str = details.method  # type: ignore[attr-defined]
        if method == _WATCH:
            return grpc.unary_stream_rpc_method_handler(self._stream)
        unary = self._channel.unary_unary(method)

        def passed(request: bytes, context: grpc.ServicerContext) -> bytes:
            return unary(request, metadata=context.invocation_metadata())  # type: ignore[no-any-return]

        return grpc.unary_unary_rpc_method_handler(passed)

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        with self._lock:
            self.watches += 1
            breaking = self.watches == 1
        upstream = self._channel.unary_stream(_WATCH)(request, metadata=context.invocation_metadata())
        context.add_callback(upstream.cancel)
        for sent, message in enumerate(upstream, 1):
            yield message
            if breaking and sent == self._after:
                upstream.cancel()
                self._break(context)
                return

    def _break(self, context: grpc.ServicerContext) -> None:
        if self._how == "internal":
            context.abort(grpc.StatusCode.INTERNAL, _NGINX_RESET)
        elif self._how == "reset":
            context.cancel()
        elif self._how == "domain":
            context.set_trailing_metadata((("remotecalc-error-reason", "INTERNAL"),))
            context.abort(grpc.StatusCode.INTERNAL, "internal server error")

    def stop(self) -> None:
        """Stop serving and close the upstream channel."""
        self._server.stop(grace=0).wait()
        self._channel.close()


@pytest.fixture
def proxied(server: RunningServer) -> Iterator[Callable[[str, int], BreakingProxy]]:
    """A maker of proxies to the `server` fixture, each stopped after the test."""
    proxies: list[BreakingProxy] = []

    def make(how: str, after: int) -> BreakingProxy:
        proxies.append(BreakingProxy(server.address, how, after))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


def _steps_read(updates: Iterator[remotecalc.Update], last: int) -> list[int]:
    """The step numbers a watch delivers, in order, until it has delivered step last."""
    seen: list[int] = []
    for update in updates:
        seen.extend(step.number for step in update.steps)
        if update.step_count >= last:
            return seen
    raise AssertionError(f"the watch ended after steps {seen}")


@pytest.mark.parametrize("how", ["internal", "reset", "ended"])
def test_a_watch_broken_by_a_proxy_resumes_with_no_step_missing_or_repeated(
    how: str, proxied: Callable[[str, int], BreakingProxy]
) -> None:
    proxy = proxied(how, 5)  # the state, then steps 1 to 4; step 5 on is dropped with the stream
    heard: list[remotecalc.RemoteCalcError | None] = []
    with (
        remotecalc.connect(proxy.address, timeout=10) as client,
        client.create(0) as session,
        session.watch(on_resume=heard.append) as watch,
    ):
        updates = iter(watch)
        assert next(updates).step_count == 0  # watching from step 0 on
        for _ in range(20):
            session.add(1)
        assert _steps_read(updates, 20) == list(range(1, 21))
        assert watch.resumes == 1 and proxy.watches == 2
    assert len(heard) == 2 and heard[1] is None, heard
    told = str(heard[0])
    print(f"{how}: on_resume heard {type(heard[0]).__name__}: {told}")
    assert "resuming after step 4" in told
    if how == "internal":
        assert isinstance(heard[0], remotecalc.InternalError) and _NGINX_RESET in told
        assert told.startswith("the stream was broken between client and server")


def test_a_watch_ended_by_a_domain_error_is_not_resumed(proxied: Callable[[str, int], BreakingProxy]) -> None:
    proxy = proxied("domain", 2)
    heard: list[remotecalc.RemoteCalcError | None] = []
    with (
        remotecalc.connect(proxy.address, timeout=10) as client,
        client.create(0) as session,
        session.watch(on_resume=heard.append) as watch,
    ):
        updates = iter(watch)
        assert next(updates).step_count == 0
        session.add(1)
        session.add(1)
        with pytest.raises(remotecalc.InternalError, match="internal server error"):
            _steps_read(updates, 2)
        assert watch.resumes == 0 and proxy.watches == 1
    assert heard == []


def test_a_watch_whose_client_is_closed_ends_and_is_not_resumed(server: RunningServer) -> None:
    heard: list[remotecalc.RemoteCalcError | None] = []
    client = remotecalc.connect(server, timeout=10)
    watch = client.create(0).watch(on_resume=heard.append)
    updates = iter(watch)
    assert next(updates).step_count == 0
    client.close()
    with pytest.raises(remotecalc.Cancelled, match="Channel closed"):
        next(updates)
    assert heard == [] and watch.resumes == 0

"""Reflection follows the auth setting: with bearer tokens, a reflection call needs one too.

The calculator services authenticate inside their one wrapper (remotecalc.status), which also hands
each method its caller; reflection is grpcio's own bidirectional service, so a server interceptor
(one for each core) guards it, with the same `Callers` and the same statuses. Health stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from .auth import Callers
from .errors import RemoteCalcError
from .status import Status, status_of

__all__ = ["AsyncReflectionGuard", "ReflectionGuard", "guards"]

#: The method prefix of every version of gRPC's reflection service.
REFLECTION_PREFIX = "/grpc.reflection."

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _refusal(callers: Callers, details: grpc.HandlerCallDetails) -> Status | None:
    """Why a reflection call is refused, None when its bearer token names a caller."""
    try:
        callers.of_metadata(details.invocation_metadata or ())
    except RemoteCalcError as error:
        return status_of(error)
    return None


class ReflectionGuard(grpc.ServerInterceptor):
    """Refuses a reflection call without a valid bearer token, on grpc.server."""

    def __init__(self, callers: Callers) -> None:
        self._callers = callers

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Handler | None], details: grpc.HandlerCallDetails
    ) -> Handler | None:
        """The reflection handler for an authenticated call, a refusal for any other; other methods pass."""
        if not details.method.startswith(REFLECTION_PREFIX):
            return continuation(details)
        status = _refusal(self._callers, details)
        if status is None:
            return continuation(details)

        def refuse(_requests: Any, context: grpc.ServicerContext) -> None:
            context.set_trailing_metadata(status.metadata)
            context.abort(status.code, status.message)

        return grpc.stream_stream_rpc_method_handler(refuse)


class AsyncReflectionGuard(grpc.aio.ServerInterceptor):
    """Refuses a reflection call without a valid bearer token, on grpc.aio.server."""

    def __init__(self, callers: Callers) -> None:
        self._callers = callers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """The reflection handler for an authenticated call, a refusal for any other; other methods pass."""
        if not details.method.startswith(REFLECTION_PREFIX):
            return await continuation(details)
        status = _refusal(self._callers, details)
        if status is None:
            return await continuation(details)

        async def refuse(_requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(status.code, status.message, status.metadata)

        return grpc.stream_stream_rpc_method_handler(refuse)


def guards(callers: Callers | None, *, asynchronous: bool) -> list[Any]:
    """The interceptors a server needs for callers: none without bearer tokens."""
    if callers is None or callers.tokens is None:
        return []
    return [AsyncReflectionGuard(callers) if asynchronous else ReflectionGuard(callers)]

"""Part 10's loads, run in the load generator: unary Apply and new connections, plaintext or TLS.

Credentials come as PEM file paths ({"root": ..., "cert": ..., "key": ...}; None for plaintext), and
"bearer" a token to send with every call. Every
channel has a subchannel pool of its own, so each is a connection of its own with its own handshake.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from remotecalc.certificates import CertificateFiles
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc

from .measure import rates

__all__ = ["measure_reload_check", "measure_tls_apply", "measure_tls_connect"]

_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
_ADD = pb.Operation(operator=pb.OPERATOR_ADD, operand=1.0)


def _credentials(pem: dict[str, str] | None) -> grpc.ChannelCredentials | None:
    if pem is None:
        return None
    key, cert = pem.get("key"), pem.get("cert")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(pem["root"]).read_bytes(),
        private_key=None if key is None else Path(key).read_bytes(),
        certificate_chain=None if cert is None else Path(cert).read_bytes(),
    )


def _metadata(pem: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    bearer = None if pem is None else pem.get("bearer")
    return () if bearer is None else (("authorization", f"Bearer {bearer}"),)


def _channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address, options=_OWN_CONNECTION)
    return grpc.secure_channel(address, credentials, options=_OWN_CONNECTION)


def measure_tls_apply(address: str, callers: int, seconds: float, pem: dict[str, str] | None) -> dict[str, float]:
    """remotecalc.v1 Apply calls per second from `callers` threads, each its own connection (handshake done first)."""
    credentials, metadata = _credentials(pem), _metadata(pem)
    channels = [_channel(address, credentials) for _ in range(callers)]
    stubs = [pb_grpc.CalculatorStub(channel) for channel in channels]
    create = pb.CreateSessionRequest(value=0.0)
    tokens = [stub.CreateSession(create, timeout=10, metadata=metadata).session.token for stub in stubs]
    results: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    deadline = [0.0]

    def run(index: int) -> None:
        apply, latencies, clock = stubs[index].Apply, results[index], time.perf_counter
        request = pb.ApplyRequest(token=tokens[index], operation=_ADD)
        start.wait()
        while (began := clock()) < deadline[0]:
            apply(request, timeout=10, metadata=metadata)
            latencies.append((clock() - began) * 1000)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(callers)]
    try:
        for thread in threads:
            thread.start()
        started = time.perf_counter()
        deadline[0] = started + seconds
        start.wait()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        for stub, token in zip(stubs, tokens, strict=True):
            stub.CloseSession(pb.CloseSessionRequest(token=token), timeout=10, metadata=metadata)
    finally:
        for channel in channels:
            channel.close()
    return {"callers": callers, **rates([x for per in results for x in per], elapsed)}


def measure_tls_connect(address: str, connections: int, pem: dict[str, str] | None) -> dict[str, float]:
    """Time to the first reply on a new channel (connect, handshake, one Apply), one connection after another."""
    credentials, metadata = _credentials(pem), _metadata(pem)
    with _channel(address, credentials) as setup:
        create = pb.CreateSessionRequest(value=0.0)
        token = pb_grpc.CalculatorStub(setup).CreateSession(create, timeout=10, metadata=metadata).session.token
        request = pb.ApplyRequest(token=token, operation=_ADD)
        latencies: list[float] = []
        clock = time.perf_counter
        started = clock()
        for _ in range(connections):
            began = clock()
            with _channel(address, credentials) as fresh:
                pb_grpc.CalculatorStub(fresh).Apply(request, timeout=10, metadata=metadata)
                latencies.append((clock() - began) * 1000)
        elapsed = clock() - started
        pb_grpc.CalculatorStub(setup).CloseSession(pb.CloseSessionRequest(token=token), timeout=10, metadata=metadata)
    return {"connections": connections, **rates(latencies, elapsed)}


def measure_reload_check(cert: str, key: str, client_ca: str, checks: int = 2_000) -> dict[str, float]:
    """Microseconds a TLS server's per-handshake question (have the files changed?) costs when they have not."""
    watched = CertificateFiles(cert, key, client_ca)
    started = time.perf_counter()
    for _ in range(checks):
        watched.fetch()
    return {"checks": checks, "us_per_check": (time.perf_counter() - started) / checks * 1e6}

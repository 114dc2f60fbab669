"""Connections cost the server little: open files raised to the hard limit, silent and idle connections closed."""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from conftest import FakeClock
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import REMOTECALC, WAIT

import remotecalc
from remotecalc.connections import HANDSHAKE_TIMEOUT

SILENT = 1_100


def _limited(soft: int, hard: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


def _open_files(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@pytest.fixture
def many_files() -> Iterator[None]:
    """This test process may open enough sockets to play the stranger."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < SILENT + 200:
        pytest.fail(f"the test needs a hard limit of {SILENT + 200} open files, this machine has {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, SILENT + 200), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_silent_connections_do_not_lock_anyone_out_and_are_closed_after_the_handshake_timeout(
    many_files: None,
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # Started with Linux's default soft limit of 1,024 open files.
    process = subprocess.Popen(
        [REMOTECALC, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limited(1024, hard),
    )
    silent: list[socket.socket] = []
    try:
        assert process.stdout is not None
        address = process.stdout.readline().split("listening on ")[1].split()[0]
        assert _open_files(process.pid)[0] == _open_files(process.pid)[1]  # the soft limit raised to the hard one
        host, port = address.rsplit(":", 1)
        for _ in range(SILENT):
            silent.append(socket.create_connection((host, int(port)), timeout=WAIT))
        # Someone else is served meanwhile (with 1,024 files the server could not accept this caller at all).
        with remotecalc.connect(address, timeout=10) as client, client.create(1) as session:
            assert session.add(2) == 3
        # The silent ones never sent a byte: each is closed once the handshake timeout has passed (the server
        # may have sent its own HTTP/2 preface first).
        started = time.monotonic()
        for connection in silent:
            connection.settimeout(HANDSHAKE_TIMEOUT + WAIT - (time.monotonic() - started))
            while connection.recv(4096):
                pass
        print(f"{SILENT} silent connections closed {time.monotonic() - started:.1f} s after the last was opened")
    finally:
        for connection in silent:
            connection.close()
        process.kill()
        process.wait(WAIT)


def test_a_server_that_may_open_few_files_says_so_and_serves() -> None:
    process = subprocess.Popen(
        [REMOTECALC, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limited(512, 512),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        address = process.stdout.readline().split("listening on ")[1].split()[0]
        with remotecalc.connect(address, timeout=10) as client, client.create(1) as session:
            assert session.add(1) == 2
        process.terminate()
        process.wait(WAIT)
        warning = process.stderr.read()
        assert "may open only 512 files, so it can hold about 448 connections at once" in warning
        assert "LimitNOFILE=" in warning
    finally:
        process.kill()
        process.wait(WAIT)


def test_a_connection_with_no_call_is_closed_after_the_idle_timeout_and_one_with_a_watch_is_not() -> None:
    with remotecalc.start_server(port=0, clock=FakeClock(), idle_connection_timeout=0.5) as server:
        idle = grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        states: list[grpc.ChannelConnectivity] = []
        went_idle = threading.Event()

        def seen(state: grpc.ChannelConnectivity) -> None:
            states.append(state)
            if state is grpc.ChannelConnectivity.IDLE and grpc.ChannelConnectivity.READY in states:
                went_idle.set()

        with remotecalc.connect(server) as watcher, watcher.create(1) as session:
            watch = iter(session.watch())
            assert next(watch).value == 1
            health = health_pb2_grpc.HealthStub(idle)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
            idle.subscribe(seen, try_to_connect=False)
            # The server closes the idle connection; the one holding a Watch stays open and delivers.
            assert went_idle.wait(WAIT), f"the idle connection was never closed: {states}"
            session.add(1)
            assert next(watch).value == 2
            # The closed connection's client reconnects by itself on its next call.
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        idle.close()

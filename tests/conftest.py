"""Fixtures every test module can use: a clock to inject, a real server on loopback, a client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import remotecalc
from remotecalc import Client, RunningServer, start_server


class FakeClock:
    """A monotonic clock that moves only when a test says so; pass it as clock=."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by seconds."""
        self.now += seconds


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    """The clock the `server` fixture's engine reads; advance it to age sessions."""
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[RunningServer]:
    """A running server on 127.0.0.1, port 0, stopped after the test."""
    # A clock of its own also keeps start_server from handing back another test's server:
    # the launcher returns the running server for identical arguments.
    running = start_server(port=0, clock=clock)
    try:
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (AOF, appendfsync always) for the whole run; its URL."""
    from redis_servers import RedisServer

    redis_server = RedisServer(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    try:
        yield redis_server.url
    finally:
        redis_server.stop()


@pytest.fixture(params=["memory", "redis"])
def store_server(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RunningServer]:
    """A running server whose sessions live in memory, then one whose sessions live in Redis."""
    store = request.getfixturevalue("redis_url") if request.param == "redis" else None
    running = start_server(port=0, clock=clock, store=store)
    try:
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    """A remotecalc client connected to the `server` fixture."""
    with remotecalc.connect(server) as connected:
        yield connected


#: What a module's tests start beyond a server in the test's own process, as markers to select with -m.
#: slow: processes (serve, workers, Redis, nginx, Node, a kernel, JupyterLab); chaos: it kills some of them.
#: A module not named here runs in-process and is quick; a test that uses Redis is marked `redis` by its fixture.
MODULE_MARKS: dict[str, tuple[str, ...]] = {
    "test_benchmark": ("slow",),
    "test_browser": ("slow",),
    "test_caller_gone": ("slow",),
    "test_certificate_dates": ("slow",),
    "test_cli": ("slow",),
    "test_exit": ("slow",),
    "test_grpc_js": ("slow",),
    "test_nginx": ("slow", "chaos"),
    "test_notebook_execute": ("slow",),
    "test_scaling": ("slow", "chaos"),
    "test_store_chaos": ("slow", "chaos"),
    "test_store_cli": ("slow",),
    "test_store_cluster": ("slow", "chaos"),
    "test_store_faults": ("slow", "chaos"),
    "test_tls_reload": ("slow",),
    "test_workers": ("slow", "chaos"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it starts: its module's marks, `redis` by fixture, notebooks as `notebook` and slow."""
    for item in items:
        path = Path(str(item.path))
        if path.suffix == ".ipynb":
            item.add_marker("notebook")
            item.add_marker("slow")
            continue
        for mark in MODULE_MARKS.get(path.stem, ()):
            item.add_marker(mark)
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker("redis")

"""Behind Debian's nginx with the configuration docs/operations.md gives: Watch, balancing, a replica killed.

Two replicas share sessions in Redis; nginx (`grpc_pass`) is the clients' one address.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from load import Writer, read_steps
from nginx_proxy import Nginx, documented_configuration
from processes import WAIT
from test_scaling import Replica

import remotecalc


@pytest.fixture
def replicas(redis_url: str) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas on one Redis, each a process of its own."""
    pair = (Replica(redis_url), Replica(redis_url))
    try:
        yield pair
    finally:
        for replica in pair:
            replica.kill()


def _proxy(tmp_path: Path, replicas: tuple[Replica, Replica], **options: str) -> Nginx:
    return Nginx(tmp_path, [replica.address for replica in replicas], **options)


def test_the_documented_configuration_keeps_a_quiet_watch_open_and_balances_per_call() -> None:
    documented = documented_configuration()
    assert "grpc_pass grpc://remotecalc;" in documented
    assert "grpc_read_timeout 1h;" in documented and "grpc_send_timeout 1h;" in documented
    assert "keepalive" in documented and "http2" in documented


def test_a_quiet_watch_reset_by_the_proxy_resumes_with_no_step_missing_or_repeated(
    tmp_path: Path, replicas: tuple[Replica, Replica]
) -> None:
    # nginx ends a stream that sends nothing for grpc_read_timeout (60 s by default) with RST_STREAM: a short one here.
    nginx = _proxy(tmp_path, replicas, read_timeout="1s")
    try:
        with remotecalc.connect(nginx.address, timeout=10) as client, client.create(1) as session:
            resumed = threading.Event()
            reasons: list[BaseException | None] = []

            def on_resume(error: BaseException | None) -> None:
                reasons.append(error)
                if error is not None:
                    resumed.set()

            with session.watch(on_resume=on_resume) as watch:
                updates = iter(watch)
                assert next(updates).step_count == 0
                assert session.add(1) == 2
                assert [step.number for step in next(updates).steps] == [1]
                seen: list[int] = []
                reader = threading.Thread(target=read_steps, args=(updates, seen, 4), daemon=True)
                reader.start()
                # Quiet now: nginx resets the stream after a second, and the client watches again by itself.
                assert resumed.wait(WAIT), "the Watch was never reset by nginx, or never said so"
                print(f"the proxy's reset, as on_resume heard it: {reasons[0]!r}")
                for operand in (1, 1, 1):
                    session.add(operand)
                reader.join(WAIT)
                assert seen == [2, 3, 4]
                assert watch.resumes >= 1
            assert session.value() == 5
    finally:
        nginx.stop()


def test_unary_calls_from_one_connection_reach_both_replicas(tmp_path: Path, replicas: tuple[Replica, Replica]) -> None:
    nginx = _proxy(tmp_path, replicas)
    try:
        with remotecalc.connect(nginx.address, timeout=10) as client:
            sessions = [client.create(n) for n in range(20)]
            assert [session.add(1) for session in sessions] == [n + 1 for n in range(20)]
            # One client, one connection to nginx, and nginx sends its calls to both replicas: each has a connection.
            for replica in replicas:
                accepted = [
                    connection
                    for connection in psutil.Process(replica.process.pid).net_connections(kind="tcp")
                    if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == replica.port
                ]
                assert accepted, f"no call reached the replica on {replica.address}"
    finally:
        nginx.stop()


def test_a_replica_killed_behind_the_proxy_loses_and_doubles_nothing(
    tmp_path: Path, replicas: tuple[Replica, Replica]
) -> None:
    nginx = _proxy(tmp_path, replicas)
    progress = threading.Condition()
    try:
        with remotecalc.connect(nginx.address, timeout=10) as client:
            writers = [Writer(client, 150, progress) for _ in range(3)]
            for writer in writers:
                writer.start()
            with progress:
                assert progress.wait_for(lambda: all(w.acknowledged >= 40 or w.failure for w in writers), WAIT)
            replicas[0].kill()
            for writer in writers:
                writer.join(WAIT)
            assert [w.failure for w in writers] == [None, None, None]
            assert [w.acknowledged for w in writers] == [150, 150, 150]
            # Every add, acknowledged at once or settled by its request id, is in its session exactly once.
            assert [(w.session.state().step_count, w.session.value()) for w in writers] == [(150, 150.0)] * 3
            print(f"unknown outcomes settled by request id: {[w.resolved for w in writers]}")
    finally:
        nginx.stop()

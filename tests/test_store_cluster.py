"""A Redis Cluster with one master down: only that master's sessions fail, and they come back with it.

The Cluster runs the README's recommended setting for masters without replicas,
cluster-require-full-coverage no, with a short cluster-node-timeout so that the test is quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_outage import Outage, master_outage
from conftest import FakeClock
from contracts import V1Calls, reason_of, rpc_error
from processes import Served
from redis_servers import RedisClusterServers

from remotecalc import start_server

NODE_TIMEOUT_MS = "500"


@pytest.fixture
def recommended_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A 3-master Cluster, no replicas, cluster-require-full-coverage no, a 0.5 s node timeout."""
    cluster = RedisClusterServers(
        tmp_path,
        extra=("--cluster-require-full-coverage", "no", "--cluster-node-timeout", NODE_TIMEOUT_MS),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_a_master_down_fails_only_its_own_sessions_and_they_return_with_it(
    recommended_cluster: RedisClusterServers,
) -> None:
    def while_failed(outage: Outage) -> None:
        # The moment the whole cluster would go down without the setting: the other shards still answer.
        calls = V1Calls(channel)
        for index, tokens in outage.sessions.items():
            for token in tokens:
                if recommended_cluster.nodes[index] is outage.victim:
                    error = rpc_error(lambda token=token: calls.apply(token, "+", 1))  # type: ignore[misc]
                    assert error.code() is grpc.StatusCode.UNAVAILABLE, error.details()
                    assert reason_of(error) == "STORE_UNAVAILABLE"
                else:
                    assert calls.apply(token, "+", 1) == 8
                    assert calls.apply(token, "-", 1) == 7

    with (
        start_server(port=0, clock=FakeClock(), store=recommended_cluster.url) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        outage = master_outage(recommended_cluster, channel, while_failed=while_failed)
        print(outage.report(f"cluster-require-full-coverage no, cluster-node-timeout {NODE_TIMEOUT_MS} ms"))
        assert outage.victim_reasons == {"STORE_UNAVAILABLE"}
        assert not outage.other_reasons, "a session on a master that was up failed"
        # The victim's sessions come back with their values (its AOF, appendfsync always).
        calls = V1Calls(channel)
        for tokens in outage.sessions.values():
            for token in tokens:
                assert calls.apply(token, "*", 2) == 14


def test_workers_share_a_redis_cluster(recommended_cluster: RedisClusterServers) -> None:
    served = Served("--port", "0", "--workers", "2", "--store", recommended_cluster.url)
    try:
        with grpc.insecure_channel(served.address()) as channel:
            calls = V1Calls(channel)
            tokens = [calls.create(index) for index in range(6)]
            assert [calls.apply(token, "+", 1) for token in tokens] == [1, 2, 3, 4, 5, 6]
    finally:
        assert served.stop() == 0

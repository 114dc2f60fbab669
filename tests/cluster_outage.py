"""One Redis Cluster master down and back, under a remotecalc server: which sessions answer, and when.

Shared by tests/test_store_cluster.py (the recommended settings, fast) and benchmarks/cluster_outage.py
(Redis's defaults too, slow): both print the timeline this measures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from contracts import V1Calls, reason_of
from redis_servers import RedisClusterServers, RedisServer

#: How long any one phase may take before the outage counts as a hang.
BOUND = 120.0
_SESSIONS_PER_MASTER = 2


@dataclass
class Outage:
    """What one outage showed: seconds from the kill (or the restart), and each probe's failures."""

    victim: RedisServer
    sessions: dict[int, list[str]] = field(default_factory=dict)
    #: Seconds from the kill until the surviving masters marked the victim FAIL.
    marked_failed: float = math.nan
    #: Seconds from the kill until a session on a surviving master first failed (nan: none ever did).
    others_failed: float = math.nan
    #: Seconds from the restart until every session on every master answered again.
    recovered: float = math.nan
    #: The reasons the victim's sessions failed with while it was down.
    victim_reasons: set[str] = field(default_factory=set)
    #: The reasons sessions on the surviving masters failed with, if any did.
    other_reasons: set[str] = field(default_factory=set)

    def report(self, title: str) -> str:
        """One line of figures."""
        others = "never" if math.isnan(self.others_failed) else f"{self.others_failed:.1f} s after the kill"
        return (
            f"{title}: the victim marked FAIL {self.marked_failed:.1f} s after the kill; sessions on the other"
            f" masters first failed: {others}; every session answered {self.recovered:.1f} s after the restart;"
            f" failures: the victim's {sorted(self.victim_reasons)}, the others' {sorted(self.other_reasons)}"
        )


def spread_sessions(cluster: RedisClusterServers, calls: V1Calls) -> dict[int, list[str]]:
    """Sessions opened until every master holds a few: master index -> tokens."""
    by_master: dict[int, list[str]] = {index: [] for index in range(len(cluster.nodes))}
    for _ in range(200):
        token = calls.create(7)
        owner = cluster.nodes.index(cluster.owner_of(f"rc:{{{token}}}:s"))
        by_master[owner].append(token)
        if all(len(tokens) >= _SESSIONS_PER_MASTER for tokens in by_master.values()):
            return by_master
    raise AssertionError(f"200 sessions did not reach every master: {by_master}")


def _probe(calls: V1Calls, token: str) -> str:
    """'' when the session answers with its value, else the failure's reason."""
    try:
        value, _, _ = calls.read(token)
    except grpc.RpcError as error:
        return reason_of(error) or "no reason"
    assert value == 7, value
    return ""


def master_outage(
    cluster: RedisClusterServers,
    channel: grpc.Channel,
    *,
    victim_index: int = 1,
    while_failed: Callable[[Outage], None] | None = None,
) -> Outage:
    """Kill one master, wait until the others mark it FAIL, restart it and wait until every session answers.

    while_failed runs once the victim is marked FAIL, before the restart (a test's asserts go there).
    With Redis's default cluster-require-full-coverage yes, it also waits for the other shards to fail.
    """
    calls = V1Calls(channel)
    outage = Outage(cluster.nodes[victim_index], spread_sessions(cluster, calls))
    victim_id = cluster.node_id(outage.victim)
    survivors = [node for node in cluster.nodes if node is not outage.victim]
    full_coverage = "yes" in cluster.ask(survivors[0], "config", "get", "cluster-require-full-coverage")
    others = [token for index, tokens in outage.sessions.items() if index != victim_index for token in tokens]
    mine = outage.sessions[victim_index]
    killed = time.monotonic()
    outage.victim.kill()
    while True:
        elapsed = time.monotonic() - killed
        assert elapsed < BOUND, f"the outage did not settle in {BOUND} s: {outage.report('so far')}"
        outage.victim_reasons.update(filter(None, (_probe(calls, token) for token in mine)))
        failed_others = set(filter(None, (_probe(calls, token) for token in others)))
        if failed_others and math.isnan(outage.others_failed):
            outage.others_failed = elapsed
        outage.other_reasons |= failed_others
        if math.isnan(outage.marked_failed) and all(cluster.seen_failed(node, victim_id) for node in survivors):
            outage.marked_failed = time.monotonic() - killed
        if not math.isnan(outage.marked_failed) and (not full_coverage or not math.isnan(outage.others_failed)):
            break
        time.sleep(0.05)  # polling the cluster's own state, not waiting for time to pass
    if while_failed is not None:
        while_failed(outage)
    restarted = time.monotonic()
    outage.victim.start()
    while any(_probe(calls, token) for token in [*mine, *others]):
        assert time.monotonic() - restarted < BOUND, f"not every session answered {BOUND} s after the restart"
        time.sleep(0.05)  # polling the sessions, not waiting for time to pass
    outage.recovered = time.monotonic() - restarted
    return outage

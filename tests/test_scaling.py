"""Several replicas: a client balances over their addresses, a dead one costs nothing, a Watch resumes."""

from __future__ import annotations

import pytest
from conftest import FakeClock, free_port

import remotecalc
from remotecalc.client import grpc_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:3000", ("127.0.0.1:3000", False)),
        ("localhost:3000", ("localhost:3000", False)),
        ("127.0.0.1:3001, 127.0.0.2:3002", ("ipv4:127.0.0.1:3001,127.0.0.2:3002", True)),
        ("[::1]:3001,::1:3002", ("ipv6:[::1]:3001,[::1]:3002", True)),
        ("dns:///replicas.example:3000", ("dns:///replicas.example:3000", True)),
    ],
)
def test_several_addresses_become_one_balanced_target(target: str, expected: tuple[str, bool]) -> None:
    assert grpc_target(target) == expected


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("localhost:3001,localhost:3002", "use dns:///NAME:PORT"),
        ("127.0.0.1:3001,[::1]:3002", "must all be IPv4 or all IPv6"),
        ("127.0.0.1:3001,127.0.0.1:0", "the port must be 1 to 65535"),
        ("127.0.0.1:3001,127.0.0.1", "is not IP:PORT"),
    ],
)
def test_several_addresses_that_cannot_be_balanced_are_refused_with_why(target: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        remotecalc.connect(target)
    with pytest.raises(ValueError, match="no address"):
        remotecalc.connect([])


def test_a_dead_replica_among_the_addresses_costs_no_call() -> None:
    with remotecalc.start_server(port=0, clock=FakeClock()) as live:
        dead = f"127.0.0.1:{free_port()}"
        with remotecalc.connect([dead, live, dead], timeout=5) as client:
            assert client.target == f"{dead},{live.address},{dead}"
            sessions = [client.create(n) for n in range(20)]
            assert [session.add(1) for session in sessions] == [n + 1 for n in range(20)]
        assert len(live.engine) == 20


def test_calls_are_spread_over_every_replica() -> None:
    # Clocks of their own: the same arguments would return the same server.
    with (
        remotecalc.start_server(port=0, clock=FakeClock()) as one,
        remotecalc.start_server(port=0, clock=FakeClock()) as two,
    ):
        with remotecalc.connect(f"{one.address},{two.address}") as client:
            # Calls go to the replicas whose connection is ready: at first, maybe only one.
            for _ in range(200):
                client.create(0)
                if len(one.engine) and len(two.engine):
                    break
            before = (len(one.engine), len(two.engine))
            for n in range(20):
                client.create(n)
        # Once both are ready, round_robin sends each new call to the next one.
        assert (len(one.engine) - before[0], len(two.engine) - before[1]) == (10, 10)

"""Connections a client makes: each its own (so `--workers` spreads one process's clients), back within a second."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from conftest import free_port
from processes import WAIT, Served

import remotecalc

_LISTENING = re.compile(r"listening on (\S+) with .*?(\d+) worker processes \(pids ([\d ]+)\) \(")
_ESTABLISHED = "01"


def connections_of(pid: int, port: int) -> int:
    """How many established TCP connections process pid holds on its local port (what `ss -tnp` shows)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
    count = 0
    # gRPC listens on 127.0.0.1 through an IPv6 socket (a v4-mapped address): tcp6 holds those.
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == _ESTABLISHED and fields[9] in sockets:
                count += 1
    return count


def test_clients_in_one_process_each_have_a_connection_spread_over_the_workers(redis_url: str) -> None:
    served = Served("--port", "0", "--workers", "2", "--store", redis_url)
    clients: list[remotecalc.Client] = []
    try:
        found = _LISTENING.search(served.next_line())
        assert found, served.output
        address, pids = found.group(1), [int(p) for p in found.group(3).split()]
        port = int(address.rpartition(":")[2])
        # The kernel gives each new connection to a worker by a hash of its addresses: with 16
        # connections, both workers get some but with a chance of 2 in 65,536.
        clients = [remotecalc.connect(address, timeout=WAIT) for _ in range(16)]
        for client in clients:
            assert client.create(1).add(1) == 2
        per_worker = [connections_of(pid, port) for pid in pids]
        print(f"16 clients of one process: connections per worker {per_worker}")
        assert sum(per_worker) == 16, per_worker  # one connection for each client (gRPC's shared pool: 1)
        assert all(per_worker), per_worker
    finally:
        for client in clients:
            client.close()
        served.kill()


def test_a_client_is_back_within_about_a_second_of_its_server_listening_again() -> None:
    # Real time, inherently: gRPC's reconnect backoff grows while the server is down, so the outage
    # lasts a few seconds (4 s here); the calls made meanwhile pace themselves by their retries.
    port = free_port()
    server = remotecalc.start_server(port=port, max_sessions=10)
    client = remotecalc.connect(f"127.0.0.1:{port}", timeout=2)
    try:
        client.create(0)
        server.stop(grace=0)
        down_until = time.monotonic() + 4.0
        failures: list[str] = []
        while time.monotonic() < down_until:
            try:
                client.create(0)
            except remotecalc.Unavailable as error:
                failures.append(str(error))
        assert any(f"nothing is listening at 127.0.0.1:{port}" in failure for failure in failures), failures[:3]
        server = remotecalc.start_server(port=port, max_sessions=10)
        listening = time.monotonic()
        back = None
        for _ in range(1000):  # each try waits on its retries or succeeds; bounded by WAIT below
            try:
                client.create(0)
                back = time.monotonic() - listening
                break
            except remotecalc.Unavailable:
                assert time.monotonic() - listening < WAIT
        assert back is not None
        print(f"after a 4 s outage the client was back {back:.2f} s after the server listened again")
        assert back < 5.0  # gRPC's default backoff: 2 to 4 s here, 6 to 7 s after a 20 s outage
    finally:
        client.close()
        server.stop(grace=0)

"""Real redis-server processes for the tests: started on a free loopback port, killed, restarted."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import free_port

#: Debian's redis-server (apt install redis-server), which the README's test command installs.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
WAIT = 30.0
_READY = "Ready to accept connections"


class RedisServer:
    """One redis-server on 127.0.0.1 with its data in directory; AOF with the given appendfsync."""

    def __init__(
        self, directory: Path, *, appendfsync: str = "always", port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.extra = extra
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and data) and return once it accepts connections."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--daemonize", "no",
                "--logfile", "",
                "--protected-mode", "yes",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"redis-server not ready in {WAIT} s: {self.log[-5:]}") from None
            if line is None:
                raise AssertionError(f"redis-server ended: {self.log[-5:]}")
            if _READY in line:
                return

    def _read(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line)
            lines.put(line)
        lines.put(None)

    def kill(self) -> None:
        """SIGKILL it, as a crash would, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(WAIT)

    def freeze(self) -> None:
        """SIGSTOP it: it holds its connections and answers nothing, as a hung or swapped-out Redis would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT it after freeze()."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it for good."""
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.kill()


def _holds(part: str, slot: int) -> bool:
    """True when a CLUSTER NODES slot range ("5461-10922" or "42") holds slot."""
    if part.startswith("["):
        return False
    low, _, high = part.partition("-")
    return int(low) <= slot <= int(high or low)


class RedisClusterServers:
    """A Redis Cluster of masters on loopback, one redis-server each, created with redis-cli --cluster."""

    def __init__(self, directory: Path, masters: int = 3, extra: tuple[str, ...] = ()) -> None:
        self.nodes = []
        for index in range(masters):
            node_dir = directory / f"node{index}"
            node_dir.mkdir()
            # The bus port named, not the default port + 10000, which may be taken or beyond 65535.
            bus = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()))
            self.nodes.append(RedisServer(node_dir, extra=bus + extra))

    @property
    def url(self) -> str:
        """The redis+cluster:// URL remotecalc takes: any node; the client learns the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        """Start the nodes, join them into a cluster and return once it serves every slot."""
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        deadline = time.monotonic() + WAIT
        while not all(self._ok(node) for node in self.nodes):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.05)  # polling the cluster's own state, not waiting for time to pass

    def _ok(self, node: RedisServer) -> bool:
        return "cluster_state:ok" in self.ask(node, "cluster", "info")

    def ask(self, node: RedisServer, *command: str) -> str:
        """A command's reply from node, as redis-cli prints it."""
        asked = [REDIS_CLI, "-p", str(node.port), *command]
        return subprocess.run(asked, capture_output=True, text=True, timeout=WAIT).stdout

    def node_id(self, node: RedisServer) -> str:
        """node's Cluster node id (it keeps it across restarts, in its nodes.conf)."""
        return self.ask(node, "cluster", "myid").strip()

    def owner_of(self, key: str) -> RedisServer:
        """The master whose slots hold key, as the first node sees the cluster."""
        slot = int(self.ask(self.nodes[0], "cluster", "keyslot", key))
        ids = {self.node_id(node): node for node in self.nodes}
        for line in self.ask(self.nodes[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if any(_holds(part, slot) for part in fields[8:]):
                return ids[fields[0]]
        raise AssertionError(f"no master holds slot {slot}")

    def seen_failed(self, by: RedisServer, node_id: str) -> bool:
        """True when by has marked the node FAIL (agreed by the masters), not just PFAIL (suspected)."""
        for line in self.ask(by, "cluster", "nodes").splitlines():
            fields = line.split()
            if fields and fields[0] == node_id:
                return "fail" in fields[2].split(",")
        return False

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

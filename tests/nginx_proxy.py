"""Debian's nginx as a gRPC proxy for the tests: the configuration docs/operations.md gives, on free loopback ports."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import free_port

#: Debian's nginx (apt-get install nginx), which the README's test command installs.
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
WAIT = 30.0
#: The replicas' addresses as the documented configuration writes them.
DOCUMENTED_REPLICAS = ("127.0.0.1:3001", "127.0.0.1:3002")

# Everything outside the documented block keeps nginx in the test's directory: no root paths, no daemon.
# The access log names, for each call, the replica nginx sent it to and the client connection it came on.
_MAIN = """\
{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format calls '$connection $request_uri $status $upstream_addr';
    access_log {directory}/calls.log calls;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{documented}
}}
"""


class Call(NamedTuple):
    """One call as nginx's access log has it."""

    #: nginx's number for the client connection the call came on.
    connection: str
    #: The gRPC method's path, such as /remotecalc.v1.Calculator/Apply.
    path: str
    #: The HTTP status nginx answered with (200 for every gRPC answer, 502 when the replica failed it).
    status: int
    #: The replicas nginx tried, in order (several when it passed the call on before sending it).
    replicas: tuple[str, ...]


def documented_configuration() -> str:
    """The nginx configuration docs/operations.md gives: its one ```nginx block, as written."""
    blocks = re.findall(r"^```nginx\n(.*?)^```", DOCS.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) == 1, f"docs/operations.md must hold one nginx block, found {len(blocks)}"
    return str(blocks[0])


class Nginx:
    """nginx in the foreground with the documented configuration, in front of replicas, on a free loopback port."""

    def __init__(self, directory: Path, replicas: Sequence[str], **timeouts: str) -> None:
        """Start it; timeouts replace the documented ones by name (grpc_read_timeout="1s")."""
        if not os.path.exists(NGINX):
            pytest.fail(
                f"nginx is missing: {NGINX} does not exist. Install Debian's package with "
                "`apt-get install -y --no-install-recommends nginx` (the README's test command does).",
                pytrace=False,
            )
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.directory = directory
        documented = documented_configuration()
        for written, actual in zip(DOCUMENTED_REPLICAS, replicas, strict=True):
            assert written in documented, f"the documented configuration no longer names {written}"
            documented = documented.replace(written, actual)
        documented, listens = re.subn(r"listen \d+ http2;", f"listen {self.address} http2;", documented)
        assert listens == 1, "the documented configuration no longer has one `listen PORT http2;`"
        for name, value in timeouts.items():
            documented, changed = re.subn(rf"{name} \w+;", f"{name} {value};", documented)
            assert changed == 1, f"the documented configuration no longer sets {name}"
        # As root nginx's workers would run as nobody, who may not enter the test's temporary directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.configuration = directory / "nginx.conf"
        self.configuration.write_text(_MAIN.format(user=user, directory=directory, documented=documented))
        # -e: nginx opens its compiled-in error log (/var/log/nginx) before it reads the configuration.
        command = [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(self.configuration)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"nginx ended at start: {self.process.stderr.read() if self.process.stderr else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not listen on {self.address} within {WAIT} s") from None
                time.sleep(0.02)

    def calls(self, at_least: int = 0) -> list[Call]:
        """The calls nginx has logged, once it has logged at least that many (it logs a call as it ends it)."""
        path = self.directory / "calls.log"
        deadline = time.monotonic() + WAIT
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= at_least:
                break
            assert time.monotonic() < deadline, f"nginx logged {len(lines)} calls in {WAIT} s, not {at_least}"
            time.sleep(0.01)  # polling nginx's log, not waiting for time to pass
        calls = []
        for line in lines:
            connection, path_, status, upstreams = line.split(" ", 3)
            replicas = tuple(upstream.strip() for upstream in upstreams.split(","))
            calls.append(Call(connection, path_, int(status), replicas))
        return calls

    def error_log(self) -> str:
        """What nginx logged."""
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        """Stop nginx (SIGQUIT would wait for open streams; SIGTERM ends them) and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)


def _accepted(port: int) -> list[int]:
    """The unread byte counts of the established connections a process accepted on port (IPv4 or IPv6)."""
    unread = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                # slot, local address:port (hex), remote address, state (01: established), tx_queue:rx_queue, ...
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    unread.append(int(fields[4].split(":")[1], 16))
    return unread


def unread_bytes(port: int) -> int:
    """Bytes the kernel holds, not yet read, on the connections a process accepted on port."""
    return sum(_accepted(port))


def connections_to(port: int) -> int:
    """How many established connections the process listening on port has accepted."""
    return len(_accepted(port))

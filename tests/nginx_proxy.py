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

import pytest
from conftest import free_port

#: Debian's nginx (apt-get install nginx), which the README's test command installs.
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
WAIT = 30.0
#: The replicas' addresses as the documented configuration writes them.
DOCUMENTED_REPLICAS = ("127.0.0.1:3001", "127.0.0.1:3002")

_MAIN = """\
{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{documented}
}}
"""


def documented_configuration() -> str:
    """The nginx configuration docs/operations.md gives: its one ```nginx block, as written."""
    blocks = re.findall(r"^```nginx\n(.*?)^```", DOCS.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) == 1, f"docs/operations.md must hold one nginx block, found {len(blocks)}"
    return str(blocks[0])


class Nginx:
    """nginx in the foreground with the documented configuration, in front of replicas, on a free loopback port."""

    def __init__(self, directory: Path, replicas: Sequence[str], *, read_timeout: str | None = None) -> None:
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
        documented = re.sub(r"listen \d+ http2;", f"listen {self.address} http2;", documented)
        if read_timeout is not None:
            documented = re.sub(r"grpc_read_timeout \w+;", f"grpc_read_timeout {read_timeout};", documented)
        # As root nginx's workers would run as nobody, who may not enter the test's temporary directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.configuration = directory / "nginx.conf"
        self.configuration.write_text(_MAIN.format(user=user, directory=directory, documented=documented))
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

"""A non-Python client reaches a TLS server: Node's grpc-js with the project's .proto files and the test CA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import FakeClock

from remotecalc import TLS, AuthTokens, RunningServer, new_token, start_server
from remotecalc.server import Core

CLIENT_FOLDER = Path(__file__).with_name("grpc_js")
CLIENT = CLIENT_FOLDER / "client.js"
#: Seconds the node client gives each call, and the test gives the whole client, before giving up.
CALL_DEADLINE = 10.0
CLIENT_WAIT = 60.0
INSTALL = (
    "install Node.js and the client's packages with the README's test command (Quickstart), or: "
    "apt-get install -y --no-install-recommends nodejs npm && npm ci --prefix tests/grpc_js"
)


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the client's packages installed beside the client."""
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"node is not on PATH: {INSTALL}")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (CLIENT_FOLDER / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{package} is not in {CLIENT_FOLDER / 'node_modules'}: {INSTALL}")
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: a CA, a server certificate for 127.0.0.1 and localhost and its key, and a stranger CA."""
    folder = tmp_path_factory.mktemp("grpc_js_tls")
    ca = trustme.CA()
    served = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "stranger_ca")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    served.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    served.private_key_pem.write_to_path(str(paths["key"]))
    trustme.CA().cert_pem.write_to_path(str(paths["stranger_ca"]))
    return paths


@pytest.fixture
def tls_server(files: dict[str, Path], clock: FakeClock) -> Iterator[RunningServer]:
    """A server serving TLS only on loopback port 0 (a clock of its own makes it a fresh one)."""
    with start_server(port=0, clock=clock, tls=TLS(cert=files["cert"], key=files["key"])) as server:
        yield server


def _run_client(node: str, address: str, ca: Path, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run the node client against address trusting ca (with a bearer token): its exit code and JSON line."""
    environment = {key: value for key, value in os.environ.items() if key != "REMOTECALC_AUTH_TOKEN"}
    if token is not None:
        environment["REMOTECALC_AUTH_TOKEN"] = token
    finished = subprocess.run(
        [node, str(CLIENT), address, str(ca), "--deadline", str(CALL_DEADLINE)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLIENT_WAIT,
        check=False,
    )
    lines = finished.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {finished.stdout!r}; stderr: {finished.stderr}"
    printed: dict[str, Any] = json.loads(lines[0])
    return finished.returncode, printed


@pytest.mark.parametrize("core", ["sync", "aio"])
def test_grpc_js_runs_the_article_sequence_to_10_through_both_contracts(
    node: str, files: dict[str, Path], clock: FakeClock, core: Core
) -> None:
    tls = TLS(cert=files["cert"], key=files["key"])
    with start_server(port=0, clock=clock, core=core, tls=tls) as server:
        code, printed = _run_client(node, server.address, files["ca"])
        assert len(server.engine) == 0  # every session the client opened, it closed
    assert code == 0, printed
    assert printed == {
        "article": 10,
        "v1": 10,
        "v1_steps": 4,
        # Each contract's own number type, as decoded by protobuf.js: float on the article's, double on v1.
        "article_sum": 0.30000001192092896,
        "v1_sum": 0.30000000000000004,
    }


def test_grpc_js_trusting_another_ca_is_refused_at_the_handshake(
    node: str, tls_server: RunningServer, files: dict[str, Path]
) -> None:
    code, printed = _run_client(node, tls_server.address, files["stranger_ca"])
    assert code == 1
    error = printed["error"]
    assert (error["call"], error["name"], error["code"]) == ("Create", "UNAVAILABLE", 14)
    assert "certificate" in error["details"], error
    assert len(tls_server.engine) == 0


def test_grpc_js_over_tls_fails_against_a_plaintext_server(node: str, files: dict[str, Path], clock: FakeClock) -> None:
    with start_server(port=0, clock=clock) as server:
        code, printed = _run_client(node, server.address, files["ca"])
        assert len(server.engine) == 0
    assert code == 1
    error = printed["error"]
    assert (error["call"], error["name"], error["code"]) == ("Create", "UNAVAILABLE", 14)


def test_grpc_js_with_a_bearer_token_reaches_a_server_with_callers_and_without_one_is_unauthenticated(
    node: str, files: dict[str, Path], clock: FakeClock
) -> None:
    token = new_token()
    tls = TLS(cert=files["cert"], key=files["key"])
    with start_server(port=0, clock=clock, tls=tls, auth_tokens=AuthTokens({"node": token})) as server:
        code, printed = _run_client(node, server.address, files["ca"], token=token)
        assert (code, printed["article"], printed["v1"]) == (0, 10, 10), printed
        code, printed = _run_client(node, server.address, files["ca"], token=None)
        assert len(server.engine) == 0
    assert code == 1
    error = printed["error"]
    assert (error["call"], error["name"], error["code"]) == ("Create", "UNAUTHENTICATED", 16)
    assert "bearer token" in error["details"] and token not in error["details"]

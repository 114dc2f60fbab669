"""The command line: `remotecalc serve`, `remotecalc demo`, `python -m remotecalc`."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import grpc
import pytest
from contracts import ArticleCalls, V1Calls
from processes import REMOTECALC, WAIT, Served, run_python

from remotecalc.v1 import calculator_pb2 as pb


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_prints_its_address_answers_and_stops_cleanly_on_a_signal(signum: int) -> None:
    served = Served("--port", "0")
    try:
        address = served.address()
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with grpc.insecure_channel(address) as channel:
            token = ArticleCalls(channel).create(0)
            assert V1Calls(channel).apply(token, "+", 5) == 5
            stream = V1Calls(channel).stub.WatchSession(pb.WatchSessionRequest(token=token))
            assert next(stream).value == 5
            code = served.stop(signum)
            assert _end_of(stream) is grpc.StatusCode.UNAVAILABLE
    finally:
        served.kill()
    assert code == 0, served.stderr_text()
    output = served.rest()
    assert "remotecalc stopped" in output.splitlines()[-1], output


def _end_of(stream: Any) -> grpc.StatusCode:
    """The status a server stream ended with."""
    try:
        for _ in stream:
            pass
    except grpc.RpcError as error:
        call: Any = error
        return call.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_demo_prints_both_answers_and_both_sums() -> None:
    ran = subprocess.run([REMOTECALC, "demo"], capture_output=True, text=True, timeout=WAIT)
    assert ran.returncode == 0, ran.stderr
    results = [
        (line.split(":")[0].strip(), line.rsplit(":", 1)[-1].strip())
        for line in ran.stdout.splitlines()
        if line.startswith("  ")
    ]
    assert results == [
        ("article contract (32-bit float)", "10.0"),
        ("remotecalc.v1 (64-bit double)", "10.0"),
        ("article contract (32-bit float)", "0.30000001192092896"),
        ("remotecalc.v1 (64-bit double)", "0.30000000000000004"),
    ], ran.stdout


def test_python_m_remotecalc_help() -> None:
    ran = run_python("-m", "remotecalc", "--help")
    assert ran.returncode == 0, ran.stderr
    assert "usage: remotecalc" in ran.stdout
    assert "serve" in ran.stdout and "demo" in ran.stdout

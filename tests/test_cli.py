"""The command line: `remotecalc serve`, `remotecalc demo`, `python -m remotecalc`."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Any

import grpc
import pytest
from contracts import ArticleCalls, V1Calls
from processes import REMOTECALC, WAIT, Served, run_python

import remotecalc
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "argument --port: '70000' is not a port: use 0 to 65535 (0 picks a free one)"),
        (["--port", "-5"], "argument --port: '-5' is not a port: use 0 to 65535 (0 picks a free one)"),
        (["--port", "http"], "argument --port: 'http' is not a port number"),
        (["--max-sessions", "0"], "argument --max-sessions: '0' must be a whole number at least 1"),
        (["--max-sessions", "1.5"], "argument --max-sessions: '1.5' is not a whole number"),
        (["--idle-timeout", "nan"], "argument --idle-timeout: 'nan' must be a finite number greater than 0"),
        (["--idle-timeout", "inf"], "argument --idle-timeout: 'inf' must be a finite number greater than 0"),
        (["--idle-timeout", "0"], "argument --idle-timeout: '0' must be a finite number greater than 0"),
        (["--grace", "-1"], "argument --grace: '-1' must be a finite number at least 0"),
        (["--grace", "nan"], "argument --grace: 'nan' must be a finite number at least 0"),
    ],
)
def test_serve_refuses_a_bad_value_with_one_clear_line_and_exit_code_2(args: list[str], message: str) -> None:
    ran = subprocess.run([REMOTECALC, "serve", *args], capture_output=True, text=True, timeout=WAIT)
    assert ran.returncode == 2
    assert ran.stderr.splitlines()[-1] == f"remotecalc serve: error: {message}", ran.stderr
    assert "Traceback" not in ran.stderr
    assert "listening" not in ran.stdout


def test_serve_accepts_the_edges_of_every_range() -> None:
    served = Served("--port", "0", "--max-sessions", "1", "--idle-timeout", "0.5", "--grace", "0")
    try:
        with grpc.insecure_channel(served.address()) as channel:
            assert V1Calls(channel).apply(V1Calls(channel).create(1), "+", 1) == 2
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    assert served.stderr_text() == ""


def test_serve_on_every_interface_without_tls_is_refused_with_why() -> None:
    served = Served("--host", "0.0.0.0", "--port", "0")
    try:
        assert served.process.wait(timeout=WAIT) == 2
    finally:
        served.kill()
    refusal = served.stderr_text().splitlines()
    assert len(refusal) == 1, refusal
    assert refusal[0].startswith("remotecalc: refusing to listen on 0.0.0.0 without TLS"), refusal
    assert "--insecure" in refusal[0]


def test_serve_on_every_interface_with_insecure_warns_that_there_is_no_tls() -> None:
    served = Served("--host", "0.0.0.0", "--port", "0", "--insecure")
    try:
        assert served.address().startswith("0.0.0.0:")
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    warning = served.stderr_text().splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "without TLS" in warning[0], warning


def test_python_m_remotecalc_with_no_arguments_prints_what_to_run() -> None:
    ran = run_python("-m", "remotecalc")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    assert ran.stdout.startswith("usage: remotecalc")
    assert "serve" in ran.stdout and "demo" in ran.stdout
    assert "required" not in ran.stdout


def test_sigterm_with_calls_in_flight_from_several_threads_ends_them_ok_or_unavailable() -> None:
    served = Served("--port", "0", "--grace", "10")
    try:
        address = served.address()
        started = threading.Semaphore(0)
        outcomes: list[BaseException | None] = []

        def add_until_refused() -> None:
            applied = 0
            with remotecalc.connect(address) as client:
                try:
                    session = client.create(0)
                    while True:
                        session.apply_many([("+", 1)] * 2000)
                        applied += 1
                        if applied == 1:
                            started.release()
                except BaseException as error:  # kept for the test's thread
                    outcomes.append(error)
                    if applied == 0:
                        started.release()

        threads = [threading.Thread(target=add_until_refused) for _ in range(6)]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert started.acquire(timeout=WAIT)
        assert served.stop(signal.SIGTERM) == 0
        for thread in threads:
            thread.join(timeout=WAIT)
    finally:
        served.kill()
    assert len(outcomes) == 6
    # Never CANCELLED: an unknown outcome the client can resolve against a server that is back.
    assert all(isinstance(error, remotecalc.Unavailable) for error in outcomes), outcomes


def test_serve_on_an_address_this_machine_does_not_have_exits_1_with_our_line_only() -> None:
    # 192.0.2.1 is TEST-NET-1: documentation only, never a local address.
    ran = subprocess.run(
        [REMOTECALC, "serve", "--host", "192.0.2.1", "--port", "0", "--insecure"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert ran.returncode == 1
    lines = ran.stderr.splitlines()
    assert len(lines) == 2 and "without TLS" in lines[0], ran.stderr
    assert lines[1] == "remotecalc: cannot listen on 192.0.2.1:0: Cannot assign requested address"

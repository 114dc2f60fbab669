"""The command line: `remotecalc serve`, `remotecalc demo`, `python -m remotecalc`."""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from contracts import ArticleCalls, V1Calls
from processes import LISTENING, REMOTECALC, WAIT, Served, run_python
from redis_servers import RedisServer

import remotecalc
from remotecalc.auth import new_token
from remotecalc.cli import without_password
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


def test_version_prints_the_installed_version() -> None:
    ran = subprocess.run([REMOTECALC, "--version"], capture_output=True, text=True, timeout=WAIT)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"remotecalc {importlib.metadata.version('remotecalc')}\n"


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate and its key, another key, a token file of three tokens for two callers."""
    folder = tmp_path_factory.mktemp("files")
    ca = trustme.CA()
    served, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "other_key", "garbage")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    served.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    served.private_key_pem.write_to_path(str(paths["key"]))
    other.private_key_pem.write_to_path(str(paths["other_key"]))
    paths["garbage"].write_text("not a certificate\n")
    paths["tokens"] = folder / "tokens"
    paths["tokens"].write_text(f"alice:{new_token()}\nalice:{new_token()}\nbob:{new_token()}\n")
    paths["tokens"].chmod(0o600)
    paths["missing"] = folder / "missing.pem"
    paths["folder"] = folder
    return paths


_BAD_FILES = {
    "missing token file": (["--auth-token-file", "missing"], "cannot read the token file {missing}"),
    "token file a folder": (["--auth-token-file", "folder"], "cannot read the token file {folder}"),
    "token file of garbage": (["--auth-token-file", "garbage"], "{garbage} line 1: expected NAME:TOKEN"),
    "missing certificate": (["--tls-cert", "missing", "--tls-key", "key"], "cannot read the TLS certificate {missing}"),
    "missing key": (["--tls-cert", "cert", "--tls-key", "missing"], "cannot read the TLS key {missing}"),
    "key a folder": (["--tls-cert", "cert", "--tls-key", "folder"], "cannot read the TLS key {folder}"),
    "missing client CA": (
        ["--tls-cert", "cert", "--tls-key", "key", "--tls-client-ca", "missing"],
        "cannot read the TLS client CA {missing}",
    ),
    "certificate of garbage": (
        ["--tls-cert", "garbage", "--tls-key", "key"],
        "the TLS certificate {garbage} holds no whole PEM certificate",
    ),
    "client CA of garbage": (
        ["--tls-cert", "cert", "--tls-key", "key", "--tls-client-ca", "garbage"],
        "the TLS client CA {garbage} holds no whole PEM certificate",
    ),
    "key of another certificate": (
        ["--tls-cert", "cert", "--tls-key", "other_key"],
        "the TLS key {other_key} does not match the certificate {cert}",
    ),
}


# With --workers the parent checks the files by the same code: a few cases show it does.
_CASES = [(case, "1") for case in _BAD_FILES] + [
    (case, "2") for case in ("missing token file", "missing key", "missing client CA", "key of another certificate")
]


@pytest.mark.parametrize(("case", "workers"), _CASES)
def test_every_bad_file_on_the_command_line_is_one_line_and_exit_2(
    case: str, workers: str, pem_files: dict[str, Path], redis_url: str
) -> None:
    options, message = _BAD_FILES[case]
    args = [str(pem_files[word]) if word in pem_files else word for word in options]
    store = ["--store", redis_url] if workers != "1" else []
    ran = subprocess.run(
        [REMOTECALC, "serve", "--port", "0", "--workers", workers, *store, *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert ran.returncode == 2, ran.stderr
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("remotecalc: " + message.format(**pem_files)), lines[0]
    assert ran.stdout == ""


def test_the_start_line_says_what_is_on_and_never_the_store_password(
    pem_files: dict[str, Path], tmp_path: Path
) -> None:
    secret = "s3cret-" + new_token()
    redis_server = RedisServer(tmp_path, extra=("--requirepass", secret))
    redis_server.start()
    store = f"redis://:{secret}@127.0.0.1:{redis_server.port}/0"
    files = ["--tls-cert", str(pem_files["cert"]), "--tls-key", str(pem_files["key"])]
    served = Served("--port", "0", "--store", store, *files, "--tls-client-ca", str(pem_files["ca"]),
                    "--auth-token-file", str(pem_files["tokens"]), "--core", "aio")  # fmt: skip
    try:
        line = served.next_line()
        address = LISTENING.search(line)
        assert address, line
        assert line == (
            f"remotecalc listening on {address.group(1)} with the aio core, sessions in "
            f"redis://127.0.0.1:{redis_server.port}/0, mutual TLS, bearer tokens of 2 callers, 1 process "
            "(Ctrl-C to stop)\n"
        )
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
        redis_server.stop()
    assert secret not in served.rest() + served.stderr_text()


def test_the_start_line_of_a_plain_server_says_so() -> None:
    served = Served("--port", "0")
    try:
        line = served.next_line()
        assert line.endswith(
            " with the sync core, sessions in memory, plaintext, no bearer tokens, 1 process (Ctrl-C to stop)\n"
        ), line
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()


def test_the_start_line_of_workers_names_them_and_what_they_serve_with(
    pem_files: dict[str, Path], redis_url: str
) -> None:
    files = ["--tls-cert", str(pem_files["cert"]), "--tls-key", str(pem_files["key"])]
    served = Served("--port", "0", "--workers", "2", "--store", redis_url, *files)
    try:
        line = served.next_line()
        assert re.fullmatch(
            rf"remotecalc listening on 127\.0\.0\.1:\d+ with the sync core, sessions in {re.escape(redis_url)}, "
            r"TLS, no bearer tokens, 2 worker processes \(pids \d+ \d+\) \(Ctrl-C to stop\)\n",
            line,
        ), line
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("memory", "memory"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://app:pw@redis.example:6380/2", "rediss://app@redis.example:6380/2"),
        ("redis+cluster://:p%40ss@[::1]:7000/0", "redis+cluster://[::1]:7000/0"),
        ("redis://127.0.0.1/0?password=pw&socket_timeout=1", "redis://127.0.0.1/0?socket_timeout=1"),
        ("unix://:pw@/run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
    ],
)
def test_a_store_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert without_password(url) == shown

"""TLS and mutual TLS: the server serves only what its credentials allow, with certificates made here."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from processes import Served

from remotecalc import TLS, RunningServer, Unavailable, connect, start_server
from remotecalc.article import calc_pb2, calc_pb2_grpc
from remotecalc.cli import ARTICLE_SEQUENCE
from remotecalc.widgets import CalculatorPanel

#: Seconds a call waits for a handshake that cannot succeed before it reports UNAVAILABLE.
HANDSHAKE_WAIT = 5.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA the test servers' and clients' certificates are signed by."""
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: the CA, a server certificate for 127.0.0.1 and its key, a client certificate and key."""
    folder = tmp_path_factory.mktemp("tls")
    served = ca.issue_cert("127.0.0.1", "localhost")
    caller = ca.issue_cert("alice@example.org")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "client_cert", "client_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    served.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    served.private_key_pem.write_to_path(str(paths["key"]))
    caller.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    caller.private_key_pem.write_to_path(str(paths["client_key"]))
    return paths


@pytest.fixture
def tls_server(files: dict[str, Path]) -> Iterator[RunningServer]:
    """A server serving TLS only, with no client certificate required."""
    with start_server(port=0, tls=TLS(cert=files["cert"], key=files["key"])) as server:
        yield server


@pytest.fixture
def mtls_server(files: dict[str, Path]) -> Iterator[RunningServer]:
    """A server requiring client certificates signed by the test CA."""
    with start_server(port=0, tls=TLS(cert=files["cert"], key=files["key"], client_ca=files["ca"])) as server:
        yield server


def _secure(address: str, files: dict[str, Path], *, client: bool = False) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files["ca"].read_bytes(),
        private_key=files["client_key"].read_bytes() if client else None,
        certificate_chain=files["client_cert"].read_bytes() if client else None,
    )
    return grpc.secure_channel(address, credentials)


def _article_sequence(channel: grpc.Channel) -> float:
    """0 + 5 - 3, x 10, / 2 through the article's stubs: 10."""
    stub = calc_pb2_grpc.CalculatorStub(channel)
    token = stub.Create(calc_pb2.Number(value=0), timeout=HANDSHAKE_WAIT).token
    calls = {"+": stub.Add, "-": stub.Subtract, "*": stub.Multiply, "/": stub.Divide}
    for symbol, operand in ARTICLE_SEQUENCE:
        calls[symbol](calc_pb2.SessionOperation(token=token, value=operand), timeout=HANDSHAKE_WAIT)
    value: float = stub.Answer(calc_pb2.SessionOperation(token=token), timeout=HANDSHAKE_WAIT).value
    return value


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused, channel:
        calc_pb2_grpc.CalculatorStub(channel).Create(calc_pb2.Number(value=0), timeout=HANDSHAKE_WAIT)
    return refused.value


def test_the_article_sequence_over_tls(tls_server: RunningServer, files: dict[str, Path]) -> None:
    with _secure(tls_server.address, files) as channel:
        assert _article_sequence(channel) == 10


def test_the_article_sequence_over_tls_on_the_aio_core(files: dict[str, Path]) -> None:
    tls = TLS(cert=files["cert"], key=files["key"])
    with start_server(port=0, core="aio", tls=tls) as server, _secure(server.address, files) as channel:
        assert _article_sequence(channel) == 10


def test_a_tls_server_refuses_a_plaintext_client(tls_server: RunningServer) -> None:
    refusal = _refused(grpc.insecure_channel(tls_server.address))
    assert refusal.code() is grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_server_refuses_a_tls_client(files: dict[str, Path]) -> None:
    with start_server(port=0) as server:
        refusal = _refused(_secure(server.address, files))
    assert refusal.code() is grpc.StatusCode.UNAVAILABLE


def test_a_client_trusting_another_ca_fails_the_handshake(tls_server: RunningServer) -> None:
    stranger = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
    refusal = _refused(grpc.secure_channel(tls_server.address, stranger))
    assert refusal.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: RunningServer, files: dict[str, Path]) -> None:
    refusal = _refused(_secure(mtls_server.address, files))
    assert refusal.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_serves_a_client_with_a_certificate(mtls_server: RunningServer, files: dict[str, Path]) -> None:
    with _secure(mtls_server.address, files, client=True) as channel:
        assert _article_sequence(channel) == 10


def test_a_missing_certificate_file_is_named(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(OSError, match=r"cannot read the TLS certificate .*absent\.pem"):
        start_server(port=0, tls=TLS(cert=tmp_path / "absent.pem", key=files["key"]))


def test_the_cli_serves_tls(files: dict[str, Path]) -> None:
    served = Served("--port", "0", "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    try:
        address = served.address()
        with _secure(address, files) as channel:
            assert _article_sequence(channel) == 10
        assert _refused(grpc.insecure_channel(address)).code() is grpc.StatusCode.UNAVAILABLE
        assert served.stop() == 0
    finally:
        served.kill()


def test_the_cli_serves_mutual_tls(files: dict[str, Path]) -> None:
    tls = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]), "--tls-client-ca", str(files["ca"])]
    served = Served("--port", "0", *tls)
    try:
        address = served.address()
        assert _refused(_secure(address, files)).code() is grpc.StatusCode.UNAVAILABLE
        with _secure(address, files, client=True) as channel:
            assert _article_sequence(channel) == 10
        assert served.stop() == 0
    finally:
        served.kill()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "key.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    ],
)
def test_the_cli_refuses_half_a_tls_setting(options: list[str], reason: str) -> None:
    served = Served("--port", "0", *options)
    try:
        assert served.process.wait(timeout=30) == 2
        assert reason in served.stderr_text()
    finally:
        served.kill()


def test_the_cli_names_an_unreadable_key(tmp_path: Path, files: dict[str, Path]) -> None:
    served = Served("--port", "0", "--tls-cert", str(files["cert"]), "--tls-key", str(tmp_path / "absent.pem"))
    try:
        assert served.process.wait(timeout=30) == 2  # as every file given on the command line
        assert "cannot read the TLS key" in served.stderr_text()
    finally:
        served.kill()


def test_cli_workers_serve_tls(files: dict[str, Path], redis_url: str) -> None:
    tls = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    served = Served("--port", "0", "--workers", "2", "--store", redis_url, *tls)
    try:
        address = served.address()
        # The kernel hands each new connection to one worker: four make it likely both are reached.
        for _ in range(4):
            with _secure(address, files) as channel:
                assert _article_sequence(channel) == 10
        assert _refused(grpc.insecure_channel(address)).code() is grpc.StatusCode.UNAVAILABLE
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()


def test_the_client_runs_the_article_sequence_over_tls(tls_server: RunningServer, files: dict[str, Path]) -> None:
    with connect(tls_server, root_certificates=files["ca"]) as client, client.create(0) as session:
        for symbol, operand in ARTICLE_SEQUENCE:
            session.apply(symbol, operand)
        assert session.answer() == 10
    assert client.secure


def test_the_client_takes_root_certificates_as_pem_bytes(tls_server: RunningServer, files: dict[str, Path]) -> None:
    with connect(tls_server.address, root_certificates=files["ca"].read_bytes()) as client:
        assert client.create(4).add(6) == 10


def test_a_plaintext_client_is_told_the_server_may_speak_tls(tls_server: RunningServer) -> None:
    with connect(tls_server, timeout=HANDSHAKE_WAIT) as client, pytest.raises(Unavailable) as refused:
        client.create(0)
    assert "if it serves TLS, connect with tls=True" in str(refused.value)


def test_a_tls_client_of_a_plaintext_server_is_told_the_handshake_failed(files: dict[str, Path]) -> None:
    with (
        start_server(port=0) as server,
        connect(server, root_certificates=files["ca"], timeout=HANDSHAKE_WAIT) as client,
        pytest.raises(Unavailable, match="TLS handshake failed"),
    ):
        client.create(0)


def test_a_client_trusting_another_ca_is_told_the_handshake_failed(tls_server: RunningServer) -> None:
    stranger = trustme.CA().cert_pem.bytes()
    with (
        connect(tls_server, root_certificates=stranger, timeout=HANDSHAKE_WAIT) as client,
        pytest.raises(Unavailable, match="TLS handshake failed: the server's certificate is not signed"),
    ):
        client.create(0)


def test_a_client_without_a_certificate_is_told_mutual_tls_needs_one(
    mtls_server: RunningServer, files: dict[str, Path]
) -> None:
    with (
        connect(mtls_server, root_certificates=files["ca"], timeout=HANDSHAKE_WAIT) as client,
        pytest.raises(Unavailable, match="pass client_cert and client_key"),
    ):
        client.create(0)


def test_a_client_with_a_certificate_is_served_by_mutual_tls(
    mtls_server: RunningServer, files: dict[str, Path]
) -> None:
    certificate = {"client_cert": files["client_cert"], "client_key": files["client_key"]}
    with connect(mtls_server, root_certificates=files["ca"], **certificate) as client:
        assert client.create(2).multiply(5) == 10


def test_a_client_certificate_without_its_key_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="client_cert and client_key go together"):
        connect("127.0.0.1:1", root_certificates=files["ca"], client_cert=files["client_cert"])


def test_the_panel_connects_over_mutual_tls(mtls_server: RunningServer, files: dict[str, Path]) -> None:
    certificate = {"client_cert": files["client_cert"], "client_key": files["client_key"]}
    panel = CalculatorPanel(mtls_server, initial_value=10, root_certificates=files["ca"], **certificate)
    try:
        assert panel.error == ""
        assert panel.value == 10
        assert panel.client.secure
    finally:
        panel.close()


def test_start_server_refuses_every_interface_without_tls() -> None:
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0 without TLS.*insecure=True"):
        start_server("0.0.0.0", port=0)


def test_start_server_on_every_interface_with_insecure_serves_plaintext() -> None:
    with start_server("0.0.0.0", port=0, insecure=True) as server, connect(f"127.0.0.1:{server.port}") as client:
        assert client.create(3).add(7) == 10


def test_start_server_on_every_interface_with_tls_needs_no_insecure(files: dict[str, Path]) -> None:
    tls = TLS(cert=files["cert"], key=files["key"])
    with (
        start_server("0.0.0.0", port=0, tls=tls) as server,
        connect(f"127.0.0.1:{server.port}", root_certificates=files["ca"]) as client,
    ):
        assert client.create(3).add(7) == 10


def test_the_cli_on_every_interface_with_tls_serves_without_a_warning(files: dict[str, Path]) -> None:
    tls = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    served = Served("--host", "0.0.0.0", "--port", "0", *tls)
    try:
        port = served.address().rsplit(":", 1)[1]
        with connect(f"127.0.0.1:{port}", root_certificates=files["ca"]) as client:
            assert client.create(3).add(7) == 10
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    assert "warning" not in served.stderr_text()


def test_cli_workers_on_every_interface_without_tls_are_refused() -> None:
    served = Served("--host", "0.0.0.0", "--port", "0", "--workers", "2", "--store", "redis://127.0.0.1:1/0")
    try:
        assert served.process.wait(timeout=30) == 2
        assert "refusing to listen on 0.0.0.0 without TLS" in served.stderr_text()
    finally:
        served.kill()

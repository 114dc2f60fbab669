"""A TLS server serves new connections with its certificate files as they are now, without a restart.

grpcio asks the server's fetcher at every TLS handshake, so each test replaces files and then opens a
fresh connection (a local subchannel pool: never one shared with an earlier channel): no waiting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from processes import Served

from remotecalc import TLS, RunningServer, start_server
from remotecalc.article import calc_pb2, calc_pb2_grpc
from remotecalc.certificates import CertificateFiles

#: Seconds a call waits for a handshake.
HANDSHAKE_WAIT = 5.0
KEEPING = "keeping the TLS certificate already served"


class Issued:
    """A CA and PEM files it signed: a server certificate for 127.0.0.1 and a client certificate."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.ca = trustme.CA()
        served = self.ca.issue_cert("127.0.0.1")
        caller = self.ca.issue_cert("alice@example.org")
        self.ca_pem = self.ca.cert_pem.bytes()
        self.cert, self.key = served.cert_chain_pems[0].bytes(), served.private_key_pem.bytes()
        self.client_cert, self.client_key = caller.cert_chain_pems[0].bytes(), caller.private_key_pem.bytes()


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """The CA the server's files come from at start."""
    return Issued(tmp_path_factory.mktemp("reload") / "old")


@pytest.fixture(scope="module")
def new(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """Another CA, whose certificates replace the old ones."""
    return Issued(tmp_path_factory.mktemp("reload") / "new")


@pytest.fixture
def files(tmp_path: Path, old: Issued) -> dict[str, Path]:
    """The server's files, the old CA's, in a folder of this test's own."""
    paths = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "client_ca")}
    _replace(paths["cert"], old.cert)
    _replace(paths["key"], old.key)
    _replace(paths["client_ca"], old.ca_pem)
    return paths


@pytest.fixture(params=["sync", "aio"])
def server(request: pytest.FixtureRequest, files: dict[str, Path]) -> Iterator[RunningServer]:
    """A TLS server on each core, serving the files."""
    with start_server(port=0, core=request.param, tls=TLS(cert=files["cert"], key=files["key"])) as running:
        yield running


def _replace(path: Path, data: bytes) -> None:
    """Write a whole new file and rename it over path, as an operator (or certbot) replaces one."""
    spare = path.with_suffix(".new")
    spare.write_bytes(data)
    os.replace(spare, path)


def _call(address: str, trusted: Issued, client: Issued | None = None) -> grpc.StatusCode:
    """One Create on a new connection trusting `trusted`'s CA (with `client`'s certificate): OK or the failure."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trusted.ca_pem,
        private_key=None if client is None else client.client_key,
        certificate_chain=None if client is None else client.client_cert,
    )
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        try:
            calc_pb2_grpc.CalculatorStub(channel).Create(calc_pb2.Number(value=0), timeout=HANDSHAKE_WAIT)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_new_connections_get_the_new_certificate_and_open_ones_keep_theirs(
    server: RunningServer, files: dict[str, Path], old: Issued, new: Issued
) -> None:
    assert _call(server.address, old) is grpc.StatusCode.OK
    credentials = grpc.ssl_channel_credentials(root_certificates=old.ca_pem)
    with grpc.secure_channel(server.address, credentials) as open_channel:
        stub = calc_pb2_grpc.CalculatorStub(open_channel)
        token = stub.Create(calc_pb2.Number(value=1), timeout=HANDSHAKE_WAIT).token
        _replace(files["key"], new.key)
        _replace(files["cert"], new.cert)
        assert _call(server.address, new) is grpc.StatusCode.OK
        assert _call(server.address, old) is grpc.StatusCode.UNAVAILABLE
        # The connection made before the change is not cut: its calls go on.
        added = stub.Add(calc_pb2.SessionOperation(token=token, value=2), timeout=HANDSHAKE_WAIT)
        assert added.value == 3


def test_a_key_that_does_not_match_keeps_the_old_certificate_until_its_pair_arrives(
    server: RunningServer, files: dict[str, Path], old: Issued, new: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="remotecalc.certificates")
    _replace(files["cert"], new.cert)  # the certificate written, its key not yet
    for _ in range(3):
        assert _call(server.address, old) is grpc.StatusCode.OK
    assert _call(server.address, new) is grpc.StatusCode.UNAVAILABLE
    warnings = [record.getMessage() for record in caplog.records if KEEPING in record.getMessage()]
    assert warnings == [f"{KEEPING}: the TLS key {files['key']} does not match the certificate {files['cert']}"]
    _replace(files["key"], new.key)
    assert _call(server.address, new) is grpc.StatusCode.OK
    assert _call(server.address, old) is grpc.StatusCode.UNAVAILABLE


def test_a_certificate_rewritten_in_place_is_served_once_whole(
    server: RunningServer, files: dict[str, Path], old: Issued, new: Issued
) -> None:
    _replace(files["key"], new.key)
    half = len(new.cert) // 2
    with files["cert"].open("r+b") as rewritten:
        rewritten.truncate(0)
        rewritten.write(new.cert[:half])
        rewritten.flush()
        assert _call(server.address, old) is grpc.StatusCode.OK
        rewritten.write(new.cert[half:])
        rewritten.flush()
        assert _call(server.address, new) is grpc.StatusCode.OK
        assert _call(server.address, old) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cert", b"not a certificate\n", "holds no whole PEM certificate"),
        ("key", b"not a key\n", "is not a PEM private key"),
        ("cert", None, "holds no whole PEM certificate"),  # cut short: half of the new certificate
        ("key", b"", "is not a PEM private key"),
    ],
)
def test_garbage_keeps_the_old_certificate_serving(
    server: RunningServer,
    files: dict[str, Path],
    old: Issued,
    new: Issued,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content: bytes | None,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="remotecalc.certificates")
    _replace(files[name], new.cert[: len(new.cert) // 2] if content is None else content)
    for _ in range(3):
        assert _call(server.address, old) is grpc.StatusCode.OK
    warnings = [record.getMessage() for record in caplog.records if KEEPING in record.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0] and str(files[name]) in warnings[0], warnings


def test_a_file_gone_keeps_the_old_certificate_serving(
    server: RunningServer, files: dict[str, Path], old: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="remotecalc.certificates")
    files["key"].unlink()
    for _ in range(3):
        assert _call(server.address, old) is grpc.StatusCode.OK
    warnings = [record.getMessage() for record in caplog.records if KEEPING in record.getMessage()]
    assert warnings == [f"{KEEPING}: cannot read the TLS key {files['key']}: No such file or directory"]


@pytest.mark.parametrize("core", ["sync", "aio"])
def test_mutual_tls_takes_a_new_client_ca_for_new_connections(
    core: str, files: dict[str, Path], old: Issued, new: Issued
) -> None:
    tls = TLS(cert=files["cert"], key=files["key"], client_ca=files["client_ca"])
    with start_server(port=0, core=core, tls=tls) as running:  # type: ignore[arg-type]
        assert _call(running.address, old, client=old) is grpc.StatusCode.OK
        assert _call(running.address, old, client=new) is grpc.StatusCode.UNAVAILABLE
        _replace(files["client_ca"], new.ca_pem)
        assert _call(running.address, old, client=new) is grpc.StatusCode.OK
        assert _call(running.address, old, client=old) is grpc.StatusCode.UNAVAILABLE


def test_the_files_are_read_again_only_when_they_change(files: dict[str, Path], new: Issued) -> None:
    watched = CertificateFiles(files["cert"], files["key"])
    assert watched.fetch() is None
    _replace(files["key"], new.key)
    _replace(files["cert"], new.cert)
    assert isinstance(watched.fetch(), grpc.ServerCertificateConfiguration)
    assert watched.fetch() is None


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("key", "other key", "does not match the certificate"),
        ("cert", b"garbage\n", "holds no whole PEM certificate"),
        ("client_ca", b"garbage\n", "holds no whole PEM certificate"),
    ],
)
def test_files_that_do_not_make_a_pair_are_refused_at_start(
    files: dict[str, Path], new: Issued, name: str, content: bytes | str, reason: str
) -> None:
    _replace(files[name], new.key if content == "other key" else content)  # type: ignore[arg-type]
    tls = TLS(cert=files["cert"], key=files["key"], client_ca=files["client_ca"])
    with pytest.raises(ValueError, match=reason):
        start_server(port=0, tls=tls)


def test_the_cli_serves_a_replaced_certificate_and_says_once_why_it_kept_the_old(
    files: dict[str, Path], old: Issued, new: Issued
) -> None:
    served = Served("--port", "0", "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    try:
        address = served.address()
        _replace(files["key"], b"garbage\n")
        assert _call(address, old) is grpc.StatusCode.OK
        assert _call(address, old) is grpc.StatusCode.OK
        _replace(files["key"], new.key)
        _replace(files["cert"], new.cert)
        assert _call(address, new) is grpc.StatusCode.OK
        assert _call(address, old) is grpc.StatusCode.UNAVAILABLE
        assert served.stop() == 0
        lines = [line for line in served.stderr_text().splitlines() if KEEPING in line]
        assert lines == [f"{KEEPING}: the TLS key {files['key']} is not a PEM private key without a passphrase"]
    finally:
        served.kill()


def test_the_cli_refuses_to_start_with_a_key_that_does_not_match(files: dict[str, Path], new: Issued) -> None:
    _replace(files["key"], new.key)
    served = Served("--port", "0", "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    try:
        assert served.process.wait(timeout=30) == 2
        assert f"remotecalc: the TLS key {files['key']} does not match the certificate" in served.stderr_text()
    finally:
        served.kill()


def test_every_worker_serves_the_replaced_certificate(
    files: dict[str, Path], old: Issued, new: Issued, redis_url: str
) -> None:
    tls = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    served = Served("--port", "0", "--workers", "2", "--store", redis_url, *tls)
    try:
        address = served.address()
        assert _call(address, old) is grpc.StatusCode.OK
        _replace(files["key"], new.key)
        _replace(files["cert"], new.cert)
        # The kernel hands each new connection to either worker: eight reach both but for 1 in 128.
        assert [_call(address, new) for _ in range(8)] == [grpc.StatusCode.OK] * 8
        assert [_call(address, old) for _ in range(8)] == [grpc.StatusCode.UNAVAILABLE] * 8
        assert served.stop() == 0
    finally:
        served.kill()


def test_a_key_with_a_passphrase_keeps_the_old_certificate_serving(
    server: RunningServer, files: dict[str, Path], old: Issued, new: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    key = serialization.load_pem_private_key(new.key, password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    )
    _replace(files["key"], locked)
    _replace(files["cert"], new.cert)
    assert _call(server.address, old) is grpc.StatusCode.OK
    assert _call(server.address, new) is grpc.StatusCode.UNAVAILABLE
    assert [record.getMessage() for record in caplog.records if KEEPING in record.getMessage()] != []


def test_a_symlink_swapped_as_kubernetes_does_serves_the_new_certificate(
    tmp_path: Path, old: Issued, new: Issued
) -> None:
    # A secret volume: cert.pem -> ..data/cert.pem, and ..data -> a dated folder, swapped in one rename.
    for name, issued in (("2026-01", old), ("2026-02", new)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cert.pem").write_bytes(issued.cert)
        (tmp_path / name / "key.pem").write_bytes(issued.key)
    (tmp_path / "..data").symlink_to("2026-01")
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).symlink_to(Path("..data") / name)
    tls = TLS(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    with start_server(port=0, tls=tls, clock=lambda: 0.5) as running:
        assert _call(running.address, old) is grpc.StatusCode.OK
        (tmp_path / "..data_tmp").symlink_to("2026-02")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert _call(running.address, new) is grpc.StatusCode.OK
        assert _call(running.address, old) is grpc.StatusCode.UNAVAILABLE

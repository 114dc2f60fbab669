"""`serve` says at start when its certificate has expired or is not valid yet, and serves it anyway."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from processes import Served

from remotecalc.certificates import dates_problem, validity

_UTC = timezone.utc


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA the certificates here are signed by."""
    return trustme.CA()


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (datetime(2001, 2, 3, 4, 5, 6), datetime(2003, 1, 1)),  # UTCTime
        (datetime(1999, 12, 31, 23, 59, 59), datetime(2049, 12, 31, 23, 59, 59)),  # UTCTime's two centuries
        (datetime(2030, 1, 1), datetime(2070, 5, 6, 7, 8, 9)),  # GeneralizedTime after 2049
        (None, None),  # trustme's defaults: 2000 to 3000
    ],
)
def test_validity_reads_the_dates_cryptography_reads(
    ca: trustme.CA, not_before: datetime | None, not_after: datetime | None
) -> None:
    pem = ca.issue_cert("127.0.0.1", not_before=not_before, not_after=not_after).cert_chain_pems[0].bytes()
    parsed = x509.load_pem_x509_certificate(pem)
    assert validity(pem) == (parsed.not_valid_before_utc, parsed.not_valid_after_utc)
    assert validity(ca.cert_pem.bytes())[1] == x509.load_pem_x509_certificate(ca.cert_pem.bytes()).not_valid_after_utc


def test_dates_problem_says_expired_or_not_yet_valid(ca: trustme.CA) -> None:
    pem = ca.issue_cert("x", not_before=datetime(2020, 1, 1), not_after=datetime(2021, 6, 1)).cert_chain_pems[0]
    dated = pem.bytes()
    assert dates_problem(dated, "c.pem", datetime(2020, 6, 1, tzinfo=_UTC)) is None
    assert dates_problem(dated, "c.pem", datetime(2021, 6, 1, 0, 0, 1, tzinfo=_UTC)) == (
        "the TLS certificate c.pem expired on 2021-06-01 00:00:00 UTC"
    )
    assert dates_problem(dated, "c.pem", datetime(2019, 12, 31, tzinfo=_UTC)) == (
        "the TLS certificate c.pem is not valid before 2020-01-01 00:00:00 UTC"
    )
    with pytest.raises(ValueError):
        validity(b"not a certificate")


def _files(ca: trustme.CA, folder: Path, not_before: datetime, not_after: datetime) -> list[str]:
    leaf = ca.issue_cert("127.0.0.1", not_before=not_before, not_after=not_after)
    cert, key = folder / "cert.pem", folder / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


_NOW = datetime.now(_UTC).replace(tzinfo=None, microsecond=0)
_DATES = {
    "expired": (_NOW - timedelta(days=400), _NOW - timedelta(days=35), "expired on"),
    "not yet valid": (_NOW + timedelta(days=2), _NOW + timedelta(days=400), "is not valid before"),
}


@pytest.mark.parametrize("case", list(_DATES))
def test_serve_warns_in_one_line_of_a_certificate_out_of_its_dates_and_serves(
    case: str, ca: trustme.CA, tmp_path: Path
) -> None:
    not_before, not_after, said = _DATES[case]
    served = Served("--port", "0", *_files(ca, tmp_path, not_before, not_after))
    try:
        served.address()
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    when = (not_after if case == "expired" else not_before).strftime("%Y-%m-%d %H:%M:%S")
    assert served.stderr_text().splitlines() == [
        f"remotecalc: warning: the TLS certificate {tmp_path / 'cert.pem'} {said} {when} UTC: clients will refuse "
        "it until a valid one replaces it (the server reads it again when the file changes)"
    ]


def test_workers_warn_once_of_an_expired_certificate(ca: trustme.CA, tmp_path: Path, redis_url: str) -> None:
    not_before, not_after, _ = _DATES["expired"]
    files = _files(ca, tmp_path, not_before, not_after)
    served = Served("--port", "0", "--workers", "2", "--store", redis_url, *files)
    try:
        served.address()
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    warnings = served.stderr_text().splitlines()
    assert len(warnings) == 1 and "expired on" in warnings[0], warnings


def test_a_valid_certificate_brings_no_warning(ca: trustme.CA, tmp_path: Path) -> None:
    served = Served("--port", "0", *_files(ca, tmp_path, _NOW - timedelta(days=1), _NOW + timedelta(days=90)))
    try:
        served.address()
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()
    assert served.stderr_text() == ""

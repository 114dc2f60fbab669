"""A TLS server's PEM files, read again for new connections when they change on disk, and never half read.

grpcio asks the fetcher for a new configuration at every TLS handshake, so the question is answered
from the files' stat() alone (inode, size, times) and the files are read only when that changed. Files
that do not make a whole, matching pair (a certificate written before its key, garbage, a file gone)
leave the configuration already served in place, with one line logged per state of the files.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import ssl
import threading
from datetime import datetime, timezone
from pathlib import Path

import grpc

__all__ = ["CertificateFiles", "dates_problem", "read_pem", "validity"]

log = logging.getLogger(__name__)

#: What stat() says of each file: enough to see a file replaced by rename or rewritten in place.
_Signature = tuple[tuple[int, ...], ...]


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file, or OSError naming what it was meant to hold and why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise OSError(error.errno, f"cannot read the TLS {what} {path}: {error.strerror}") from None


def _check_certificates(pem: bytes, path: Path, what: str) -> None:
    """Raise ValueError unless pem holds at least one whole PEM certificate."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise ValueError(f"the TLS {what} {path} holds no whole PEM certificate") from None


def _check_pair(cert: Path, key: Path) -> None:
    """Raise ValueError unless the key is a PEM private key (no passphrase) that matches the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The password callback refuses an encrypted key rather than prompting on the terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"the TLS key {key} does not match the certificate {cert}") from None
        raise ValueError(f"the TLS key {key} is not a PEM private key without a passphrase") from None


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def _element(der: bytes, offset: int) -> tuple[int, int, int]:
    """The DER element at offset: its tag, where its content starts and where it ends."""
    if offset + 2 > len(der):
        raise ValueError("a DER element runs past the end")
    tag, length = der[offset], der[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    if start + length > len(der):
        raise ValueError("a DER element runs past the end")
    return tag, start, start + length


def _time(tag: int, text: bytes) -> datetime:
    """An X.509 UTCTime (YYMMDDHHMMSSZ, years 1950 to 2049) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    if tag == 0x17:
        year = int(text[:2])
        text = (b"19" if year >= 50 else b"20") + text
    elif tag != 0x18:
        raise ValueError("a certificate date is neither UTCTime nor GeneralizedTime")
    return datetime.strptime(text.decode("ascii"), "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)


def validity(pem: bytes) -> tuple[datetime, datetime]:
    """When the first certificate in pem becomes valid and when it expires (notBefore, notAfter), in UTC."""
    found = _PEM_CERTIFICATE.search(pem)
    if found is None:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("the PEM certificate is not base64") from None
    # Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
    # signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }
    _, certificate, _ = _element(der, 0)
    _, field, _ = _element(der, certificate)
    tag, _, end = _element(der, field)
    if tag == 0xA0:
        field = end
    for _ in range(3):  # serialNumber, signature, issuer
        field = _element(der, field)[2]
    tag, dates, _ = _element(der, field)
    if tag != 0x30:
        raise ValueError("no validity in the certificate")
    before = _element(der, dates)
    after = _element(der, before[2])
    return _time(before[0], der[before[1] : before[2]]), _time(after[0], der[after[1] : after[2]])


def dates_problem(pem: bytes, path: Path | str, now: datetime) -> str | None:
    """Why the certificate in pem is not valid at now (expired, or not yet valid), None when it is."""
    not_before, not_after = validity(pem)
    if now > not_after:
        return f"the TLS certificate {path} expired on {not_after:%Y-%m-%d %H:%M:%S} UTC"
    if now < not_before:
        return f"the TLS certificate {path} is not valid before {not_before:%Y-%m-%d %H:%M:%S} UTC"
    return None


class CertificateFiles:
    """The certificate chain, key and client CA a server serves with; fetch() reloads them when they change."""

    def __init__(self, cert: Path | str, key: Path | str, client_ca: Path | str | None = None) -> None:
        self.cert, self.key = Path(cert), Path(key)
        self.client_ca = None if client_ca is None else Path(client_ca)
        self._lock = threading.Lock()
        signature = self._stat()
        self._configuration = self._load()
        #: The files' state last looked at, loaded or refused: a handshake reads nothing while it holds.
        self._seen: _Signature | str = signature

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials that serve these files and ask fetch() at every handshake."""
        # grpcio's stubs type the fetcher as never returning None, but None is how it says "unchanged".
        return grpc.dynamic_ssl_server_credentials(
            self._configuration,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self.client_ca is not None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration if the files changed and are whole and matching; None keeps the one served."""
        try:
            before = self._stat()
        except OSError as error:
            self._refuse(error.strerror or str(error), str(error))
            return None
        with self._lock:
            if before == self._seen:
                return None
            try:
                loaded = self._load()
            except (OSError, ValueError) as error:
                refusal = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                if self._stat_or_none() == before:
                    self._seen = before
                    log.warning("keeping the TLS certificate already served: %s", refusal)
                # Otherwise the files are being written right now: the next handshake looks again.
                return None
            if self._stat_or_none() != before:
                return None
            self._seen = before
            self._configuration = loaded
        log.info("serving the TLS certificate %s read again from disk", self.cert)
        return loaded

    def _refuse(self, reason: str, state: str) -> None:
        with self._lock:
            if self._seen != state:
                self._seen = state
                log.warning("keeping the TLS certificate already served: %s", reason)

    def _paths(self) -> list[Path]:
        return [self.cert, self.key] + ([] if self.client_ca is None else [self.client_ca])

    def _stat(self) -> _Signature:
        """Each file's inode, size and times, or OSError naming the file that cannot be looked at."""
        found = []
        for path, what in zip(self._paths(), ("certificate", "key", "client CA"), strict=False):
            try:
                status = os.stat(path)
            except OSError as error:
                raise OSError(error.errno, f"cannot read the TLS {what} {path}: {error.strerror}") from None
            found.append((status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns))
        return tuple(found)

    def _stat_or_none(self) -> _Signature | None:
        try:
            return self._stat()
        except OSError:
            return None

    def _load(self) -> grpc.ServerCertificateConfiguration:
        """Read and check the files: OSError if one cannot be read, ValueError if they do not make a pair."""
        chain = read_pem(self.cert, "certificate")
        key = read_pem(self.key, "key")
        roots = None
        if self.client_ca is not None:
            roots = read_pem(self.client_ca, "client CA")
            _check_certificates(roots, self.client_ca, "client CA")
        _check_certificates(chain, self.cert, "certificate")
        _check_pair(self.cert, self.key)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

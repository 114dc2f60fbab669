"""A TLS server's PEM files, read again for new connections when they change on disk, and never half read.

grpcio asks the fetcher for a new configuration at every TLS handshake, so the question is answered
from the files' stat() alone (inode, size, times) and the files are read only when that changed. Files
that do not make a whole, matching pair (a certificate written before its key, garbage, a file gone)
leave the configuration already served in place, with one line logged per state of the files.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

import grpc

__all__ = ["CertificateFiles", "read_pem"]

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

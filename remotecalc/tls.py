"""TLS: the files a server serves with, a client's credentials, and what a failed handshake means to a user."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import grpc

from .certificates import CertificateFiles, read_pem

__all__ = ["TLS", "PemSource", "channel_credentials", "explain_unreachable"]

#: PEM text as bytes, or the path of a file holding it.
PemSource = bytes | str | Path


@dataclass(frozen=True)
class TLS:
    """PEM files a server serves TLS with; client_ca set requires client certificates it signed (mutual TLS).

    The server reads them again for new connections when they change (replace them by renaming a whole
    file over each); a pair that does not match, or a file that is not PEM, leaves the old one served.
    """

    cert: Path | str
    key: Path | str
    client_ca: Path | str | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials: the files read and checked now, and again for new connections on change."""
        return CertificateFiles(self.cert, self.key, self.client_ca).credentials()


def _pem(source: PemSource, what: str) -> bytes:
    return source if isinstance(source, bytes) else read_pem(Path(source), what)


def channel_credentials(
    *,
    tls: bool = False,
    root_certificates: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
) -> grpc.ChannelCredentials | None:
    """A client's TLS credentials (the system's roots unless root_certificates), None for plaintext."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together: the certificate and its private key")
    if not tls and root_certificates is None and client_cert is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=None if root_certificates is None else _pem(root_certificates, "root certificates"),
        private_key=None if client_key is None else _pem(client_key, "client key"),
        certificate_chain=None if client_cert is None else _pem(client_cert, "client certificate"),
    )


def explain_unreachable(details: str, *, secure: bool, client_cert: bool) -> str:
    """gRPC's text for a connection that failed or was lost, led by what it likely means; unchanged otherwise."""
    lowered = details.lower()
    if "handshake" in lowered:
        return (
            "TLS handshake failed: the server's certificate is not signed by the trusted roots "
            f"(root_certificates), or the server does not speak TLS. gRPC: {details}"
        )
    if "connection refused" in lowered:
        refused = _REFUSED.search(details)
        where = "that address" if refused is None else unquote(refused.group(1))
        return f"nothing is listening at {where} (connection refused): is the server running there? gRPC: {details}"
    # Closed while connecting, before any call: a TLS server closes a plaintext connection at once, and
    # one without a client certificate it requires. Closed later, it is a server that went away.
    if "socket closed" not in lowered:
        return details
    if not lowered.startswith(_CONNECTING):
        return f"the connection to the server was lost: it stopped, was killed, or the network dropped. gRPC: {details}"
    if not secure:
        return (
            "the server closed the connection: if it serves TLS, connect with tls=True or "
            f"root_certificates=... (this client speaks plaintext). gRPC: {details}"
        )
    if not client_cert:
        return (
            "the server closed the connection during the TLS handshake: if it requires client "
            f"certificates (mutual TLS), pass client_cert and client_key. gRPC: {details}"
        )
    return (
        f"the server closed the connection during the TLS handshake: is client_cert signed by its CA? gRPC: {details}"
    )


# gRPC's words (1.6x) for a call that found no connection it could make.
_CONNECTING = "failed to connect to all addresses"
_REFUSED = re.compile(r"(?:ipv4:|ipv6:)?(\[[^\]]+\]:\d+|[^\s;]+:\d+): [^;]*connection refused", re.IGNORECASE)

"""Callers: bearer tokens from a token file, compared in constant time, and who a call comes from.

A token file holds one caller per line, ``NAME:TOKEN``; a caller may have several tokens (rotation).
`Callers` decides, in one place for every service and both gRPC cores, who a call comes from: the
name of its bearer token when tokens are configured, else under mutual TLS its client certificate's
SPIFFE ID (its ``spiffe://`` URI SAN) or, without one, its subject. A refusal is UNAUTHENTICATED and
never repeats the token it was given.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import CertificateAnonymous, CredentialsMissing, CredentialsUnknown

__all__ = [
    "AUTHORIZATION_KEY",
    "MIN_TOKEN_LENGTH",
    "TOKEN_VARIABLE",
    "AuthTokens",
    "Callers",
    "TokenFileError",
    "bearer",
    "certificate_caller",
    "certificate_subject",
    "new_token",
    "token_problem",
]

#: The metadata key a bearer token travels in: ``authorization: Bearer <token>``.
AUTHORIZATION_KEY = "authorization"
#: The environment variable the client reads its token from when none is passed.
TOKEN_VARIABLE = "REMOTECALC_AUTH_TOKEN"
#: The shortest token a token file may hold.
MIN_TOKEN_LENGTH = 16

_BEARER = "bearer "
_MISSING = (
    "this server requires a bearer token: pass auth_token= to remotecalc.connect (or set "
    f"{TOKEN_VARIABLE}), or send the metadata line 'authorization: Bearer <token>'"
)
_UNKNOWN = "the bearer token is not one this server knows (check the token file the server reads)"
_ANONYMOUS = (
    "the client certificate names no caller: it has neither a SPIFFE ID (a spiffe:// URI SAN) nor a subject"
    " (issue it with one of them)"
)
_NOT_ONE_SPIFFE_ID = (
    "the client certificate's URI SANs are not one valid SPIFFE ID (an X.509-SVID has exactly one URI SAN,"
    " spiffe://trust-domain/path)"
)
_SPIFFE = "spiffe://"


class TokenFileError(ValueError):
    """A token file the server refuses: the message names the file and the line, never the token."""


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AuthTokens:
    """Known bearer tokens and the caller each names; a caller may hold several (rotation)."""

    def __init__(self, tokens: Mapping[str, str | Iterable[str]]) -> None:
        pairs: list[tuple[str, str]] = []
        for name, held in tokens.items():
            pairs.extend((name, token) for token in ([held] if isinstance(held, str) else held))
        for name, token in pairs:
            _check(name, token, "")
        self._entries = _entries(pairs, "")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AuthTokens:
        """The tokens of a token file; warns when others than its owner may read it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise TokenFileError(f"cannot read the token file {path}: {reason}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"the token file {path} is readable by others than its owner: chmod 600 {path}",
                UserWarning,
                stacklevel=2,
            )
        pairs: list[tuple[str, str]] = []
        lines: list[int] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path} line {number}"
            if ":" not in line:
                raise TokenFileError(f"{where}: expected NAME:TOKEN")
            name, _, token = line.partition(":")
            _check(name.strip(), token.strip(), where)
            pairs.append((name.strip(), token.strip()))
            lines.append(number)
        tokens = cls({})
        tokens._entries = _entries(pairs, str(path), lines)
        return tokens

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> frozenset[str]:
        """The callers these tokens name."""
        return frozenset(name for _, name in self._entries)

    def __repr__(self) -> str:
        names = sorted({name for _, name in self._entries})
        return f"<AuthTokens {len(self._entries)} tokens of {len(names)} callers>"

    def caller(self, token: str) -> str | None:
        """The caller token names, or None; compares against every known token, in constant time."""
        presented = _digest(token)
        found: str | None = None
        for digest, name in self._entries:
            # No early exit: the time taken does not depend on which token matched, or how much.
            if hmac.compare_digest(presented, digest):
                found = name
        return found


def token_problem(token: str) -> str | None:
    """Why token cannot travel as a bearer token (gRPC metadata is visible ASCII), None when it can."""
    if not token or not all("!" <= character <= "~" for character in token):
        return "a bearer token is visible ASCII characters (no spaces), as remotecalc new-token makes"
    return None


def _check(name: str, token: str, where: str) -> None:
    at = f"{where}: " if where else ""
    if not name:
        raise TokenFileError(f"{at}the caller name is empty (expected NAME:TOKEN)")
    problem = token_problem(token)
    if problem is not None:
        raise TokenFileError(f"{at}the token of {name!r} cannot be sent: {problem}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenFileError(
            f"{at}the token of {name!r} is shorter than {MIN_TOKEN_LENGTH} characters"
            " (make one with: remotecalc new-token NAME)"
        )


def _entries(pairs: list[tuple[str, str]], path: str, lines: list[int] | None = None) -> tuple[tuple[bytes, str], ...]:
    seen: dict[bytes, int] = {}
    entries: list[tuple[bytes, str]] = []
    for index, (name, token) in enumerate(pairs):
        digest = _digest(token)
        if digest in seen:
            if lines is not None:
                raise TokenFileError(
                    f"{path} line {lines[index]}: this token is already on line {lines[seen[digest]]}"
                    " (each token names one caller)"
                )
            raise TokenFileError(f"the token of {name!r} is given twice (each token names one caller)")
        seen[digest] = index
        entries.append((digest, name))
    return tuple(entries)


def bearer(metadata: Iterable[tuple[str, Any]]) -> str | None:
    """The bearer token in a call's metadata, None when there is none."""
    for key, value in metadata:
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value[:7].lower() == _BEARER:
            return value[7:].strip()
    return None


def certificate_subject(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The subject of the client certificate a TLS handshake verified; empty when there is none."""
    for key in ("x509_subject", "x509_common_name"):
        values = list(auth_context.get(key) or ())
        if values:
            return values[0].decode("utf-8", "replace")
    return ""


def certificate_caller(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The caller a verified client certificate names: its SPIFFE ID, else its subject; UNAUTHENTICATED if none."""
    # gRPC's core sets peer_spiffe_id only for a certificate whose one URI SAN is a valid SPIFFE ID.
    spiffe_ids = list(auth_context.get("peer_spiffe_id") or ())
    if spiffe_ids:
        return spiffe_ids[0].decode("utf-8", "replace")
    uris = [uri.decode("utf-8", "replace") for uri in auth_context.get("peer_uri") or ()]
    if any(uri.lower().startswith(_SPIFFE) for uri in uris):
        # Several SPIFFE IDs, or one beside other URIs: picking one would let the issuer's order decide.
        raise CertificateAnonymous(_NOT_ONE_SPIFFE_ID)
    subject = certificate_subject(auth_context)
    if not subject:
        raise CertificateAnonymous(_ANONYMOUS)
    return subject


class Callers:
    """Who a call comes from: its bearer token's caller when tokens are set, else its client certificate's."""

    def __init__(self, tokens: AuthTokens | None, *, mutual_tls: bool = False) -> None:
        self.tokens = tokens
        self.mutual_tls = mutual_tls

    def of_metadata(self, metadata: Iterable[tuple[str, Any]]) -> str:
        """The caller a call's metadata names by its bearer token; UNAUTHENTICATED when missing or unknown."""
        assert self.tokens is not None
        token = bearer(metadata)
        if not token:
            raise CredentialsMissing(_MISSING)
        name = self.tokens.caller(token)
        if name is None:
            raise CredentialsUnknown(_UNKNOWN)
        return name

    def of(self, context: Any) -> str:
        """The caller of a call, from its context on either core."""
        if self.tokens is not None:
            return self.of_metadata(context.invocation_metadata() or ())
        return certificate_caller(context.auth_context())

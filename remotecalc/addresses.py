"""Addresses, as the client and the server both read them: loopback or not, host:port, several as one target.

Pure functions of strings, with no gRPC server behind them, so that a client imports nothing of the server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Reachable", "grpc_target", "host_port", "is_loopback", "joined", "loopback_only", "plaintext_refusal"]


class Reachable(Protocol):
    """Anything with an address to connect to, such as a running server."""

    @property
    def address(self) -> str:
        """host:port."""
        ...


def is_loopback(host: str) -> bool:
    """True for a host only this machine can reach: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plaintext_refusal(host: str) -> str | None:
    """Why serving host without TLS is refused unless insecure is asked for; None on loopback."""
    if is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without TLS: anyone who reaches it could read calls and tokens "
        "(give a TLS certificate, or --insecure / insecure=True on a network you trust)"
    )


def grpc_target(target: str) -> tuple[str, bool]:
    """The gRPC channel target for target, and whether calls are balanced (round_robin) over its addresses.

    "a:1,b:2" (IP addresses) becomes "ipv4:a:1,b:2" or "ipv6:[a]:1,[b]:2"; a "dns:" target balances over
    every address its name resolves to; one plain address is left as it is.
    """
    if target.startswith("dns:"):
        return target, True
    parts = [part.strip() for part in target.split(",") if part.strip()]
    if len(parts) <= 1:
        return target, False
    hosts = [_split_address(part) for part in parts]
    families = {family for family, _, _ in hosts}
    if len(families) != 1:
        raise ValueError(
            f"several addresses must all be IPv4 or all IPv6 literals, got {target!r}; "
            "for a name that resolves to several replicas, use dns:///NAME:PORT"
        )
    family = families.pop()
    if family == 4:
        return "ipv4:" + ",".join(f"{host}:{port}" for _, host, port in hosts), True
    return "ipv6:" + ",".join(f"[{host}]:{port}" for _, host, port in hosts), True


def _split_address(address: str) -> tuple[int, str, int]:
    """(IP version, host, port) of "host:port" or "[v6]:port"; ValueError for anything else."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(
            f"{address!r} is not IP:PORT; several addresses must be IP literals with ports "
            "(for a name that resolves to several replicas, use dns:///NAME:PORT)"
        ) from None
    if not 0 < number < 65536:
        raise ValueError(f"{address!r}: the port must be 1 to 65535")
    return ip.version, str(ip), number


def loopback_only(target: str) -> bool:
    """True when every address of target is loopback (a name is resolved by no one here: only localhost)."""
    rest = target.removeprefix("dns:")
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]  # dns://authority/host:port
    rest = rest.removeprefix("ipv4:").removeprefix("ipv6:")
    parts = [part.strip() for part in rest.split(",") if part.strip()]
    return bool(parts) and all(is_loopback(part.rpartition(":")[0] or part) for part in parts)


def joined(target: str | Reachable | Sequence[str | Reachable]) -> str:
    """One target string of an address, a server, or several of either."""
    if isinstance(target, str):
        return target
    if isinstance(target, Sequence):
        addresses = [item if isinstance(item, str) else item.address for item in target]
        if not addresses:
            raise ValueError("no address to connect to")
        return ",".join(addresses)
    return target.address

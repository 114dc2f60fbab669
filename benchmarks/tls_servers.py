"""Part 10 of the benchmark: unary Apply and new connections over TLS and mutual TLS against plaintext.

Three `remotecalc serve` processes (sync core) on one set of certificates made now with trustme (ECDSA
P-256, its default); the load generator measures them in turns, each round in a rotated order, so that
a noisy machine treats them alike. No TLS session is resumed: every new connection is a full handshake.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from benchmarks.processes import Child
from benchmarks.stores import Served
from remotecalc.certificates import CertificateFiles

__all__ = ["TLS_CALLERS", "TLS_SERVERS", "tls"]

#: The servers compared, plaintext first: every ratio is to it.
TLS_SERVERS = ("plaintext", "TLS", "mutual TLS")
#: The numbers of concurrent callers, each its own connection.
TLS_CALLERS = (1, 8)


def _certificates(folder: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in folder."""
    ca = trustme.CA()
    served, caller = ca.issue_cert("127.0.0.1"), ca.issue_cert("bench@example.org")
    blobs = {
        "ca": ca.cert_pem,
        "cert": served.cert_chain_pems[0],
        "key": served.private_key_pem,
        "client_cert": caller.cert_chain_pems[0],
        "client_key": caller.private_key_pem,
    }
    paths = {name: str(folder / f"{name}.pem") for name in blobs}
    for name, blob in blobs.items():
        blob.write_to_path(paths[name])
    return paths


def _fetch_cost_us(files: dict[str, str], calls: int) -> float:
    """Microseconds the server's per-handshake question costs when the files have not changed."""
    watched = CertificateFiles(files["cert"], files["key"], files["ca"])
    started = time.perf_counter()
    for _ in range(calls):
        watched.fetch()
    return (time.perf_counter() - started) / calls * 1e6


def _paired(results: list[float], reference: list[float]) -> float:
    return float(statistics.median(r / o for r, o in zip(results, reference, strict=True)))


def tls(worker: Child, settings: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """Part 10: Apply calls/s and latency at 1 and 8 callers, and time to first reply on a new connection."""
    with tempfile.TemporaryDirectory(prefix="remotecalc-bench-tls-") as folder:
        files = _certificates(Path(folder))
        serving = ["--tls-cert", files["cert"], "--tls-key", files["key"]]
        options = {"plaintext": [], "TLS": serving, "mutual TLS": [*serving, "--tls-client-ca", files["ca"]]}
        pems: dict[str, dict[str, str] | None] = {
            "plaintext": None,
            "TLS": {"root": files["ca"]},
            "mutual TLS": {"root": files["ca"], "cert": files["client_cert"], "key": files["client_key"]},
        }
        servers = {name: Served("memory", options=options[name]) for name in TLS_SERVERS}
        applies: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        connects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        try:
            for number in range(settings["tls_rounds"]):
                progress(f"part 10, TLS against plaintext: round {number + 1} of {settings['tls_rounds']}")
                order = [TLS_SERVERS[(i + number) % len(TLS_SERVERS)] for i in range(len(TLS_SERVERS))]
                for count in TLS_CALLERS:
                    for name in order:
                        args = {"callers": count, "seconds": settings["tls_apply"], "pem": pems[name]}
                        applies[name, count].append(worker.ask("tls_apply", address=servers[name].address, **args))
                for name in order:
                    connections = settings["tls_connections"]
                    args = {"connections": connections, "pem": pems[name]}
                    connects[name].append(worker.ask("tls_connect", address=servers[name].address, **args))
        finally:
            for server in servers.values():
                server.close()
        fetch_us = _fetch_cost_us(files, 2_000)
    apply_rows = []
    for count in TLS_CALLERS:
        for name in TLS_SERVERS:
            results, plain = applies[name, count], applies["plaintext", count]
            apply_rows.append(
                {
                    "server": name,
                    "callers": count,
                    "calls_per_s": sum(r["calls"] for r in results) / sum(r["seconds"] for r in results),
                    **{key: statistics.median(r[key] for r in results) for key in ("p50_ms", "p99_ms")},
                    "max_ms": max(r["max_ms"] for r in results),
                    "vs_plaintext": _paired([r["calls_per_s"] for r in results], [r["calls_per_s"] for r in plain]),
                }
            )
    connect_rows = []
    for name in TLS_SERVERS:
        results, plain = connects[name], connects["plaintext"]
        connect_rows.append(
            {
                "server": name,
                "connections": sum(r["connections"] for r in results),
                **{key: statistics.median(r[key] for r in results) for key in ("p50_ms", "p99_ms")},
                "max_ms": max(r["max_ms"] for r in results),
                "p50_vs_plaintext": _paired([r["p50_ms"] for r in results], [r["p50_ms"] for r in plain]),
            }
        )
    return {"tls": apply_rows, "tls_connect": connect_rows, "tls_reload_check_us": fetch_us}

"""Part 10 of the benchmark: unary Apply and new connections over TLS, mutual TLS and bearer tokens against plaintext.

Four `remotecalc serve` processes (sync core) on certificates made now with trustme: ECDSA P-256
keys (its default), one server with an RSA 2048 key, as many public CAs issue, and one that also
requires a bearer token (a token file of ten callers). The load generator
measures them in turns, each round in a rotated order, so that a noisy machine treats them alike.
No TLS session is resumed: every new connection is a full handshake.
It runs within `benchmarks/run.py`; on its own, with the same settings:

    .venv/bin/python -m benchmarks.tls_servers [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from benchmarks.processes import Child
from benchmarks.settings import progress, settings_for
from benchmarks.stores import Served
from remotecalc import new_token

__all__ = ["TLS_CALLERS", "TLS_SERVERS", "main", "tls"]

#: The servers compared, plaintext first: every ratio is to it.
TLS_SERVERS = ("plaintext", "TLS", "mutual TLS", "TLS, RSA 2048", "TLS and tokens")
#: The numbers of concurrent callers, each its own connection.
TLS_CALLERS = (1, 8)


def _certificates(folder: Path) -> dict[str, str]:
    """A CA, server certificates for 127.0.0.1 (ECDSA and RSA keys), a client certificate, and a token file."""
    ca = trustme.CA()
    served, caller = ca.issue_cert("127.0.0.1"), ca.issue_cert("bench@example.org")
    served_rsa = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    blobs = {
        "ca": ca.cert_pem,
        "cert": served.cert_chain_pems[0],
        "key": served.private_key_pem,
        "rsa_cert": served_rsa.cert_chain_pems[0],
        "rsa_key": served_rsa.private_key_pem,
        "client_cert": caller.cert_chain_pems[0],
        "client_key": caller.private_key_pem,
    }
    paths = {name: str(folder / f"{name}.pem") for name in blobs}
    for name, blob in blobs.items():
        blob.write_to_path(paths[name])
    # Ten callers, as a real token file would hold several: the server compares against every one.
    tokens = [new_token() for _ in range(10)]
    paths["token"], paths["tokens"] = tokens[-1], str(folder / "tokens.txt")
    Path(paths["tokens"]).write_text("".join(f"caller{n}:{token}\n" for n, token in enumerate(tokens)))
    Path(paths["tokens"]).chmod(0o600)
    return paths


def _paired(results: list[float], reference: list[float]) -> float:
    return float(statistics.median(r / o for r, o in zip(results, reference, strict=True)))


def tls(worker: Child, settings: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """Part 10: Apply calls/s and latency at 1 and 8 callers, and time to first reply on a new connection, by server."""
    with tempfile.TemporaryDirectory(prefix="remotecalc-bench-tls-") as folder:
        files = _certificates(Path(folder))
        serving = ["--tls-cert", files["cert"], "--tls-key", files["key"]]
        options = {
            "plaintext": [],
            "TLS": serving,
            "mutual TLS": [*serving, "--tls-client-ca", files["ca"]],
            "TLS, RSA 2048": ["--tls-cert", files["rsa_cert"], "--tls-key", files["rsa_key"]],
            "TLS and tokens": [*serving, "--auth-token-file", files["tokens"]],
        }
        pems: dict[str, dict[str, str] | None] = {
            "plaintext": None,
            "TLS": {"root": files["ca"]},
            "TLS, RSA 2048": {"root": files["ca"]},
            "mutual TLS": {"root": files["ca"], "cert": files["client_cert"], "key": files["client_key"]},
            "TLS and tokens": {"root": files["ca"], "bearer": files["token"]},
        }
        servers = {name: Served("memory", options=options[name]) for name in TLS_SERVERS}
        applies: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        connects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        try:
            for name in TLS_SERVERS:  # a first connection and calls on each, not counted: no round starts cold
                worker.ask("tls_apply", address=servers[name].address, callers=1, seconds=0.05, pem=pems[name])
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
            reload_check = worker.ask("tls_reload_check", cert=files["cert"], key=files["key"], client_ca=files["ca"])
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
    return {"tls": apply_rows, "tls_connect": connect_rows, "tls_reload_check_us": reload_check["us_per_check"]}


def main(argv: list[str] | None = None) -> int:
    """Run part 10 alone with run.py's settings, print its tables, and write its JSON if asked."""
    from benchmarks.processes import start_worker_process
    from benchmarks.table import render_tls

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="briefly, as run.py --quick")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)
    settings = settings_for(quick=args.quick)
    worker = start_worker_process()
    try:
        results = tls(worker, settings, progress)
    finally:
        worker.close()
    print(render_tls(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

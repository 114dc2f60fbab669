"""A Redis Cluster master without a replica killed and restarted under a server: what fails, for how long.

    .venv/bin/python benchmarks/cluster_outage.py [--quick]

Three masters on loopback (Debian's redis-server), no replicas; one master is SIGKILLed, and once the
others mark it FAIL it is restarted. Printed per setting: when the others marked it FAIL, when sessions
on the masters that stayed up first failed (never, with cluster-require-full-coverage no) and how long
after the restart every session answered again. Redis's defaults take a minute or two; --quick skips them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import grpc
from cluster_outage import master_outage
from redis_servers import RedisClusterServers

from remotecalc import start_server

SETTINGS = {
    "Redis's defaults (full coverage yes, node timeout 15 s)": (),
    "cluster-require-full-coverage no, node timeout 15 s": ("--cluster-require-full-coverage", "no"),
    "cluster-require-full-coverage no, node timeout 2 s": (
        "--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000",
    ),
    "full coverage yes, node timeout 2 s": ("--cluster-node-timeout", "2000",),
}  # fmt: skip


def main() -> None:
    """Run each setting once and print its timeline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the settings with a 2 s node timeout")
    quick = parser.parse_args().quick
    for title, extra in SETTINGS.items():
        if quick and "15 s" in title:
            continue
        with tempfile.TemporaryDirectory(prefix="remotecalc-cluster-") as directory:
            cluster = RedisClusterServers(Path(directory), extra=extra)
            try:
                cluster.start()
                with (
                    start_server(port=0, store=cluster.url) as server,
                    grpc.insecure_channel(server.address) as channel,
                ):
                    print(master_outage(cluster, channel).report(title), flush=True)
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()

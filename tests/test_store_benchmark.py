"""The Redis store's benchmark still runs: `benchmarks/redis_store.py` prints its table and byte counts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_redis_store_benchmark_prints_every_server_and_the_bytes_per_session() -> None:
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "redis_store.py"), "--seconds", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in finished.stdout.splitlines()[1:4]}
    assert set(rows) == {"memory", "redis always", "redis everysec"}, finished.stdout
    for name, cells in rows.items():
        unary, batch, server_cpu, redis_cpu = (float(cells[index].replace(",", "")) for index in (-6, -4, -2, -1))
        assert unary > 0 and batch > 0 and server_cpu > 0, cells
        # The in-memory server has no Redis to spend CPU in; a Redis-backed one does.
        assert (redis_cpu > 0) is (name != "memory"), cells
    sizes = re.findall(r"stream-node-max-bytes (\d+): new (\d+), after 1 Apply (\d+), after 100 (\d+)", finished.stdout)
    assert [size[0] for size in sizes] == ["4096", "512", "256"], finished.stdout
    assert all(0 < int(new) < int(one) < int(hundred) for _, new, one, hundred in sizes), sizes

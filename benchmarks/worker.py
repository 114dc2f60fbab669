"""The load generator's process: reads one JSON task a line on stdin, writes one JSON result a line.

python -m benchmarks.worker
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from .loads import measure_embedded, measure_session_bytes, measure_watch, measure_watch_latency
from .measure import (
    close_channels,
    measure_apply_latency,
    measure_apply_rate,
    measure_batches,
    measure_sequence,
)
from .tls_loads import measure_reload_check, measure_tls_apply, measure_tls_connect

TASKS: dict[str, Callable[..., Any]] = {
    "sequence": measure_sequence,
    "batches": measure_batches,
    "apply": measure_apply_rate,
    "apply_latency": measure_apply_latency,
    "watch": measure_watch,
    "watch_latency": measure_watch_latency,
    "session_bytes": measure_session_bytes,
    "embedded": measure_embedded,
    "tls_apply": measure_tls_apply,
    "tls_connect": measure_tls_connect,
    "tls_reload_check": measure_reload_check,
    "close_channels": close_channels,
}


def main() -> None:
    """Run tasks until stdin closes."""
    for line in sys.stdin:
        task = json.loads(line)
        result = TASKS[task["task"]](**task["args"])
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

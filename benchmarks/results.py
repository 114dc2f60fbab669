"""The benchmark's results file: the tables of one run with the machine they ran on, for docs/ to link to."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

__all__ = ["machine", "results_page"]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _redis_server_version() -> str:
    try:
        shown = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "not installed"
    return next((word.split("=", 1)[1] for word in shown.split() if word.startswith("v=")), shown.strip())


def _processor() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers depend on: processor, cores, memory, load, Python and the gRPC and Redis versions."""
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {
        "processor": _processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(pages * page_size / 2**30, 1),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "redis_server": _redis_server_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def results_page(tables: str, host: dict[str, Any], argv: list[str]) -> str:
    """A Markdown page of one run's tables, headed by the command and the machine that made them."""
    command = " ".join(["python benchmarks/run.py", *argv])
    load = ", ".join(str(load) for load in host["load_average"])
    return (
        "# Benchmark results\n\n"
        "Written by the benchmark itself (`" + command + "`), never by hand: run it again to replace this page.\n"
        "How each part is measured: [benchmarks/README.md](../benchmarks/README.md); what the figures mean:\n"
        "[performance.md](performance.md). Compare ratios within one run: the machine is shared and noisy.\n\n"
        f"- when: {host['date']}\n"
        f"- machine: {host['processor']}, {host['cores']} cores, {host['memory_gib']} GiB;"
        f" load average at the end {load}\n"
        f"- Python {host['python']} ({sys.implementation.name}), grpcio {host['grpcio']},"
        f" protobuf {host['protobuf']}, redis-server {host['redis_server']}\n\n"
        "```text\n" + tables + "\n```\n"
    )

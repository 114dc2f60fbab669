"""remotecalc's benchmark: every part side by side in one run, as a table and, with --json, a file.

    python benchmarks/run.py [--quick] [--json PATH]

Each server runs in its own process, the load generator in another; servers are measured in
alternating rounds so that a noisy machine treats them alike. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):
    # Run as a script: make the repository's root importable, as `python -m benchmarks.run` does.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import grpc  # noqa: F401

    import remotecalc  # noqa: F401
except ImportError as missing:
    raise SystemExit(
        f"benchmarks/run.py needs remotecalc and its test extra in this Python ({sys.executable}): {missing}.\n"
        "Run it with the virtual environment's Python: .venv/bin/python benchmarks/run.py"
    ) from None

from benchmarks.floors import floors
from benchmarks.measure import BATCH_SIZES
from benchmarks.processes import Child, start_server_process, start_worker_process
from benchmarks.results import machine, results_page
from benchmarks.scaling import callers, redis_store
from benchmarks.servers import KINDS
from benchmarks.settings import progress, settings_for
from benchmarks.table import cores, goals, render
from benchmarks.tls_servers import tls

CORES = ("sync", "aio")
DEFAULT_CORE = "sync"

_T = TypeVar("_T")


def _rotated(items: Sequence[_T], by: int) -> list[_T]:
    return [items[(i + by) % len(items)] for i in range(len(items))]


def _combine(results: list[dict[str, Any]], count: str = "calls") -> dict[str, float]:
    """Rounds as one: the total rate, and the median of each round's percentiles."""
    seconds = sum(r["seconds"] for r in results)
    combined = {"seconds": seconds, f"{count}_per_s": sum(r[count] for r in results) / seconds}
    for key in ("p50_ms", "p99_ms"):
        if key in results[0]:
            combined[key] = statistics.median(r[key] for r in results)
    return combined


def unary_and_more(worker: Child, settings: dict[str, Any]) -> dict[str, Any]:
    """Parts 1, 2, 3, 5 and 6: every kind of server on both cores, measured in turns."""
    children = {(kind, core): start_server_process(kind, core) for kind in KINDS for core in CORES}
    try:
        addresses = {key: child.read()["address"] for key, child in children.items()}
        unary: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
        batches: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        applies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        watches: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        embedded: dict[str, list[dict[str, Any]]] = defaultdict(list)
        servers = [(kind, core) for core in CORES for kind in KINDS]
        for cycle in range(settings["cycles"]):
            progress(f"part 1, unary calls: cycle {cycle + 1} of {settings['cycles']}")
            for threads in (1, 4):
                for kind, core in _rotated(servers, cycle):
                    result = worker.ask(
                        "sequence", address=addresses[kind, core], threads=threads, seconds=settings["slice"]
                    )
                    unary[kind, core, threads].append(result)
        for number in range(settings["rounds"]):
            progress(f"parts 2, 3 and 5, batches, watch and embedded: round {number + 1} of {settings['rounds']}")
            for core in _rotated(CORES, number):
                address = addresses["remotecalc", core]
                applies[core].append(worker.ask("apply", address=address, seconds=settings["apply"]))
                for batch in worker.ask("batches", address=address, sizes=BATCH_SIZES, seconds=settings["batch"]):
                    batches[core, batch["batch_size"]].append(batch)
                for size in (0, 100):
                    watch = worker.ask("watch", address=address, seconds=settings["watch"], batch_size=size)
                    watches[core, size].append(watch)
                embedded[core].append(worker.ask("embedded", core=core, seconds=settings["embedded"]))
        worker.ask("close_channels")
    finally:
        for child in children.values():
            child.close()
    unary_rows: list[dict[str, Any]] = []
    for (kind, core, threads), results in unary.items():
        row = {"server": kind, "core": core, "threads": threads, **_combine(results)}
        row["vs_baseline"] = _paired_ratio(results, unary["baseline", core, threads])
        row["vs_floor"] = _paired_ratio(results, unary["floor", core, threads])
        unary_rows.append(row)
    batch_rows: list[dict[str, Any]] = []
    for (core, size), results in batches.items():
        with_ops = [{"ops": r["calls"] * size, **r} for r in results]
        batch_rows.append({"core": core, "batch_size": size, **_combine(with_ops, "ops"), **_combine(with_ops)})
    apply_rows: list[dict[str, Any]] = [{"core": core, **_combine(results)} for core, results in applies.items()]
    for batch_row in batch_rows:
        unary_apply = _find(apply_rows, core=batch_row["core"])["calls_per_s"]
        batch_row["vs_unary_apply"] = batch_row["ops_per_s"] / unary_apply
    watch_rows: list[dict[str, Any]] = []
    for (core, size), results in watches.items():
        seconds = sum(r["seconds"] for r in results)
        watch_rows.append(
            {
                "core": core,
                "ops_per_call": size or 1,
                "rpc": "ApplyBatch" if size else "Apply",
                "applied_calls_per_s": sum(r["applied_calls_per_s"] * r["seconds"] for r in results) / seconds,
                "updates_per_s": sum(r["updates"] for r in results) / seconds,
                "steps_per_s": sum(r["steps_per_s"] * r["seconds"] for r in results) / seconds,
            }
        )
    embedded_rows = [{"core": core, **_combine(results)} for core, results in embedded.items()]
    return {
        "unary": unary_rows,
        "unary_apply": apply_rows,
        "batches": batch_rows,
        "watch": watch_rows,
        "embedded": embedded_rows,
    }


def sessions(worker: Child, settings: dict[str, Any]) -> dict[str, Any]:
    """Part 4: RSS per live session, and Apply calls per second beside 1 and beside N live sessions."""
    count = settings["sessions"]
    progress(f"part 4, sessions: opening {count:,} sessions")
    few = start_server_process("remotecalc", DEFAULT_CORE, sessions=0)
    many = start_server_process("remotecalc", DEFAULT_CORE, sessions=count)
    try:
        few_report, many_report = few.read(), many.read()
        rates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for number in range(settings["session_rounds"]):
            progress(f"part 4, Apply beside {count:,} sessions: round {number + 1} of {settings['session_rounds']}")
            for name in _rotated(("few", "many"), number):
                address = (few_report if name == "few" else many_report)["address"]
                rates[name].append(worker.ask("apply", address=address, seconds=settings["session_apply"]))
        worker.ask("close_channels")
        tail = sweep_tail(worker, settings, few_report["address"])
    finally:
        few.close()
        many.close()
    grown = many_report["rss_after"] - many_report["rss_before"]
    one, lots = _combine(rates["few"]), _combine(rates["many"])
    return {
        "core": DEFAULT_CORE,
        "how": "sessions opened with MemoryStore.create() inside the server process, after it served a first call",
        "live_sessions": many_report["sessions"],
        "create_seconds": many_report["create_seconds"],
        "rss_before_mb": many_report["rss_before"] / 2**20,
        "rss_mb": many_report["rss_after"] / 2**20,
        "rss_one_session_mb": few_report["rss_after"] / 2**20,
        "bytes_per_session": grown / count,
        "rss_at_1m_mb": (many_report["rss_before"] + grown / count * 1_000_000) / 2**20,
        "apply_per_s_one": one["calls_per_s"],
        "apply_per_s_many": lots["calls_per_s"],
        "p50_ms_one": one["p50_ms"],
        "p50_ms_many": lots["p50_ms"],
        "many_vs_one": _paired_ratio(rates["many"], rates["few"]),
        **tail,
    }


def sweep_tail(worker: Child, settings: dict[str, Any], one_address: str) -> dict[str, Any]:
    """Apply's latency, p50, p99 and max, beside N sessions that all expire during the window, and beside 1."""
    count = settings["sessions"]
    expiring = start_server_process("remotecalc", DEFAULT_CORE, sessions=count, expire_after=settings["expire_after"])
    try:
        address = expiring.read()["address"]
        swept = worker.ask("apply_latency", address=address, seconds=settings["sweep_window"])
        sweep = expiring.read()
        one = worker.ask("apply_latency", address=one_address, seconds=settings["sweep_window"])
        worker.ask("close_channels")
    finally:
        expiring.close()
    return {
        "sweep_expired": sweep["expired"],
        "sweep_seconds": sweep["until_swept_seconds"],
        "sweep_window_s": swept["seconds"],
        "tail_calls": swept["calls"],
        "tail_p50_ms": swept["p50_ms"],
        "tail_p99_ms": swept["p99_ms"],
        "tail_max_ms": swept["max_ms"],
        "one_p50_ms": one["p50_ms"],
        "one_p99_ms": one["p99_ms"],
        "one_max_ms": one["max_ms"],
    }


def _paired_ratio(results: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """The median over rounds of one rate over another measured beside it in the same round."""
    return float(
        statistics.median(r["calls_per_s"] / o["calls_per_s"] for r, o in zip(results, reference, strict=True))
    )


def _find(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    return next(row for row in rows if all(row[key] == value for key, value in where.items()))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print its table, and write its JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every part briefly (well under 30 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="write the tables as a Markdown page to PATH (docs/benchmark-results.md)",
    )
    args = parser.parse_args(argv)
    settings = settings_for(quick=args.quick)
    started = time.perf_counter()
    progress("starting the servers and the load generator (a full run takes about six minutes)")
    worker = start_worker_process()
    try:
        results: dict[str, Any] = {"settings": {"quick": args.quick, "default_core": DEFAULT_CORE, **settings}}
        results.update(unary_and_more(worker, settings))
        results["sessions"] = sessions(worker, settings)
        results.update(redis_store(worker, settings, progress))
        results.update(tls(worker, settings, progress))
    finally:
        worker.close()
    results.update(callers(settings, progress))
    results.update(floors(settings, progress))
    results["cores"] = cores(results)
    results["goals"] = goals(results)
    results["settings"]["total_seconds"] = time.perf_counter() - started
    results["machine"] = machine()
    tables = render(results)
    print(tables)
    if args.results is not None:
        args.results.write_text(results_page(tables, results["machine"], list(argv or sys.argv[1:])))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

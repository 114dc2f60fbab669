"""The benchmark still runs: `benchmarks/run.py --quick` prints every part and writes sane JSON.

These tests check shape and sanity (every rate positive), never a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = (
    "1. Unary",
    "2. Batches",
    "3. Watch",
    "4. Sessions",
    "5. Embedded",
    "6. Core",
    "7. Redis store",
    "bytes per session in Redis",
    "8. Watch latency",
    "9. Concurrent callers",
    "10. TLS",
    "new connection: time to the first reply",
    "11. The floors",
    "Goals",
)


@pytest.fixture(scope="module")
def run_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the `--quick` run writes its JSON and its results page."""
    return tmp_path_factory.mktemp("benchmark")


@pytest.fixture(scope="module")
def quick_run(run_directory: Path) -> tuple[str, dict[str, Any], str]:
    """The table, the JSON and the progress lines of one `--quick` run, shared by this module's tests."""
    path = run_directory / "results.json"
    page = run_directory / "results.md"
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(path), "--results", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout, json.loads(path.read_text()), finished.stderr


def test_the_table_has_every_part(quick_run: tuple[str, dict[str, Any], str]) -> None:
    table, _, _ = quick_run
    for part in PARTS:
        assert part in table
    for server in ("remotecalc", "baseline", "floor"):
        assert server in table


def test_unary_measures_every_server_on_both_cores_with_1_and_4_threads(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    measured = {(row["server"], row["core"], row["threads"]) for row in results["unary"]}
    assert measured == {(s, c, t) for s in ("remotecalc", "baseline", "floor") for c in ("sync", "aio") for t in (1, 4)}
    for row in results["unary"]:
        assert row["calls_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["vs_baseline"] > 0 and row["vs_floor"] > 0
        if row["server"] == "baseline":
            assert row["vs_baseline"] == 1.0


def test_batches_watch_embedded_and_cores_have_positive_rates(quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    assert {(row["core"], row["batch_size"]) for row in results["batches"]} == {
        (core, size) for core in ("sync", "aio") for size in (1, 10, 100, 1_000, 10_000)
    }
    assert all(row["ops_per_s"] > 0 and row["vs_unary_apply"] > 0 for row in results["batches"])
    assert all(row["calls_per_s"] > 0 for row in results["unary_apply"])
    assert {(row["core"], row["rpc"]) for row in results["watch"]} == {
        (core, rpc) for core in ("sync", "aio") for rpc in ("Apply", "ApplyBatch")
    }
    assert all(row["updates_per_s"] > 0 and row["steps_per_s"] >= row["updates_per_s"] for row in results["watch"])
    assert {row["core"] for row in results["embedded"]} == {"sync", "aio"}
    assert all(row["calls_per_s"] > 0 and row["p50_ms"] > 0 for row in results["embedded"])
    assert len(results["cores"]) == 6
    assert all(row["sync"] > 0 and row["aio"] > 0 for row in results["cores"])


def test_sessions_are_counted_in_the_server_that_holds_them(quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    sessions = results["sessions"]
    assert sessions["live_sessions"] >= results["settings"]["sessions"]
    assert "MemoryStore.create" in sessions["how"]
    assert sessions["bytes_per_session"] > 0
    assert sessions["rss_mb"] > sessions["rss_before_mb"] > 0
    assert sessions["apply_per_s_one"] > 0 and sessions["apply_per_s_many"] > 0


def test_apply_latency_is_reported_over_a_window_in_which_the_sweeper_expires_every_session(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    table, results, _ = quick_run
    sessions = results["sessions"]
    assert sessions["sweep_expired"] >= results["settings"]["sessions"]
    assert 0 < sessions["sweep_seconds"] < sessions["sweep_window_s"]
    assert 0 < sessions["tail_p50_ms"] <= sessions["tail_p99_ms"] <= sessions["tail_max_ms"]
    assert 0 < sessions["one_p50_ms"] <= sessions["one_p99_ms"] <= sessions["one_max_ms"]
    assert "tail_max_ms" in table


def test_every_goal_is_reported_with_its_verdict(quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, results, _ = quick_run
    goals = results["goals"]
    assert len(goals) == 18
    assert all(isinstance(goal["met"], bool) and goal["value"] > 0 for goal in goals)
    names = " / ".join(goal["goal"] for goal in goals)
    for wanted in ("Redis appendfsync everysec / memory", "Redis appendfsync always / memory", "Watch p99"):
        assert wanted in names
    assert {goal["target"] for goal in goals} >= {0.6, 0.4, 500_000, 1_500_000, 600, 5.0}


def test_a_run_says_which_part_runs_while_it_runs(quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, _, progress = quick_run
    for part in (
        "part 1, unary calls: cycle 1 of 1",
        "parts 2, 3 and 5",
        "part 4, sessions: opening",
        "part 7, Redis store: round 1 of 1",
        "part 7, bytes per session in Redis",
        "part 8, Watch latency, 8 watchers at 500 updates/s: redis always",
        "part 9, concurrent callers: round 1 of 1",
        "part 10, TLS against plaintext: round 1 of 1",
    ):
        assert part in progress
    assert "Traceback" not in progress


def test_the_redis_store_is_measured_beside_memory_with_the_cpu_of_server_and_redis(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    rows = {row["server"]: row for row in results["redis"]}
    assert set(rows) == {"memory", "redis everysec", "redis always"}
    assert rows["memory"]["vs_memory"] == 1.0 and rows["memory"]["batch_vs_memory"] == 1.0
    for name, row in rows.items():
        assert row["apply_calls_per_s"] > 0 and row["batch_1000_ops_per_s"] > 0 and row["vs_memory"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["server_cpu_us_per_call"] > 0
        # The in-memory server has no Redis to spend CPU in; a Redis-backed one does.
        assert (row["redis_cpu_us_per_call"] > 0) is (name != "memory"), row


def test_bytes_per_session_grow_with_its_steps_under_each_stream_node_setting(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    sizes = results["session_bytes"]
    # Redis's default first (the stream's first node preallocated at 4 KB), then the smaller nodes tried.
    assert (sizes[0]["node_max_bytes"], sizes[0]["node_max_entries"]) == (4096, 100)
    assert len(sizes) >= 2
    for row in sizes:
        assert 0 < row["new"] < row["after_1"] < row["after_100"], row
    # A smaller first node costs a changed session fewer bytes: what the README recommends rests on it.
    assert sizes[0]["after_1"] > min(row["after_1"] for row in sizes[1:])


def test_every_watcher_receives_every_step_and_its_latency_is_reported(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    watches = {row["server"]: row for row in results["watch_latency"]}
    assert set(watches) == {"memory", "redis everysec", "redis always"}
    for row in watches.values():
        assert row["watchers"] == 8 and row["target_per_s"] == 500
        assert row["deliveries"] > 0 and row["missing"] == 0, row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_unary_calls_are_measured_at_1_4_and_64_callers_on_each_core_and_worker_count(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    servers = ("memory sync", "memory aio", "redis 1 process", "redis --workers 2")
    assert {(row["server"], row["callers"]) for row in results["callers"]} == {
        (server, count) for server in servers for count in (1, 4, 64)
    }
    assert all(row["calls_per_s"] > 0 for row in results["callers"])
    assert [row["callers"] for row in results["callers_ratios"]] == [1, 4, 64]
    for row in results["callers_ratios"]:
        assert row["aio_vs_sync"] > 0 and row["workers_2_vs_1"] > 0 and row["redis_vs_memory"] > 0


def test_tls_and_mutual_tls_are_measured_beside_plaintext_at_1_and_8_callers_and_per_new_connection(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, _ = quick_run
    servers = ("plaintext", "TLS", "mutual TLS", "TLS, RSA 2048", "TLS and tokens")
    assert [(row["server"], row["callers"]) for row in results["tls"]] == [(s, n) for n in (1, 8) for s in servers]
    for row in results["tls"]:
        assert row["calls_per_s"] > 0 and row["vs_plaintext"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], row
        if row["server"] == "plaintext":
            assert row["vs_plaintext"] == 1.0
    assert [row["server"] for row in results["tls_connect"]] == list(servers)
    for row in results["tls_connect"]:
        assert row["connections"] == results["settings"]["tls_connections"]
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["p50_vs_plaintext"] > 0, row
    assert results["tls_reload_check_us"] > 0


def test_run_outside_the_virtual_environment_says_which_python_to_use() -> None:
    # -S leaves site-packages out, as a system Python without remotecalc installed would.
    finished = subprocess.run(
        [sys.executable, "-S", str(ROOT / "benchmarks" / "run.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert ".venv/bin/python benchmarks/run.py" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_notebook_in_notebooks_imports_the_measurements_it_charts() -> None:
    program = """
import json, sys
sys.path.insert(0, "..")
import remotecalc
from benchmarks.measure import measure_batches, measure_unary_latency
with remotecalc.start_server(port=0) as server:
    rows = measure_batches(server.address, [1, 10], seconds=0.05)
    latencies = measure_unary_latency(server.address, 5)
print(json.dumps({"rows": rows, "latencies": latencies}))
"""
    finished = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT / "notebooks", capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    measured = json.loads(finished.stdout)
    assert [row["batch_size"] for row in measured["rows"]] == [1, 10]
    assert all(row["ops_per_s"] > 0 and row["calls"] >= 3 for row in measured["rows"])
    assert len(measured["latencies"]) == 5 and all(latency > 0 for latency in measured["latencies"])


def test_remotecalc_is_measured_beside_both_empty_handler_floors_at_1_4_and_64_callers(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    _, results, progress = quick_run
    servers = ("floor sync", "floor aio", "remotecalc sync", "remotecalc aio")
    assert [(row["server"], row["callers"]) for row in results["floors"]] == [
        (server, count) for count in (1, 4, 64) for server in servers
    ]
    for row in results["floors"]:
        assert row["calls_per_s"] > 0 and row["vs_floor"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    for count in (1, 4, 64):
        floors = [row for row in results["floors"] if row["callers"] == count and row["server"].startswith("floor")]
        # The fastest floor of each round is the reference: with one round, one floor is exactly 1.0.
        assert max(row["vs_floor"] for row in floors) == 1.0
    assert "part 11, the floors: round 1 of 1" in progress


def test_the_results_page_holds_the_printed_tables_and_the_machine_they_ran_on(
    quick_run: tuple[str, dict[str, Any], str], run_directory: Path
) -> None:
    table, results, _ = quick_run
    page = (run_directory / "results.md").read_text()
    assert page.startswith("# Benchmark results\n")
    assert "`python benchmarks/run.py --quick --json " in page
    assert f"{results['machine']['cores']} cores" in page and f"grpcio {results['machine']['grpcio']}" in page
    assert table.strip() in page  # the tables as printed, not retyped

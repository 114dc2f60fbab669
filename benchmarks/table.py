"""The benchmark's results as text tables, the goals they meet, and the two cores side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RECOMMENDED_NODE_BYTES", "cores", "goals", "render", "render_floors", "render_tls"]

#: The stream-node-max-bytes the README recommends: a changed session's first node costs an eighth of
#: the default's, while 100 steps take about as many bytes as with the default (smaller nodes cost more).
RECOMMENDED_NODE_BYTES = 512


def _find(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    return next(row for row in rows if all(row[key] == value for key, value in where.items()))


def cores(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each load's rate on the sync and on the aio core."""
    loads = []
    for threads in (1, 4):
        loads.append(
            (
                f"unary, article's 6 calls, {threads} thread(s), calls/s",
                "unary",
                {"server": "remotecalc", "threads": threads},
                "calls_per_s",
            )
        )
    loads.append(("unary v1 Apply, 1 thread, calls/s", "unary_apply", {}, "calls_per_s"))
    loads.append(("ApplyBatch of 1,000, ops/s", "batches", {"batch_size": 1_000}, "ops_per_s"))
    loads.append(("watch while Apply, updates/s", "watch", {"ops_per_call": 1}, "updates_per_s"))
    loads.append(("embedded, Client's 6 calls, calls/s", "embedded", {}, "calls_per_s"))
    rows = []
    for name, part, where, key in loads:
        sync = _find(results[part], core="sync", **where)[key]
        aio = _find(results[part], core="aio", **where)[key]
        rows.append({"load": name, "sync": sync, "aio": aio, "aio_vs_sync": aio / sync})
    return rows


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured value, on the default core."""
    core = results["settings"]["default_core"]
    found = []
    for threads in (1, 4):
        row = _find(results["unary"], server="remotecalc", core=core, threads=threads)
        found.append((f"unary {threads} thread(s): remotecalc / baseline", row["vs_baseline"], 1.0))
        found.append((f"unary {threads} thread(s): remotecalc / floor", row["vs_floor"], 0.95))
    batch = _find(results["batches"], core=core, batch_size=1_000)
    found.append(("ApplyBatch of 1,000: ops/s", batch["ops_per_s"], 500_000))
    found.append(("ApplyBatch of 1,000: ops/s / unary Apply calls/s", batch["vs_unary_apply"], 200))
    found.append(("ApplyBatch of 1,000 in memory: ops/s (raised goal)", batch["ops_per_s"], 1_500_000))
    sessions = results["sessions"]
    found.append(("RSS at 1,000,000 live sessions, MB (at most)", sessions["rss_at_1m_mb"], 512))
    found.append(("Apply/s beside 1,000,000 sessions / beside 1", sessions["many_vs_one"], 0.9))
    for fsync, target in (("everysec", 0.6), ("always", 0.4)):
        row = _find(results["redis"], server=f"redis {fsync}")
        found.append((f"unary Apply, Redis appendfsync {fsync} / memory", row["vs_memory"], target))
    for fsync in ("everysec", "always"):
        row = _find(results["redis"], server=f"redis {fsync}")
        found.append((f"ApplyBatch of 1,000, Redis {fsync}: ops/s", row["batch_1000_ops_per_s"], 500_000))
    default = results["session_bytes"][0]
    recommended = _find(results["session_bytes"], node_max_bytes=RECOMMENDED_NODE_BYTES)
    found.append(("bytes per session in Redis after 1 Apply, default stream node (at most)", default["after_1"], 600))
    found.append((f"  the same, stream-node-max-bytes {RECOMMENDED_NODE_BYTES} (at most)", recommended["after_1"], 600))
    for watch in results["watch_latency"]:
        found.append((f"Watch p99 ms, 8 watchers at 500/s, {watch['server']} (at most)", watch["p99_ms"], 5.0))
    rows = []
    for name, value, target in found:
        met = value <= target if "at most" in name else value >= target
        rows.append({"goal": name, "value": value, "target": target, "met": met})
    return rows


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def _table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_number(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [all(isinstance(row[c], (int, float)) and not isinstance(row[c], bool) for row in rows) for c in columns]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for line in cells:
        justified = [c.rjust(w) if n else c.ljust(w) for c, w, n in zip(line, widths, numeric, strict=True)]
        lines.append("  ".join(justified).rstrip())
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """Every part of the benchmark as text tables."""
    settings = results["settings"]
    sessions = results["sessions"]
    unary = sorted(results["unary"], key=lambda r: (r["core"] != "sync", r["threads"], r["server"]))
    parts = [
        f"remotecalc benchmark ({'quick' if settings['quick'] else 'full'}, unary: {settings['cycles']} cycle(s) of "
        f"{settings['slice']} s per server, other parts: {settings['rounds']} round(s), "
        f"default core {settings['default_core']}, {settings.get('total_seconds', 0):.0f} s)",
        _table(
            "1. Unary: the article's six calls (Create, Add, Subtract, Multiply, Divide, Answer) in a loop per thread;"
            " vs_*: median over cycles of the ratio to the server measured beside it",
            unary,
            ["server", "core", "threads", "calls_per_s", "p50_ms", "p99_ms", "vs_baseline", "vs_floor"],
        ),
        _table(
            "2. Batches: remotecalc.v1 ApplyBatch, one session, 1 thread (vs_unary_apply: ops/s / Apply calls/s)",
            sorted(results["batches"], key=lambda r: (r["core"] != "sync", r["batch_size"])),
            ["core", "batch_size", "ops_per_s", "calls_per_s", "p50_ms", "p99_ms", "vs_unary_apply"],
        ),
        _table(
            "   unary remotecalc.v1 Apply, 1 thread",
            results["unary_apply"],
            ["core", "calls_per_s", "p50_ms", "p99_ms"],
        ),
        _table(
            "3. Watch: updates delivered to a watcher while another client applies operations",
            results["watch"],
            ["core", "rpc", "ops_per_call", "applied_calls_per_s", "updates_per_s", "steps_per_s"],
        ),
        _table(
            f"4. Sessions: {sessions['how']}",
            [sessions],
            ["core", "live_sessions", "create_seconds", "rss_before_mb", "rss_mb", "bytes_per_session", "rss_at_1m_mb"],
        ),
        _table(
            "   Apply calls/s, 1 thread, beside 1 live session and beside the many",
            [sessions],
            ["apply_per_s_one", "apply_per_s_many", "p50_ms_one", "p50_ms_many", "many_vs_one"],
        ),
        _table(
            f"   Apply latency, 1 thread, over {sessions['sweep_window_s']:.1f} s in which the sweeper expires"
            f" {sessions['sweep_expired']:,} idle sessions at once (tail_*), and beside 1 session (one_*)",
            [sessions],
            [
                "sweep_seconds",
                "tail_p50_ms",
                "tail_p99_ms",
                "tail_max_ms",
                "one_p50_ms",
                "one_p99_ms",
                "one_max_ms",
            ],
        ),
        _table(
            "5. Embedded: remotecalc's Client and server in one process, the six calls",
            results["embedded"],
            ["core", "calls_per_s", "p50_ms", "p99_ms"],
        ),
        _table(
            "6. Core: sync grpcio against grpc.aio, same loads",
            results["cores"],
            ["load", "sync", "aio", "aio_vs_sync"],
        ),
        _table(
            "7. Redis store: unary v1 Apply (1 thread) and ApplyBatch of 1,000 through a server on Redis (AOF,"
            " appendfsync as named) against the in-memory server, sync core; CPU per Apply call of the server"
            " process and of redis-server; vs_memory: median over rounds of the paired ratio",
            results["redis"],
            [
                "server",
                "apply_calls_per_s",
                "p50_ms",
                "p99_ms",
                "vs_memory",
                "batch_1000_ops_per_s",
                "batch_vs_memory",
                "server_cpu_us_per_call",
                "redis_cpu_us_per_call",
            ],
        ),
        _table(
            "   bytes per session in Redis (MEMORY USAGE of its keys): new, after 1 Apply, after 100;"
            " by stream-node-max-bytes and -entries",
            results["session_bytes"],
            ["node_max_bytes", "node_max_entries", "new", "after_1", "after_100"],
        ),
        _table(
            "8. Watch latency: from the Apply that made a step (sent) to each of 8 watchers receiving it,"
            " Apply paced at 500/s, watchers and writer in one load process",
            results["watch_latency"],
            ["server", "watchers", "applied_per_s", "deliveries", "missing", "p50_ms", "p99_ms", "max_ms"],
        ),
        _table(
            "9. Concurrent callers: unary Apply (the Python client's add), each caller its own client;"
            " callers and servers share the machine's cores",
            results["callers"],
            ["server", "callers", "calls_per_s"],
        ),
        _table(
            "   ratios (median over rounds of the paired ratio): aio / sync in memory,"
            " --workers 2 / 1 process on Redis, 1 process on Redis / in memory",
            results["callers_ratios"],
            ["callers", "aio_vs_sync", "workers_2_vs_1", "redis_vs_memory"],
        ),
        render_tls(results),
        render_floors(results),
        _table("Goals (on the default core)", results["goals"], ["goal", "value", "target", "met"]),
    ]
    return "\n\n".join(parts)


def render_tls(results: dict[str, Any]) -> str:
    """Part 10's two tables: unary Apply over TLS against plaintext, and the cost of a new connection."""
    return "\n\n".join(
        [
            _table(
                "10. TLS: unary v1 Apply against plaintext, sync core, each caller its own connection (handshake done"
                " before timing), ECDSA P-256 keys unless named, tokens: a bearer token on every call;"
                " vs_plaintext: median over rounds of the paired ratio",
                results["tls"],
                ["server", "callers", "calls_per_s", "p50_ms", "p99_ms", "max_ms", "vs_plaintext"],
            ),
            _table(
                "    new connection: time to the first reply on a fresh channel (connect, full handshake, one Apply);"
                f" the server's check for changed certificate files costs {results['tls_reload_check_us']:.1f} us"
                " per handshake",
                results["tls_connect"],
                ["server", "connections", "p50_ms", "p99_ms", "max_ms", "p50_vs_plaintext"],
            ),
        ]
    )


def render_floors(results: dict[str, Any]) -> str:
    """Part 11's table: remotecalc on each core beside the empty-handler floors."""
    return _table(
        "11. The floors: the article's six calls again and again, each caller its own connection; a floor is a"
        " bare grpcio server whose handlers return constants; vs_floor: median over rounds of the paired"
        " ratio to the faster floor",
        results["floors"],
        ["server", "callers", "calls_per_s", "p50_ms", "p99_ms", "max_ms", "vs_floor"],
    )

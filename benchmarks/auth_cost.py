"""What bearer tokens cost a unary call: Apply on loopback, sync core, without auth and with tokens, same run.

Rounds alternate between the two servers so that a busy machine slows both alike; compare the ratio.
Run: .venv/bin/python benchmarks/auth_cost.py
"""

from __future__ import annotations

import statistics
import time

import remotecalc
from remotecalc import AuthTokens, new_token

ROUNDS = 20
CALLS = 500


def main() -> None:
    """Print the median microseconds per Apply of each server and their ratio."""
    tokens = {f"caller{number}": new_token() for number in range(10)}
    plain = remotecalc.start_server(port=0, clock=lambda: 0.0)
    guarded = remotecalc.start_server(port=0, clock=lambda: 1.0, auth_tokens=AuthTokens(tokens))
    sessions = {
        "no auth": remotecalc.connect(plain).create(0),
        "tokens": remotecalc.connect(guarded, auth_token=tokens["caller9"]).create(0),
    }
    results: dict[str, list[float]] = {name: [] for name in sessions}
    for round_number in range(ROUNDS):
        order = list(sessions) if round_number % 2 else list(reversed(sessions))
        for name in order:
            session = sessions[name]
            start = time.perf_counter()
            for _ in range(CALLS):
                session.add(1)
            results[name].append((time.perf_counter() - start) / CALLS * 1e6)
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, median in medians.items():
        print(f"{name:8s} median of {ROUNDS} rounds: {median:.0f} us per Apply")
    print(f"ratio tokens / no auth: {medians['tokens'] / medians['no auth']:.2f}")
    plain.stop()
    guarded.stop()


if __name__ == "__main__":
    main()

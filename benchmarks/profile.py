"""Profile a benchmark server under load with py-spy, and print where its time goes.

    python benchmarks/profile.py [--kind remotecalc] [--core sync] [--load sequence|batches|apply] [--seconds 10]

py-spy (`pip install py-spy`) must run as root. The raw stacks are kept in --out for a flame graph.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.processes import start_server_process, start_worker_process


def summarize(stacks: Path, top: int) -> str:
    """Self and inclusive share of samples per function, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        names = [frame.split(" (")[0] + " " + frame.rpartition("/")[2].split(":")[0] for frame in frames.split(";")]
        own[names[-1]] += samples
        for name in set(names):
            inclusive[name] += samples
    lines = [f"{total} samples", "self%   incl%   function"]
    for name, samples in own.most_common(top):
        lines.append(f"{100 * samples / total:5.1f}  {100 * inclusive[name] / total:6.1f}   {name}")
    lines += ["", "inclusive, top:"]
    for name, samples in inclusive.most_common(top):
        lines.append(f"{100 * samples / total:5.1f}   {name}")
    return "\n".join(lines)


def main() -> None:
    """Load one server from the worker while py-spy samples it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="remotecalc")
    parser.add_argument("--core", default="sync")
    parser.add_argument("--load", choices=("sequence", "batches", "apply"), default="sequence")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("/tmp/remotecalc-profile.txt"))
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    server = start_server_process(args.kind, args.core)
    worker = start_worker_process()
    try:
        address, pid = (reply := server.read())["address"], reply["pid"]
        record = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "500", "--nonblocking", "--gil"]
        record += ["--duration", str(int(args.seconds)), "--output", str(args.out)]
        spy = threading.Thread(target=subprocess.run, args=(record,), kwargs={"check": True, "capture_output": True})
        spy.start()
        if args.load == "sequence":
            result = worker.ask("sequence", address=address, threads=args.threads, seconds=args.seconds)
        elif args.load == "apply":
            result = worker.ask("apply", address=address, seconds=args.seconds)
        else:
            result = worker.ask("batches", address=address, sizes=[args.batch_size], seconds=args.seconds)
        spy.join()
    finally:
        worker.close()
        server.close()
    print(result)
    print(summarize(args.out, args.top))


if __name__ == "__main__":
    main()

"""Torch threads for small PINN problems, on an idle machine and beside a busy process.

    python benchmarks/threads.py --out docs/threads_table.md

Each cell is a ``pinnopt solve`` in a fresh process with ``--threads T``, timed
by the run's own wall_time_s (training only, imports and plots excluded), on an
idle machine and while a neighbour process spins on one core (a pure-Python
busy loop: what another user's job does to a shared 2-core machine). The
median over ``--rounds`` is reported. ``threads = 0`` is PyTorch's default, one
thread per core. This is the measurement behind the default ``threads = 1``
of ``pinnopt solve`` (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# (label, solve arguments): the demo and a first-order run, both small
CASES = {
    "demo (poisson2d, gn, 2-32-1, 2000 steps)": [
        "poisson2d", "--optimizer", "gn", "--depth", "1", "--steps", "2000"],
    "poisson2d, adam, 2-32-32-1, 2000 steps": [
        "poisson2d", "--optimizer", "adam", "--steps", "2000"],
}  # fmt: skip
SMOKE_CASES = {"smoke (poisson1d, adam, 20 steps)": ["poisson1d", "--optimizer", "adam",
                                                     "--steps", "20", "--width", "8"]}  # fmt: skip
BUSY_LOOP = "while True:\n    pass\n"


def solve_seconds(args: list[str], threads: int, folder: Path) -> float:
    """wall_time_s of one ``pinnopt solve`` in a fresh process."""
    out = folder / f"run{len(list(folder.iterdir()))}"
    command = [sys.executable, "-m", "pinnopt.cli", "solve", *args, "--threads", str(threads),
               "--quiet", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())["wall_time_s"]


def measure(cases: dict[str, list[str]], threads: list[int], rounds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, args in cases.items():
            for busy in (False, True):
                neighbour = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
                try:
                    for t in threads:
                        times = [solve_seconds(args, t, Path(tmp)) for _ in range(rounds)]
                        rows.append({"case": label, "neighbour": "busy" if busy else "idle",
                                     "threads": t, "seconds": statistics.median(times),
                                     "all": times})  # fmt: skip
                        print(rows[-1], flush=True)
                finally:
                    if neighbour is not None:
                        neighbour.kill()
                        neighbour.wait()
    return rows


def table(rows: list[dict], command: str) -> str:
    lines = [
        f"Measured by `{command}` on {os.cpu_count()} cores ({platform.machine()}); "
        "training seconds (median of rounds), each run in a fresh process.",
        "",
        "| case | neighbour | threads | seconds | rounds |",
        "|---|---|---:|---:|---|",
    ]
    for r in rows:
        t = "default" if r["threads"] == 0 else str(r["threads"])
        rounds = ", ".join(f"{x:.2f}" for x in r["all"])
        lines.append(f"| {r['case']} | {r['neighbour']} | {t} | {r['seconds']:.2f} | {rounds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one tiny case, one round")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    cases = SMOKE_CASES if args.smoke else CASES
    rows = measure(cases, args.threads, 1 if args.smoke else args.rounds)
    command = "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = table(rows, command.strip())
    if args.out:
        args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()

"""Adaptive collocation against fixed points: each method on a few problems with `gn`.

    python benchmarks/sampling.py --jobs 2 --out docs/sampling_table.md

Each problem with each ``[sampling] method`` (fixed, resample, rad, rar_d, r3; period
100 steps, pool 10 × N, the methods' default density), a tanh MLP of width 32 and
depth 2, float64, seed 0, default points, ``gn`` for 6000 steps or ``--time-limit``
seconds, whichever comes first. ``--jobs N`` runs N at a time, one process and one
torch thread each.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

from pinnopt.bench.cells import run_cells
from pinnopt.config import make_config
from pinnopt.solve import solve

METHODS = ["fixed", "resample", "rad", "rar_d", "r3"]


def run_one(problem, method, optimizer, steps, time_limit, period) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(
            {
                "problem": {"name": problem},
                "optim": {"optimizer": optimizer},
                "training": {"steps": steps, "time_limit": time_limit, "threads": 1,
                             "eval_every": 500},
                "sampling": {"method": method, "period": period},
                "output": {"out": str(Path(tmp) / "run"), "quiet": True},
            }
        )  # fmt: skip
        m = solve(cfg)
    m["sampling"] = method
    print(f"{problem:12s} {method:9s} rel_l2 {m['rel_l2']:.3e}  loss {m['final_loss']:.3e}  "
          f"steps {m['steps']}  {m['wall_time_s']:.1f} s  {m['status']}", flush=True)  # fmt: skip
    return m


def table(rows, command) -> str:
    lines = [
        f"Produced by `{command}` on {platform.machine()}, one torch thread per run, "
        f"torch {torch.__version__}, float64.",
        "",
        "| problem | sampling | optimizer | rel_l2 | max abs error | final loss | steps "
        "| wall time (s) | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m['problem']} | {m['sampling']} | {m['optimizer']} | {m['rel_l2']:.2e} | "
            f"{m['max_abs_error']:.2e} | {m['final_loss']:.2e} | {m['steps']} | "
            f"{m['wall_time_s']:.0f} | {m['status']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=["burgers1d", "poisson2d"])
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--optimizer", default="gn")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--period", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    command = "python benchmarks/sampling.py " + " ".join(sys.argv[1:] if argv is None else argv)
    cells = [(p, m, args.optimizer, args.steps, args.time_limit, args.period)
             for p in args.problems for m in args.methods]  # fmt: skip
    rows = run_cells(run_one, cells, args.jobs)
    text = table(rows, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

"""Every registered problem with one optimizer chain: rel_l2, max error, loss and wall time.

    python benchmarks/problems.py                         # adam:2000,lbfgs, 6000 steps, 120 s cap
    python benchmarks/problems.py --out docs/problems.md  # also write the markdown table

The table in docs/problems.md is this script's output. Each problem runs with
its default points and a 2-32-…-1 tanh MLP (depth 2) in float64, seed 0; the
wall-time cap stops a run early (status ``time_limit``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from pinnopt.config import make_config
from pinnopt.problems import PROBLEMS
from pinnopt.solve import solve


def run(problems, optimizer, steps, time_limit, width, depth, seed, threads, quiet=True):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in problems:
            cfg = make_config(
                {
                    "problem": {"name": name},
                    "model": {"width": width, "depth": depth},
                    "optim": {"optimizer": optimizer},
                    "training": {
                        "steps": steps,
                        "time_limit": time_limit,
                        "seed": seed,
                        "threads": threads,
                        "eval_every": 1000,
                    },  # fmt: skip
                    "output": {"out": str(Path(tmp) / name), "quiet": quiet},
                }
            )
            t0 = time.perf_counter()
            m = solve(cfg)
            m["total_s"] = time.perf_counter() - t0
            rows.append(m)
            print(
                f"{name:12s} rel_l2 {m['rel_l2']:.3e}  max|err| {m['max_abs_error']:.3e}  "
                f"loss {m['final_loss']:.3e}  steps {m['steps']}  {m['wall_time_s']:.1f} s  "
                f"{m['status']}",
                flush=True,
            )
    return rows


def table(rows, optimizer, command) -> str:
    lines = [
        f"Optimizer chain `{optimizer}`; produced by `{command}` on "
        f"{platform.machine()} with {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, float64.",
        "",
        "| problem | params | rel_l2 | max abs error | final loss | steps | wall time (s) "
        "| status |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m['problem']} | {m['n_params']} | {m['rel_l2']:.2e} | {m['max_abs_error']:.2e} | "
            f"{m['final_loss']:.2e} | {m['steps']} | {m['wall_time_s']:.1f} | {m['status']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=sorted(PROBLEMS))
    parser.add_argument("--optimizer", default="adam:2000,lbfgs")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.width, args.depth = 12, 8, 1
        args.optimizer = "adam:6,lbfgs"
    command = "python benchmarks/problems.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = run(args.problems, args.optimizer, args.steps, args.time_limit, args.width,
               args.depth, args.seed, args.threads)  # fmt: skip
    text = table(rows, args.optimizer, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

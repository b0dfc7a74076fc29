"""Every registered problem with each optimizer: rel_l2, max error, loss and wall time.

    python benchmarks/problems.py          # adam:2000,lbfgs and gn, 6000 steps, 120 s cap
    python benchmarks/problems.py --jobs 2 --out docs/problems_table.md

The table in docs/problems.md is this script's output. Each problem runs with its
default points and a tanh MLP of width 32 and depth 2 in float64, seed 0, with the
same budget for every optimizer (``--steps`` steps or ``--time-limit`` seconds,
whichever comes first; status ``time_limit`` when the clock stopped it). ``--jobs N``
runs N problems at a time, each in its own process with ``--threads`` torch threads
(the wall times are then of N runs sharing the machine). For a system the
per-component errors, and for an inverse problem the identified parameters' errors,
go in the ``other errors`` column.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from pinnopt.config import make_config
from pinnopt.problems import PROBLEMS
from pinnopt.solve import solve

OPTIMIZERS = ["adam:2000,lbfgs", "gn"]


def run_one(name, optimizer, steps, time_limit, width, depth, seed, threads) -> dict:
    """One solve in a temporary run directory; its metrics plus ``total_s``."""
    with tempfile.TemporaryDirectory() as tmp:
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
                "output": {"out": str(Path(tmp) / "run"), "quiet": True},
            }
        )
        t0 = time.perf_counter()
        m = solve(cfg)
        m["total_s"] = time.perf_counter() - t0
    return m


def other_errors(m: dict) -> str:
    """Per-component rel_l2 of a system and identified parameters' relative errors."""
    parts = [
        f"{k.removeprefix('rel_l2_')} {v:.1e}" for k, v in m.items() if k.startswith("rel_l2_")
    ]
    parts += [
        f"{k.removeprefix('param_').removesuffix('_rel_error')} {v:.1e}"
        for k, v in m.items()
        if k.startswith("param_") and k.endswith("_rel_error")
    ]
    return ", ".join(parts) or "-"


def run(problems, optimizers, steps, time_limit, width, depth, seed, threads, jobs=1):
    cells = [(p, o) for p in problems for o in optimizers]
    args = [(p, o, steps, time_limit, width, depth, seed, threads) for p, o in cells]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_one, *a) for a in args]
            rows = [_report(f.result()) for f in futures]
    else:
        rows = [_report(run_one(*a)) for a in args]
    return rows


def _report(m: dict) -> dict:
    print(
        f"{m['problem']:18s} {m['optimizer']:16s} rel_l2 {m['rel_l2']:.3e}  "
        f"max|err| {m['max_abs_error']:.3e}  [{other_errors(m)}]  loss {m['final_loss']:.3e}  "
        f"steps {m['steps']}  {m['wall_time_s']:.1f} s  {m['status']}",
        flush=True,
    )
    return m


def table(rows, command, threads, jobs) -> str:
    lines = [
        f"Produced by `{command}` on {platform.machine()}, {jobs} run(s) at a time with "
        f"{threads or torch.get_num_threads()} torch thread(s) each, torch {torch.__version__}, "
        "float64.",
        "",
        "| problem | optimizer | params | rel_l2 | max abs error | other errors | final loss "
        "| steps | wall time (s) | status |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m['problem']} | {m['optimizer']} | {m['n_params']} | {m['rel_l2']:.2e} | "
            f"{m['max_abs_error']:.2e} | {other_errors(m)} | {m['final_loss']:.2e} | "
            f"{m['steps']} | {m['wall_time_s']:.1f} | {m['status']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=sorted(PROBLEMS))
    parser.add_argument("--optimizers", nargs="*", default=OPTIMIZERS)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run; 0: default")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.width, args.depth = 12, 8, 1
        args.optimizers = ["adam:6,lbfgs"]
    command = "python benchmarks/problems.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = run(args.problems, args.optimizers, args.steps, args.time_limit, args.width,
               args.depth, args.seed, args.threads, args.jobs)  # fmt: skip
    text = table(rows, command.strip(), args.threads, args.jobs)
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

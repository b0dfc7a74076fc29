"""Adam vs LAdam on the 1-D wave equation: the published LAdam claim, re-measured.

    python benchmarks/ladam_wave.py --jobs 2 --out bench_out/ladam_wave   # 5 seeds × 4 runs
    python benchmarks/ladam_wave.py --smoke --out /tmp/ladam_smoke         # tiny, for the tests

The claim: a 5-layer, 128-unit tanh MLP PINN on the wave equation, trained 5000
steps, reaches L2 error 0.0310 with Adam (lr 1e-3) and 0.0172 with LAdam (c2 = 1e-5).
Here every run is ``pinnopt solve wave1d`` (its default points, exact solution and
rel_l2 on the evaluation grid) with that network, the same lr 1e-3 for both, and
LAdam at each ``--c2``; each (optimizer, seed) starts from the same weights and
points. A run directory that already holds ``metrics.json`` is not run again, so an
interrupted study resumes where it stopped.

Outputs in ``--out``: ``results.csv`` (one row per run), ``results.md`` (mean ± std
over seeds of the final rel_l2, and of the rel_l2 each run had reached at Adam's mean
wall time: the equal-time comparison) and ``wave_error.png`` (mean rel_l2 against
step and against wall time, ± one std shaded). Each run uses ``--threads`` torch
threads; ``--jobs`` runs go side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from pinnopt.config import make_config
from pinnopt.solve import solve

PROBLEM = "wave1d"


def label(c2: float | None) -> str:
    return "adam" if c2 is None else f"ladam c2={c2:g}"


def run_dir(out: Path, c2: float | None, seed: int) -> Path:
    name = "adam" if c2 is None else f"ladam_c2_{c2:g}"
    return out / "runs" / name / f"seed{seed}"


def config(args, c2: float | None, seed: int):
    optim = {"optimizer": "adam", "lr": args.lr}
    if c2 is not None:
        optim = {"optimizer": "ladam", "lr": args.lr, "options": {"ladam": {"c2": c2}}}
    return make_config(
        {
            "problem": {"name": PROBLEM, "points": args.points or {}},
            "model": {"width": args.width, "depth": args.depth},
            "optim": optim,
            "training": {
                "steps": args.steps,
                "seed": seed,
                "dtype": args.dtype,
                "threads": args.threads,
                "eval_every": args.eval_every,
            },
            "output": {"out": str(run_dir(Path(args.out), c2, seed)), "quiet": True},
        }
    )


def run_one(cfg) -> dict:
    out = cfg.out_dir()
    if not (out / "metrics.json").exists():
        solve(cfg, overwrite=True)  # an unfinished run is started again
    return json.loads((out / "metrics.json").read_text())


def read_curve(out: Path, c2: float | None, seed: int) -> list[tuple[int, float, float]]:
    """(step, seconds, rel_l2) at every evaluation of a run."""
    with open(run_dir(out, c2, seed) / "history.csv") as f:
        return [
            (int(r["step"]), float(r["time"]), float(r["rel_l2"]))
            for r in csv.DictReader(f)
            if r.get("rel_l2")
        ]


def error_at(curve: list[tuple[int, float, float]], seconds: float) -> float:
    """rel_l2 at the last evaluation made within ``seconds`` of wall time."""
    within = [e for _, t, e in curve if t <= seconds]
    return within[-1] if within else math.nan


def mean_std(xs: list[float]) -> str:
    if any(math.isnan(x) for x in xs):  # a run that never reached the time mark
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def summarize(args, rows: list[dict]) -> str:
    out = Path(args.out)
    adam_time = statistics.mean(r["wall_time_s"] for r in rows if r["c2"] is None)
    lines = [
        f"`{PROBLEM}`, 2-{'-'.join([str(args.width)] * args.depth)}-1 tanh MLP, "
        f"{args.steps} steps, lr {args.lr:g}, {args.dtype}, seeds 0..{args.seeds - 1}, "
        f"{args.threads} torch thread(s) per run, {args.jobs} run(s) side by side, "
        f"torch {torch.__version__} on {platform.machine()}. Command: `{command(args)}`.",
        "",
        f"Equal time = Adam's mean wall time ({adam_time:.0f} s); the rel_l2 there is the "
        f"last evaluation (every {args.eval_every} steps) within it.",
        "",
        "| optimizer | rel_l2 after all steps | rel_l2 at equal time | wall time (s) | s/step |",
        "|---|---:|---:|---:|---:|",
    ]
    for c2 in [None, *args.c2]:
        mine = [r for r in rows if r["c2"] == c2]
        final = [r["rel_l2"] for r in mine]
        equal = [error_at(read_curve(out, c2, r["seed"]), adam_time) for r in mine]
        seconds = statistics.mean(r["wall_time_s"] for r in mine)
        lines.append(
            f"| {label(c2)} | {mean_std(final)} | {mean_std(equal)} | {seconds:.0f} | "
            f"{seconds / args.steps:.4f} |"
        )
    return "\n".join(lines) + "\n"


def plot(args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(args.out)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for c2 in [None, *args.c2]:
        curves = [read_curve(out, c2, s) for s in range(args.seeds)]
        n = min(len(c) for c in curves)
        steps = np.array([c[i][0] for c in curves[:1] for i in range(n)])
        seconds = np.array([[c[i][1] for i in range(n)] for c in curves]).mean(axis=0)
        errors = np.log10(np.array([[c[i][2] for i in range(n)] for c in curves]))
        mean, std = errors.mean(axis=0), errors.std(axis=0)
        for ax, x in zip(axes, (steps, seconds)):
            (line,) = ax.plot(x, 10**mean, label=label(c2))
            ax.fill_between(x, 10 ** (mean - std), 10 ** (mean + std), alpha=0.2,
                            color=line.get_color())  # fmt: skip
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall time (s)")
    axes[0].set_ylabel("rel_l2 (geometric mean ± 1 std over seeds)")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{PROBLEM}: Adam vs LAdam, {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def command(args) -> str:
    return "python benchmarks/ladam_wave.py " + " ".join(args.argv)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--c2", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="bench_out/ladam_wave")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 20 steps, a 2-8-8-1 net")
    args = parser.parse_args(argv)
    args.argv = argv
    args.points = None
    if args.smoke:
        args.seeds, args.steps, args.width, args.depth, args.eval_every = 2, 20, 8, 2, 10
        args.points = {"pde": 50, "bc": 10, "ic": 10, "ic_t": 10}
    if args.seeds < 2:
        parser.error("--seeds: need at least 2 for a std")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    cells = [(c2, seed) for seed in range(args.seeds) for c2 in [None, *args.c2]]
    configs = [config(args, c2, seed) for c2, seed in cells]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            metrics = list(pool.map(run_one, configs))
    else:
        metrics = [run_one(cfg) for cfg in configs]
    rows = []
    for (c2, seed), m in zip(cells, metrics):
        rows.append({"optimizer": label(c2), "c2": c2, "seed": seed, "rel_l2": m["rel_l2"],
                     "wall_time_s": m["wall_time_s"], "steps": m["steps"]})  # fmt: skip
        print(f"{label(c2):16s} seed {seed}  rel_l2 {m['rel_l2']:.4f}  {m['wall_time_s']:.0f} s")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = summarize(args, rows)
    (out / "results.md").write_text(text)
    plot(args, out / "wave_error.png")
    print(text)
    return rows


if __name__ == "__main__":
    main()

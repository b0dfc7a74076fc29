"""Multi-stage training against the single network it starts from: rel_l2 and wall time.

    python benchmarks/multistage.py --threads 1                  # poisson2d, gn, 2-32-1, 2000 steps
    python benchmarks/multistage.py --seeds 0 1 2 --threads 1    # several seeds
    python benchmarks/multistage.py --rules residual --no-long   # the paper's f_d and ε rule
    python benchmarks/multistage.py --out docs/multistage_table.md
    python benchmarks/multistage.py --smoke                      # tiny, for the test suite

Each seed and rule runs what ``pinnopt solve PROBLEM --optimizer OPT --width W
--depth D --steps N --networks S`` runs (:func:`pinnopt.solve.build_trainer`, then
:func:`pinnopt.train.multistage.fit_stages` with the networks of
:func:`pinnopt.solve.stage_network`): stage 1 is exactly the single-network run of
the same flags without ``--networks``, and every further network gets the same
optimizer and N steps. ``--rules`` picks how f_d and ε are set
(:func:`pinnopt.train.multistage.analyze_residual`: ``error``, pinnopt's default,
or ``residual``, Wang & Lai's as written). For comparison, one network is also
trained with the whole budget, S·N steps (``--no-long`` skips it). The table shows
stage 1's rel_l2, the composite's after the last stage, their ratio, the last
stage's ε and f_d, the long single network's rel_l2 and every run's wall time.
Times are for this machine's load: on a shared CPU they are inflated.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from pinnopt.config import Config, make_config
from pinnopt.solve import build_trainer, stage_network
from pinnopt.train.multistage import RULES, fit_stages


def config(args: argparse.Namespace, steps: int, seed: int) -> Config:
    return make_config(
        {
            "problem": {"name": args.problem, "points": args.points},
            "model": {"width": args.width, "depth": args.depth},
            "optim": {"optimizer": args.optimizer},
            "training": {
                "steps": steps,
                "seed": seed,
                "threads": args.threads,
                "eval_every": max(steps, 1),
            },  # fmt: skip
            "output": {"quiet": True},
        }
    )


def staged(args: argparse.Namespace, seed: int, rule: str) -> dict[str, Any]:
    cfg = config(args, args.steps, seed)
    trainer = build_trainer(cfg)
    problem = trainer.objective.problem
    run = fit_stages(
        trainer, args.networks, lambda k, f: stage_network(cfg, problem, k, f), rule=rule
    )
    first, last = run.stages[0], run.stages[-1]
    return {
        "seed": seed,
        "rule": rule,
        "stage1_rel_l2": first.result.rel_l2,
        "final_rel_l2": last.result.rel_l2,
        "ratio": first.result.rel_l2 / last.result.rel_l2,
        "epsilon": last.epsilon,
        "frequency": last.frequency,
        "networks": len(run.stages),
        "stage_times": [s.result.wall_time_s for s in run.stages],
        "stage_statuses": [s.result.status for s in run.stages],
        "n_params": sum(p.numel() for p in run.model.parameters()),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for seed in args.seeds:
        long = None
        if args.long:
            result = build_trainer(config(args, args.steps * args.networks, seed)).fit()
            long = {"long_rel_l2": result.rel_l2, "long_time": result.wall_time_s}
        for rule in args.rules:
            row = staged(args, seed, rule) | (long or {})
            rows.append(row)
            times = ", ".join(f"{t:.1f}" for t in row["stage_times"])
            print(
                f"seed {seed}, rule {rule}: stage 1 rel_l2 {row['stage1_rel_l2']:.3e}, "
                f"{row['networks']} networks {row['final_rel_l2']:.3e} (ratio "
                f"{row['ratio']:.1f}, eps {row['epsilon']:.2e}, f_d {row['frequency']:.3g}); "
                f"times {times} s"
                + (f"; one network {args.steps * args.networks} steps {row['long_rel_l2']:.3e} "
                   f"in {row['long_time']:.1f} s" if long else ""),
                flush=True,
            )  # fmt: skip
    return rows


def _ratio(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def table(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    s = args.networks
    lines = [
        f"`{args.problem}`, optimizer `{args.optimizer}`, tanh MLP {args.width} wide and "
        f"{args.depth} deep, {args.steps} steps per network, {s} networks (networks 2+ on "
        f"{max(1, args.width // 2)} Fourier features); produced by `{command}` on "
        f"{platform.machine()} with {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}, float64.",
        "",
    ]
    head = (f"| seed | rule | stage 1 rel_l2 | {s} networks rel_l2 | ratio | ε_{s} | f_d | "
            "stage times (s) |")  # fmt: skip
    align = "|---:|---|---:|---:|---:|---:|---:|---:|"
    if args.long:
        head += f" one network, {s * args.steps} steps: rel_l2 | its time (s) |"
        align += "---:|---:|"
    lines += [head, align]
    for r in rows:
        times = " + ".join(f"{t:.1f}" for t in r["stage_times"])
        line = (
            f"| {r['seed']} | {r['rule']} | {r['stage1_rel_l2']:.2e} | "
            f"{r['final_rel_l2']:.2e} | {_ratio(r['ratio'])}× | {r['epsilon']:.2e} | "
            f"{r['frequency']:.3g} | {times} |"
        )
        if args.long:
            line += f" {r['long_rel_l2']:.2e} | {r['long_time']:.1f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="poisson2d")
    parser.add_argument("--optimizer", default="gn")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000, help="steps per network")
    parser.add_argument("--networks", type=int, default=2, help="networks (>= 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rules", nargs="+", default=["error"], choices=RULES,
                        help="how f_d and ε are set (analyze_residual)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--no-long", dest="long", action="store_false",
                        help="skip the single network trained with the whole budget")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    args = parser.parse_args(argv)
    if args.networks < 2:
        parser.error(f"--networks must be >= 2, got {args.networks}")
    args.points = {}
    if args.smoke:
        args.steps, args.width = 8, 6
        args.points = {"pde": 80, "bc": 40}
    command = "python benchmarks/multistage.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = run(args)
    text = table(rows, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

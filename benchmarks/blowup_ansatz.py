"""The Burgers profile with two ansätze on the same equation: Chebyshev series and MLP (PINN).

    python benchmarks/blowup_ansatz.py --threads 1 --out bench_out/blowup_ansatz
    python benchmarks/blowup_ansatz.py --smoke --out /tmp/blowup_ansatz_smoke   # for the tests

For each order in ``--orders`` (0, 1, 2), from λ0 = λ_n (1 − 5 %), λ trainable, the same
least-squares problem, collocation points and Gauss–Newton (QR) solver:

* ``series``: :func:`~pinnopt.blowup.profile.find_profile` with the Chebyshev series of
  degree ``--degree`` (100);
* ``mlp``: :func:`~pinnopt.blowup.network_profile.find_network_profile`, a tanh MLP of
  ``--width`` × ``--depth`` (16 × 3) under the same envelope, refined over ``--stages``
  stages (3) of at most ``--stage-steps`` Gauss–Newton steps (300) each; one row per stage.

Outputs in ``--out``: ``results.md`` (the table, with this command and the machine) and
``results.json``. Residual and profile error on the dense grid y ∈ [−100, 100].
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from pinnopt.blowup.burgers import burgers_lambda
from pinnopt.blowup.network_profile import find_network_profile
from pinnopt.blowup.profile import find_profile


def series_row(args, order: int) -> dict:
    lam0 = 0.95 * burgers_lambda(order)
    result = find_profile(order, lam0, degree=args.degree, points=args.points)
    params = sum(p.numel() for p in result.model.parameters())
    return {"order": order, "ansatz": f"series, degree {args.degree}", "parameters": params,
            "steps": result.steps, "seconds": result.seconds,
            "lambda_rel_error": result.lam_rel_error, **result.check()}  # fmt: skip


def mlp_rows(args, order: int) -> list[dict]:
    exact = burgers_lambda(order)
    result = find_network_profile(order, 0.95 * exact, width=args.width, depth=args.depth,
                                  stages=args.stages, points=args.points,
                                  max_steps=args.stage_steps)  # fmt: skip
    rows, steps = [], 0
    for stage in result.stages:
        steps += stage["steps"]
        rows.append({
            "order": order, "ansatz": f"MLP {args.width}×{args.depth}, stage {stage['stage']}",
            "parameters": stage["parameters"], "steps": steps, "seconds": stage["seconds"],
            "lambda_rel_error": abs(stage["lambda"] - exact) / exact,
            "max_residual": stage["max_residual"], "profile_max_error": stage["profile_max_error"],
        })  # fmt: skip
    return rows


def report(args, rows: list[dict]) -> str:
    lines = [
        f"Command: `{command(args)}`; {platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s), torch {torch.__version__}, float64; {args.points} collocation points; "
        "from λ0 = λ_n (1 − 5 %), λ trainable; residual and profile error on the grid of "
        "20 001 points y ∈ [−100, 100].",
        "",
        "| order | ansatz | parameters trained | steps | seconds | λ rel. error | max residual "
        "| max abs(U − U_exact) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['order']} | {r['ansatz']} | {r['parameters']} | {r['steps']} | "
            f"{r['seconds']:.0f} | {r['lambda_rel_error']:.1e} | {r['max_residual']:.1e} | "
            f"{r['profile_max_error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def command(args) -> str:
    return "python benchmarks/blowup_ansatz.py " + " ".join(args.argv)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--degree", type=int, default=100)
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--stage-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="bench_out/blowup_ansatz")
    parser.add_argument("--smoke", action="store_true", help="order 0, tiny sizes")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.orders, args.degree, args.points = [0], 12, 40
        args.width, args.depth, args.stages, args.stage_steps = 6, 1, 2, 15
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for order in args.orders:
        rows.append(series_row(args, order))
        rows += mlp_rows(args, order)
        print(report(args, rows[-1 - args.stages :]), flush=True)
    text = report(args, rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()

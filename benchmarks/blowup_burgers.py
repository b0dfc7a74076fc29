"""Self-similar Burgers profiles and their rates λ to machine precision, and the λ hypernetwork.

    python benchmarks/blowup_burgers.py --threads 1 --out bench_out/blowup     # the figures
    python benchmarks/blowup_burgers.py --smoke --out /tmp/blowup_smoke         # for the tests

Part 1: for each order n in ``--orders`` (0..3) and each λ mode in ``--modes``, one
``pinnopt blowup burgers --order n --lambda-mode MODE`` run (``run_burgers``, so
each also leaves its run directory with plots), starting from λ0 = λ_n (1 − 5 %).
Part 2: a ``LambdaHyperNet`` is fitted to the λ that part 1 found in the first mode
(not the exact ones), saved as ``hypernet.pt``, asked for the orders in
``--predict`` (4, 5), and each prediction is refined by a run started from it.

A run whose directory already holds ``metrics.json`` is not run again, so an
interrupted benchmark resumes. Outputs in ``--out``: ``results.md`` (both tables,
with this command and the machine), ``results.json`` and one run directory per
run under ``runs/``. The figures of the issue: |λ − λ_n|/λ_n ≤ 1e-8, max |residual|
≤ 1e-10 (target 1e-12) and max |U − U_exact| ≤ 1e-8 on y ∈ [−100, 100]; the
hypernetwork within 5 % before refinement.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from pinnopt.blowup.burgers import burgers_lambda
from pinnopt.blowup.hypernet import LambdaHyperNet
from pinnopt.blowup.run import run_burgers

COLUMNS = ("lambda_rel_error", "max_residual", "profile_max_error", "steps", "seconds")


def run(args, order: int, mode: str, name: str, **start) -> dict:
    """One run, or the metrics of the run already in its directory (an interrupted
    benchmark resumes where it stopped)."""
    out = Path(args.out) / "runs" / name
    if (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        options = dict(degree=args.degree, points=args.points, max_steps=args.max_steps)
        metrics = run_burgers(order, out, mode, quiet=True, **start, **options)
    print(
        f"order {order} {mode:10s} λ rel. error {metrics['lambda_rel_error']:.1e}  "
        f"max|R| {metrics['max_residual']:.1e}  max|U-U*| {metrics['profile_max_error']:.1e}  "
        f"{metrics['seconds']:.0f} s",
        flush=True,
    )
    return metrics


def row(m: dict, first: list[str]) -> str:
    cells = first + [f"{m[k]:.1e}" for k in COLUMNS[:3]] + [str(m["steps"]), f"{m['seconds']:.0f}"]
    return "| " + " | ".join(cells) + " |"


def report(args, found: list[dict], predicted: list[dict], fit_misfit: float) -> str:
    header = "| λ rel. error | max residual | max abs(U − U_exact) | steps | seconds |"
    rule = "|---:|---:|---:|---:|---:|"
    lines = [
        f"Command: `{command(args)}`; {platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s), torch {torch.__version__}, float64; ansatz degree {args.degree}, "
        f"{args.points} collocation points; residual and profile error on the grid of "
        "20 001 points y ∈ [−100, 100].",
    ]
    lines += ["", "From λ0 = λ_n (1 − 5 %):", "", "| order | λ mode " + header, "|---|---" + rule]
    lines += [row(m, [str(m["order"]), m["lambda_mode"]]) for m in found]
    if predicted:
        lines += [
            "",
            f"`LambdaHyperNet` fitted to the λ found above ({args.modes[0]} mode, orders "
            f"{', '.join(map(str, args.orders))}; relative misfit of 1/λ {fit_misfit:.1e}), "
            f"then each prediction refined ({args.modes[0]} mode):",
            "",
            "| order | predicted λ | prediction error " + header,
            "|---|---:|---:" + rule,
        ]
        for m in predicted:
            first = [str(m["order"]), f"{m['lambda0']:.6f}", f"{m['prediction_error']:.1e}"]
            lines.append(row(m, first))
    return "\n".join(lines) + "\n"


def command(args) -> str:
    return "python benchmarks/blowup_burgers.py " + " ".join(args.argv)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--modes", nargs="+", choices=["trainable", "projection", "funnel"],
        default=["trainable", "projection", "funnel"],
    )  # fmt: skip
    parser.add_argument("--predict", type=int, nargs="*", default=[4, 5])
    parser.add_argument("--degree", type=int, default=100)
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="bench_out/blowup")
    parser.add_argument("--smoke", action="store_true", help="orders 0, 1 and 2, degree 12")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.orders, args.predict, args.degree, args.points = [0, 1], [2], 12, 30
        args.max_steps, args.modes = 20, args.modes[:1]
    if len(args.orders) < 2 and args.predict:
        parser.error("--orders: the hypernetwork needs at least 2 orders")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    found = [run(args, n, mode, f"order{n}_{mode}") for mode in args.modes for n in args.orders]
    predicted, misfit = [], float("nan")
    if args.predict:
        first = [m for m in found if m["lambda_mode"] == args.modes[0]]
        net = LambdaHyperNet()
        misfit = net.fit([m["order"] for m in first], [m["lambda"] for m in first])
        out.mkdir(parents=True, exist_ok=True)
        net.save(out / "hypernet.pt")
        for n in args.predict:
            guess = net.predict(n)
            m = run(args, n, args.modes[0], f"order{n}_from_hypernet", lambda0=guess)
            m["prediction_error"] = abs(guess - burgers_lambda(n)) / burgers_lambda(n)
            predicted.append(m)
    text = report(args, found, predicted, misfit)
    (out / "results.md").write_text(text)
    results = {"found": found, "predicted": predicted, "hypernet_misfit": misfit}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()

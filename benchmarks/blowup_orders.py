"""Burgers profiles of orders 0–8 with default settings, and their stability counts.

    python benchmarks/blowup_orders.py --jobs 2 --out bench_out/blowup_orders
    python benchmarks/blowup_orders.py --smoke --out /tmp/blowup_orders_smoke   # for the tests

Each order runs ``pinnopt blowup burgers --order n`` with no flag (``run_burgers`` with
its defaults: trainable λ from λ_n (1 − 5 %), resolution refinement over degrees
100, 200, 300 until max |R| < 1e-13), in its own process with one torch thread. Then
the linearisation around the found profile (:mod:`pinnopt.blowup.stability`) is
discretised at two sizes, and its converged eigenvalues are compared with the known
odd-class spectrum 1 − 2mλ_n; the count of unstable modes (symmetries left out) should
be n. Outputs in ``--out``: ``results.md`` (the table, with this command and the
machine), ``results.json`` and one run directory per order under ``runs/``; an order
whose run directory holds metrics.json is not run again (only its stability count).
The issue's figures: λ to 1e-10 relative and max residual ≤ 1e-12 for every order.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from pinnopt.bench.cells import run_cells
from pinnopt.blowup.catalog import get_equation
from pinnopt.blowup.run import load_profile, run_burgers
from pinnopt.blowup.stability import (
    burgers_spectrum,
    chebyshev_spectrum,
    count_unstable,
    stable_eigenvalues,
)


def one_order(order: int, out: str, smoke: bool, sizes: tuple[int, int]) -> dict:
    torch.set_num_threads(1)
    run_dir = Path(out) / "runs" / f"burgers-{order}"
    options = {"degree": 12, "points": 40, "max_steps": 10} if smoke else {}
    done = run_dir / "metrics.json"  # a finished run is not run again (resume)
    m = json.loads(done.read_text()) if done.is_file() else run_burgers(order, run_dir, quiet=True,
                                                                        **options)  # fmt: skip
    model = load_profile(run_dir)
    eq = get_equation("burgers")
    coarse, fine = (chebyshev_spectrum(eq, model, n) for n in sizes)
    converged = stable_eigenvalues(coarse, fine, tol=1e-4)
    count, _ = count_unstable(converged)
    known = burgers_spectrum(order, order + 2)  # 1, 1 − 2λ_n, …, 0
    found = sorted(converged.real, reverse=True)[: order + 2]
    spectrum_error = (float(np.max(np.abs(np.array(found) - known)))
                      if len(found) == len(known) else None)  # fmt: skip
    return {
        "order": order,
        **{
            k: m[k]
            for k in (
                "lambda_rel_error",
                "max_residual",
                "profile_max_error",
                "degree",
                "steps",
                "seconds",
            )
        },  # fmt: skip
        "unstable_modes": count,
        "spectrum_error": spectrum_error,
    }


def table(rows: list[dict]) -> list[str]:
    lines = ["| order | λ rel. error | max residual | max abs(U − U_exact) | degree | steps | "
             "seconds | unstable modes (expected) | max error of 1 − 2mλ_n |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        err = "not converged" if r["spectrum_error"] is None else f"{r['spectrum_error']:.1e}"
        lines.append(
            f"| {r['order']} | {r['lambda_rel_error']:.1e} | {r['max_residual']:.1e} | "
            f"{r['profile_max_error']:.1e} | {r['degree']} | {r['steps']} | {r['seconds']:.0f} | "
            f"{r['unstable_modes']} ({r['order']}) | {err} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=list(range(9)))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs=2, default=[64, 96],
                        help="basis sizes of the two stability discretisations")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out", type=Path, default=Path("bench_out/blowup_orders"))
    args = parser.parse_args(argv)
    orders = args.orders[:2] if args.smoke else args.orders
    sizes = (12, 16) if args.smoke else tuple(args.sizes)
    cells = [(n, str(args.out), args.smoke, sizes) for n in orders]
    rows = run_cells(one_order, cells, jobs=args.jobs)
    command = "python benchmarks/blowup_orders.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = [f"Command: `{command}`; {platform.machine()}, 1 torch thread per run, {args.jobs} "
            f"run(s) at a time, torch {torch.__version__}, float64; stability sizes {sizes}.",
            "", *table(rows)]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(text) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()

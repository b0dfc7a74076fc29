"""Identify ν of Burgers from observations (burgers1d_inverse) with Gauss–Newton.

    python benchmarks/burgers_inverse.py --noise 0 0.01 0.01 --pde-weight 1 1 100 \
        --jobs 2 --out docs/burgers_inverse_table.md

Raissi, Perdikaris & Karniadakis (2019, §4.1.1) identify ν from 2000 observations of
the solution with a 9-layer tanh network and L-BFGS, to a relative error of about
1e-3 on noise-free data. Here: 2000 observations too
(noise-free and with 1 % noise, ``noise = 0.01``), 4000 PDE collocation points, a
tanh MLP of width 20 and depth 4 in float64, ``gn`` from ν = 0, ``--steps`` steps or
``--time-limit`` seconds per run, seed 0. ``--jobs 2`` runs the two noise levels at
once, one process and one torch thread each. ``--pde-weight`` sets the weight w of
the PDE term against the data term (1 by default; one value per noise level, so
that one command can compare weights).
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

NU = 0.01 / 3.141592653589793


def run_one(noise, optimizer, steps, time_limit, width, depth, observations, pde_weight) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(
            {
                "problem": {"name": "burgers1d_inverse",
                            "params": {"noise": noise, "observations": observations},
                            "weights": {"pde": pde_weight}},
                "model": {"width": width, "depth": depth},
                "optim": {"optimizer": optimizer},
                "training": {"steps": steps, "time_limit": time_limit, "threads": 1,
                             "eval_every": 100},
                "output": {"out": str(Path(tmp) / "run"), "quiet": True},
            }
        )  # fmt: skip
        m = solve(cfg)
    m["noise"], m["pde_weight"] = noise, pde_weight
    print(
        f"noise {noise:g}: nu {m['param_nu']:.10g} (rel. error {m['param_nu_rel_error']:.2e}), "
        f"rel_l2 {m['rel_l2']:.2e}, {m['steps']} steps in {m['wall_time_s']:.1f} s "
        f"({m['status']})",
        flush=True,
    )
    return m


def table(rows, command) -> str:
    lines = [
        f"Produced by `{command}` on {platform.machine()}, one torch thread per run, "
        f"torch {torch.__version__}, float64; truth ν = 0.01/π = {NU:.10g}.",
        "",
        "| noise | w_pde | optimizer | identified ν | ν rel. error | u rel_l2 | steps "
        "| wall time (s) | status |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m['noise']:g} | {m['pde_weight']:g} | {m['optimizer']} | {m['param_nu']:.8g} | "
            f"{m['param_nu_rel_error']:.2e} | {m['rel_l2']:.2e} | {m['steps']} | "
            f"{m['wall_time_s']:.0f} | {m['status']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.01])
    parser.add_argument("--optimizer", default="gn")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--time-limit", type=float, default=900.0)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument(
        "--pde-weight", type=float, nargs="*", default=[1.0],
        help="w of the pde term: one value, or one per --noise value",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.width, args.depth, args.observations = 3, 8, 1, 100
    command = "python benchmarks/burgers_inverse.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    weights = args.pde_weight * len(args.noise) if len(args.pde_weight) == 1 else args.pde_weight
    if len(weights) != len(args.noise):
        parser.error("--pde-weight: give one value, or one per --noise value")
    cells = [(n, args.optimizer, args.steps, args.time_limit, args.width, args.depth,
              args.observations, w) for n, w in zip(args.noise, weights)]  # fmt: skip
    rows = run_cells(run_one, cells, args.jobs)
    text = table(rows, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

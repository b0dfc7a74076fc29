"""What an optimizer keeps when the objective changes: each choice against its opposite.

    python benchmarks/objective_change.py --jobs 2 --out docs/objective_change_table.md

Adaptive sampling (RAD, new points every ``--period`` steps) changes the objective
many times in a run; the trainer tells the optimizer in charge (``objective_changed``),
which decides what of its state to keep (see :mod:`pinnopt.objective`). Each shipped
choice runs against its opposite, registered here under another name:

    lbfgs       drops its curvature pairs (s, y)   lbfgs_keep       keeps them
    ssbroyden   keeps its inverse Hessian H        ssbroyden_reset  restarts from H = I
    gn          keeps its damping μ                gn_reset         restarts from the initial μ

on burgers1d (a tanh MLP of width 32 and depth 2, default points, seed 0, float64, one
torch thread), ``adam:1000`` first for every variant, for ``--time-limit`` seconds.
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
from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.optim.lbfgs import LBFGS, LBFGS_DEFAULTS
from pinnopt.optim.quasi_newton import QuasiNewton
from pinnopt.optim.registry import OPTIMIZERS, register_optimizer
from pinnopt.solve import solve


class LBFGSKeep(LBFGS):
    def objective_changed(self, what: str) -> None:
        """Keep everything: pairs of the old objective stay in the memory."""


class QuasiNewtonReset(QuasiNewton):
    def objective_changed(self, what: str) -> None:
        """Forget H: the next step starts from H = I, as a first one does."""
        state = self.state[self._params[0]]
        if "H" in state:
            state["H"] = self._identity()
            state["n_updates"] = 0


class GaussNewtonReset(GaussNewton):
    def objective_changed(self, what: str) -> None:
        """Forget the damping: start again from its initial value."""
        self.state[self._params[0]].clear()


def _register() -> None:
    if "lbfgs_keep" in OPTIMIZERS:
        return
    register_optimizer("lbfgs_keep", 1.0, closure="loss", signature=LBFGS)(
        lambda params, lr, **o: LBFGSKeep(params, lr=lr, **{**LBFGS_DEFAULTS, **o})
    )
    register_optimizer("ssbroyden_reset", 1.0, closure="loss", signature=QuasiNewton)(
        lambda params, lr, **o: QuasiNewtonReset(params, lr=lr, method="ssbroyden", **o)
    )
    register_optimizer("gn_reset", 1.0, closure="residuals", signature=GaussNewton)(
        lambda params, lr, **o: GaussNewtonReset(params, lr=lr, **o)
    )


_register()
PAIRS = [("lbfgs", "lbfgs_keep"), ("ssbroyden", "ssbroyden_reset"), ("gn", "gn_reset")]


def run_one(problem: str, optimizer: str, time_limit: float, period: int, steps: int) -> dict:
    _register()  # a worker started by spawn imports this module afresh
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config({
            "problem": {"name": problem},
            "optim": {"optimizer": f"adam:{min(1000, steps // 2)},{optimizer}"},
            "sampling": {"method": "rad", "period": period},
            "training": {"steps": steps, "time_limit": time_limit, "threads": 1,
                         "eval_every": 1000},
            "output": {"out": str(Path(tmp) / "run"), "quiet": True},
        })  # fmt: skip
        m = solve(cfg)
    m["variant"] = optimizer
    print(f"{problem} {optimizer:16s} rel_l2 {m['rel_l2']:.3e}  loss {m['final_loss']:.3e}  "
          f"{m['steps']} steps  {m['wall_time_s']:.0f} s", flush=True)  # fmt: skip
    return m


def table(rows: list[dict], command: str) -> str:
    lines = [
        f"Produced by `{command}` on {platform.machine()}, torch {torch.__version__}, float64, "
        "one torch thread per run.",
        "",
        "| problem | optimizer after adam | on objective change | rel_l2 | final loss | steps "
        "| wall time (s) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    what = {
        "lbfgs": "drops (s, y) pairs (shipped)",
        "lbfgs_keep": "keeps (s, y) pairs",
        "ssbroyden": "keeps H (shipped)",
        "ssbroyden_reset": "resets H = I",
        "gn": "keeps damping (shipped)",
        "gn_reset": "resets damping",
    }
    for m in rows:
        lines.append(
            f"| {m['problem']} | {m['variant']} | {what[m['variant']]} | {m['rel_l2']:.2e} | "
            f"{m['final_loss']:.2e} | {m['steps']} | {m['wall_time_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="burgers1d")
    parser.add_argument("--optimizers", nargs="*", default=[o for pair in PAIRS for o in pair])
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--period", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    command = "python benchmarks/objective_change.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    cells = [(args.problem, o, args.time_limit, args.period, args.steps) for o in args.optimizers]
    rows = run_cells(run_one, cells, args.jobs)
    text = table(rows, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

"""Seconds per Gauss–Newton step for each linear-solver back end as the parameter count grows.

    python benchmarks/gn_scaling.py --threads 1                  # P ≈ 100 … 50 000, M = 1200
    python benchmarks/gn_scaling.py --pde-points 4000            # M = 4200 residuals
    python benchmarks/gn_scaling.py --out docs/gn_scaling_table.md
    python benchmarks/gn_scaling.py --smoke                      # tiny, for the test suite

One step of :class:`pinnopt.optim.gauss_newton.GaussNewton` solves
(JᵀJ + μI) δ = −Jᵀr for M residuals and P parameters by

  * ``dense``    — form JᵀJ (P × P) and factor it: about M P² + P³/3 flops;
  * ``woodbury`` — factor JJᵀ + μI (M × M) instead: about P M² + M³/3 flops;
  * ``cg``       — conjugate gradient with Jv, Jᵀu by autograd (J never formed):
    two passes through the residual graph per iteration, up to ``cg_max_iter``.

The problem is ``poisson2d`` (default points: 1000 PDE + 200 boundary = 1200
residuals) with tanh MLPs of ``--depth`` hidden layers (2), whose widths are chosen
so that P is nearest each target. For each (P, back end) a fresh model (seed 0) takes
one untimed warm-up step, then ``--repeats`` timed steps; the table shows the median
seconds per step (a step includes the residuals, J or the CG operator, the solve, and
any re-solves after a rejected step). A cell is skipped, with the reason, when its
matrices would need more than ``--max-gb`` GB (J, and JᵀJ or JJᵀ with its Cholesky
factor), when a step is estimated to take longer than ``--time-cap`` seconds (from the
back end's time at the previous P, scaled by (P/P')³ for dense, (P/P')² for the others),
when the warm-up step took longer than the cap, or when the back end hit the cap at a
smaller P. A step cannot be interrupted, so one step may run past the cap; the timed
steps stop once the cell has used up the cap (at least one is timed).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pinnopt.models import build_model
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.problems import get_problem

SOLVERS = ("dense", "woodbury", "cg")
TARGETS = (100, 300, 1000, 3000, 10000, 30000, 50000)
PROBLEM = "poisson2d"


@dataclass
class Cell:
    """Median seconds per step, or why the combination was skipped."""

    seconds: float | None = None
    skipped: str = ""

    def __str__(self) -> str:
        return f"{self.seconds:.3g}" if self.seconds is not None else f"skipped ({self.skipped})"


def mlp_params(width: int, depth: int, in_dim: int = 2) -> int:
    """Parameters of an ``in_dim``-width-…-width-1 MLP with ``depth`` hidden layers."""
    return (in_dim + 1) * width + (depth - 1) * (width + 1) * width + width + 1


def width_for(target: int, depth: int) -> int:
    """The width whose MLP parameter count is nearest ``target``."""
    width = 1
    while mlp_params(width + 1, depth) <= target:
        width += 1
    below, above = mlp_params(width, depth), mlp_params(width + 1, depth)
    return width if target - below <= above - target else width + 1


def matrix_gb(solver: str, n_residuals: int, n_params: int) -> float:
    """GB of float64 matrices a step holds: J, and the Gram matrix, its copy and factor."""
    m, p = n_residuals, n_params
    entries = {"dense": m * p + 3 * p * p, "woodbury": m * p + 3 * m * m, "cg": 0}[solver]
    return 8 * entries / 1e9


def estimate(solver: str, last: tuple[int, float] | None, n_params: int) -> float:
    """Seconds per step at ``n_params`` guessed from the last timed (P, seconds), pessimistically:
    ∝ P³ for ``dense`` (the P × P factor), ∝ P² otherwise (linear per solve, at fixed M;
    the square leaves room for more rejected steps and CG iterations). 0 with no data."""
    if last is None:
        return 0.0
    p, seconds = last
    return seconds * (n_params / p) ** (3 if solver == "dense" else 2)


def setup(width: int, depth: int, points: dict[str, int], seed: int = 0):
    """A fresh poisson2d model and its residual closure: (parameters, closure, M)."""
    problem = get_problem(PROBLEM)
    model = build_model("mlp", problem.dim, problem.domain.lower, problem.domain.upper,
                        width=width, depth=depth, seed=seed)  # fmt: skip
    sample = problem.sample(torch.Generator().manual_seed(seed), points)
    objective = Objective(problem, model, sample)
    n_residuals = sum(len(x) for x in sample.values())
    return list(model.parameters()), ResidualClosure(objective), n_residuals


def time_steps(solver: str, width: int, depth: int, points: dict[str, int], repeats: int,
               time_cap: float) -> Cell:  # fmt: skip
    """Median seconds of ``repeats`` steps after one warm-up step (within ``time_cap``)."""
    params, closure, _ = setup(width, depth, points)
    opt = GaussNewton(params, solver=solver)
    start = time.perf_counter()
    opt.step(closure)
    warm = time.perf_counter() - start
    if warm > time_cap:
        return Cell(skipped=f"one step took {warm:.0f} s > {time_cap:g} s cap")
    times = []
    while len(times) < repeats and (not times or time.perf_counter() - start < time_cap):
        t0 = time.perf_counter()
        opt.step(closure)
        times.append(time.perf_counter() - t0)
    return Cell(statistics.median(times))


def run(targets, depth, points, repeats, max_gb, time_cap, solvers=SOLVERS, quiet=False):
    """One row per target P: its width, P, M and a :class:`Cell` per back end."""
    rows, capped, last = [], {}, {}
    for target in sorted(targets):
        width = width_for(target, depth)
        n_params = mlp_params(width, depth)
        n_residuals = setup(width, depth, points)[2]
        row = {"width": width, "P": n_params, "M": n_residuals}
        for solver in solvers:
            gb = matrix_gb(solver, n_residuals, n_params)
            guess = estimate(solver, last.get(solver), n_params)
            if solver in capped:
                row[solver] = Cell(skipped=f"over the time cap at P = {capped[solver]}")
            elif gb > max_gb:
                row[solver] = Cell(skipped=f"needs ~{gb:.1f} GB > {max_gb:g} GB")
            elif guess > time_cap:
                row[solver] = Cell(skipped=f"estimated {guess:.0f} s per step > {time_cap:g} s cap")
            else:
                row[solver] = time_steps(solver, width, depth, points, repeats, time_cap)
                if row[solver].seconds is None:
                    capped[solver] = n_params
                else:
                    last[solver] = (n_params, row[solver].seconds)
            if not quiet:
                print(f"P = {n_params:6d} (width {width:4d})  {solver:8s}  {row[solver]}",
                      flush=True)  # fmt: skip
        rows.append(row)
    return rows


def fastest(row: dict, solvers) -> str:
    timed = {s: row[s].seconds for s in solvers if row[s].seconds is not None}
    return min(timed, key=timed.get) if timed else "–"


def winners(rows, solvers) -> str:
    """Which back end is fastest over which range of P, e.g. ``dense for P = 105–301; …``."""
    spans: list[list] = []
    for row in rows:
        name = fastest(row, solvers)
        if spans and spans[-1][0] == name:
            spans[-1][2] = row["P"]
        else:
            spans.append([name, row["P"], row["P"]])
    parts = [f"{n} for P = {a}" + (f"–{b}" if b != a else "") for n, a, b in spans]
    return "Fastest: " + "; ".join(parts) + "."


def table(rows, solvers, depth, repeats, command) -> str:
    m = sorted({r["M"] for r in rows})
    lines = [
        f"Seconds per `gn` step (median of {repeats} after one warm-up step) on {PROBLEM} "
        f"with tanh MLPs of depth {depth}, M = {', '.join(map(str, m))} residuals, float64; "
        f"produced by `{command}` on {platform.machine()} with {torch.get_num_threads()} "
        f"torch thread(s), torch {torch.__version__}.",
        "",
        "| P | width | " + " | ".join(solvers) + " | fastest |",
        "|---:|---:|" + "---:|" * len(solvers) + "---|",
    ]
    for r in rows:
        cells = [str(r["P"]), str(r["width"]), *(str(r[s]) for s in solvers)]
        lines.append("| " + " | ".join(cells) + f" | {fastest(r, solvers)} |")
    lines += ["", winners(rows, solvers)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=list(TARGETS),
                        help="parameter counts to aim for")  # fmt: skip
    parser.add_argument("--depth", type=int, default=2, help="hidden layers")
    parser.add_argument("--pde-points", type=int, default=1000)
    parser.add_argument("--bc-points", type=int, default=200)
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per cell")
    parser.add_argument("--max-gb", type=float, default=4.0, help="skip cells needing more")
    parser.add_argument("--time-cap", type=float, default=120.0, help="seconds per cell")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.targets, args.pde_points, args.bc_points, args.repeats = [30, 100], 40, 20, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/gn_scaling.py " + " ".join(sys.argv[1:] if argv is None else argv)
    points = {"pde": args.pde_points, "bc": args.bc_points}
    rows = run(args.targets, args.depth, points, args.repeats, args.max_gb, args.time_cap,
               args.solvers)  # fmt: skip
    text = table(rows, args.solvers, args.depth, args.repeats, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

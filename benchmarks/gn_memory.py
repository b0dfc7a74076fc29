"""Peak memory and seconds of a Gauss–Newton step at 10⁵ and more collocation points.

    python benchmarks/gn_memory.py --threads 1 --out docs/gn_memory_table.md
    python benchmarks/gn_memory.py --points 100000 --solvers chunked cg
    python benchmarks/gn_memory.py --smoke                      # tiny, for the test suite

One step of :class:`pinnopt.optim.gauss_newton.GaussNewton` on ``poisson2d`` (M
residuals: 5/6 of them interior points, 1/6 boundary points, the default problem's
ratio) with the default network of ``pinnopt solve`` (a tanh MLP of width 32 and
depth 2: P = 1185 parameters), float64, for the back ends

  * ``chunked`` — JᵀJ and Jᵀr summed over blocks of rows
    (:meth:`pinnopt.objective.Objective.normal_equations`), then Cholesky:
    matrices of P² + P² (JᵀJ and its factor) + chunk·P (one block) entries;
  * ``dense``   — J formed whole (:meth:`pinnopt.objective.Objective.jacobian`), then
    JᵀJ and Cholesky: M·P + 2P² entries;
  * ``cg``      — conjugate gradient with Jv and Jᵀu by autograd: the autograd graph of
    all M residuals (and of Jᵀu, for Jv) instead of matrices.

Each case runs in a fresh Python process, so that its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which sees torch's allocations where
tracemalloc does not) is its own; the table gives the peak before the step (Python,
torch, the points and the model) and after it, and the seconds of each step (the
first step included: it has no warm-up cost beyond torch's own). A ``dense`` case is
skipped, with the reason, when J and JᵀJ would need more than ``--max-gb`` GB.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from pinnopt.models import build_model
from pinnopt.objective import NORMAL_EQUATIONS_CHUNK_ENTRIES, Objective, ResidualClosure
from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.problems import get_problem

PROBLEM = "poisson2d"
SOLVERS = ("chunked", "dense", "cg")
POINTS = (100_000, 200_000)


def peak_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mlp_params(width: int, depth: int, in_dim: int = 2) -> int:
    """Parameters of an ``in_dim``-width-…-width-1 MLP with ``depth`` hidden layers."""
    return (in_dim + 1) * width + (depth - 1) * (width + 1) * width + width + 1


def matrix_mb(solver: str, n_residuals: int, n_params: int) -> float | None:
    """MiB of the float64 matrices a step holds (entries × 8 bytes); None for ``cg``."""
    m, p = n_residuals, n_params
    chunk = max(1, NORMAL_EQUATIONS_CHUNK_ENTRIES // p)
    entries = {"dense": m * p + 2 * p * p, "chunked": 2 * p * p + chunk * p}.get(solver)
    return None if entries is None else 8 * entries / 2**20


def run_case(solver: str, n_residuals: int, width: int, depth: int, steps: int,
             cg_max_iter: int) -> dict:  # fmt: skip
    """``steps`` gn steps in this process: peak RSS before and after, seconds per step."""
    problem = get_problem(PROBLEM)
    model = build_model("mlp", problem.dim, problem.domain.lower, problem.domain.upper,
                        width=width, depth=depth, seed=0)  # fmt: skip
    n_bc = n_residuals // 6
    points = problem.sample(
        torch.Generator().manual_seed(0), {"pde": n_residuals - n_bc, "bc": n_bc}
    )
    objective = Objective(problem, model, points)
    closure = ResidualClosure(objective)
    opt = GaussNewton(model.parameters(), solver=solver, cg_max_iter=cg_max_iter)
    start_mb = peak_mb()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step(closure)
        times.append(time.perf_counter() - t0)
    after_mb = peak_mb()  # before the loss below, which is no part of a step
    with torch.no_grad():
        r = closure.without_graph()
    return {
        "solver": opt.solver,
        "M": n_residuals,
        "P": sum(p.numel() for p in model.parameters()),
        "start_mb": start_mb,
        "peak_mb": after_mb,
        "seconds": sum(times) / len(times),
        "loss": float(0.5 * r.dot(r)),
        "rejected": opt.state[opt.param_groups[0]["params"][0]]["rejected"],
    }


def measure(solver: str, n_residuals: int, args) -> dict:
    """:func:`run_case` in a fresh process (its own peak RSS), parsed from its last line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--case", solver, str(n_residuals),
               "--width", str(args.width), "--depth", str(args.depth), "--steps", str(args.steps),
               "--cg-max-iter", str(args.cg_max_iter), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {solver} at M = {n_residuals} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args) -> list[dict]:
    rows = []
    n_params = mlp_params(args.width, args.depth)
    for n_residuals in args.points:
        for solver in args.solvers:
            mb = matrix_mb(solver, n_residuals, n_params)
            if solver == "dense" and mb / 1024 > args.max_gb:
                row = {"solver": solver, "M": n_residuals, "P": n_params,
                       "skipped": f"needs ~{mb / 1024:.1f} GB > {args.max_gb:g} GB"}  # fmt: skip
            else:
                row = measure(solver, n_residuals, args)
            row["matrix_mb"] = mb
            rows.append(row)
            if not args.quiet:
                print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict], args, command: str) -> str:
    lines = [
        f"Peak memory and seconds of a `gn` step on {PROBLEM} (M residuals, 1/6 of them on the "
        f"boundary) with a tanh MLP of width {args.width} and depth {args.depth}, float64, "
        f"{args.steps} step(s) per case, each case in a fresh process; produced by "
        f"`{command}` on {platform.machine()} with {args.threads or torch.get_num_threads()} "
        f"torch thread(s), torch {torch.__version__}. Peak RSS is `ru_maxrss` before the "
        f"step (Python, torch, points, model) and after it; matrices is entries × 8 bytes "
        f"(dense: M·P + 2P²; chunked: 2P² + chunk·P with chunk = "
        f"{NORMAL_EQUATIONS_CHUNK_ENTRIES} // P rows; cg: no matrices, the autograd graph). "
        f"cg runs at most {args.cg_max_iter} iterations per solve (gn's default is 500): its "
        f"seconds grow with that cap, its memory does not. A step's seconds include its "
        f"rejected trials (each one more solve and trial loss; the step's μ starts at 1e-3).",
        "",
        "| solver | M | P | matrices (MiB) | peak RSS before (MiB) | peak RSS after (MiB) "
        "| step's increase (MiB) | s / step | loss after | rejected |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mb = "–" if r["matrix_mb"] is None else f"{r['matrix_mb']:.0f}"
        if "skipped" in r:
            lines.append(f"| {r['solver']} | {r['M']} | {r['P']} | {mb} | "
                         f"skipped ({r['skipped']}) | | | | | |")  # fmt: skip
            continue
        cells = [r["solver"], str(r["M"]), str(r["P"]), mb, f"{r['start_mb']:.0f}",
                 f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['start_mb']:.0f}",
                 f"{r['seconds']:.3g}", f"{r['loss']:.3e}", str(r["rejected"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=list(POINTS),
                        help="residuals M (collocation points) per case")  # fmt: skip
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2, help="hidden layers")
    parser.add_argument("--steps", type=int, default=1, help="gn steps per case")
    parser.add_argument("--cg-max-iter", type=int, default=500, help="gn's cg_max_iter")
    parser.add_argument("--max-gb", type=float, default=4.0, help="skip dense cases needing more")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--case", nargs=2, metavar=("SOLVER", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        row = run_case(args.case[0], int(args.case[1]), args.width, args.depth, args.steps,
                       args.cg_max_iter)  # fmt: skip
        print(json.dumps(row))
        return [row]
    if args.smoke:
        args.points, args.solvers, args.width, args.quiet = [600], ["chunked", "dense"], 8, True
    command = "python benchmarks/gn_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = run(args)
    text = table(rows, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()

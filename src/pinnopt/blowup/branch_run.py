"""The blow-up job for an equation solved by following its branch of fixed-λ solutions
(``pinnopt blowup ccf --lambda-mode branch``, the default for orders ≥ 1).

writes a run directory: ``metrics.json`` (equation, order, status, lambda on the fine
grid, lambda_coarse, the grid steps, lambda_digits on which the two agree, the discrete
residual, the relative residual of E by quadrature at check points
(:mod:`pinnopt.blowup.quadrature_check`), every crossing of γ = 2 in the bracket,
seconds, files), ``branch.csv`` (λ, γ along the branch), ``profile.csv`` (y, Ω with
Ω'(0) = −1) and ``branch.png``. A run stopped by ``--time-limit``, Ctrl-C or SIGTERM
before its profile writes the branch so far and metrics.json with its status and λ None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinnopt.blowup.catalog import get_equation
from pinnopt.blowup.ccf_branch import BranchError, BranchPoint, BranchProfile
from pinnopt.blowup.plots import plot_branch
from pinnopt.blowup.run import METRICS_FILE, RUN_FILES, OptionError, _progress, _write_csv
from pinnopt.blowup.stopping import Stopped
from pinnopt.train.run_directory import clear_run


def run_branch(name: str, order: int, out: Path, bracket: tuple[float, float] | None = None,
               quiet: bool = False, time_limit: float | None = None,
               should_stop: Callable[[], bool] | None = None, **options: Any
               ) -> dict[str, Any]:  # fmt: skip
    """Find the order-``order`` profile of ``name`` on its branch, write the run directory
    ``out``; its metrics. ``options`` (h, x_range) go to the equation's branch solver."""
    equation = get_equation(name)
    if equation.branch is None:
        raise OptionError(f"--lambda-mode: {name} has no branch solver; use funnel or trainable")
    try:
        equation.check_order(order)
    except ValueError as e:
        raise OptionError(f"--order: {e}") from None
    bracket = equation.bracket if bracket is None else tuple(bracket)
    if not (0 < bracket[0] < bracket[1]):
        raise OptionError(f"--bracket: must be two numbers 0 < LO < HI, got {bracket}")
    out = Path(out)
    if out.is_dir():
        clear_run(out, RUN_FILES)
    followed: list[dict] = []  # the branch so far, written if the run is stopped
    with _progress(quiet) as progress:
        task = progress.add_task("branch |γ−2|", total=None, loss=math.nan, lam=math.nan)

        def show(point: BranchPoint) -> None:
            followed.append({"lambda": point.lam, "gamma": point.gamma})
            progress.update(task, advance=1, loss=abs(point.gamma - 2), lam=point.lam)

        try:
            found = equation.branch(order, bracket, callback=show, time_limit=time_limit,
                                    should_stop=should_stop, **options)  # fmt: skip
        except BranchError as e:
            raise OptionError(f"--bracket: {e}") from None
        except Stopped as stop:
            return write_stopped_run(name, order, stop.status, followed, out)
    return write_branch_run(name, found, out)


def write_stopped_run(name: str, order: int, status: str, followed: list[dict], out: Path
                      ) -> dict[str, Any]:  # fmt: skip
    """A run stopped before its profile: the branch so far and metrics with λ None."""
    out.mkdir(parents=True, exist_ok=True)
    files = [METRICS_FILE]
    if followed:
        _write_csv(followed, out / "branch.csv")
        files.insert(0, "branch.csv")
    metrics = {"equation": name, "order": order, "lambda_mode": "branch", "status": status,
               "lambda": None, "branch_points": len(followed), "files": files}  # fmt: skip
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_branch_run(name: str, found: BranchProfile, out: Path) -> dict[str, Any]:
    """Write the run directory; the metrics with ``files``, metrics.json last."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(found.branch, out / "branch.csv")
    rows = [{"y": float(y), "omega": float(w)} for y, w in zip(found.y, found.omega)]
    _write_csv(rows, out / "profile.csv")
    plot_branch(found.branch, found.roots, found.order, found.lam, found.y, found.omega,
                out / "branch.png")  # fmt: skip
    metrics = {
        "equation": name,
        "order": found.order,
        "lambda_mode": "branch",
        "status": "completed",
        "lambda": found.lam,
        "lambda_coarse": found.lam_coarse,
        "grid_steps": list(found.h),
        "lambda_digits": found.digits,
        "discrete_residual": found.residual,
        "quadrature_residual": max(c["relative"] for c in found.checked),
        "quadrature_check": found.checked,
        "crossings": found.roots,
        "seconds": found.seconds,
        "files": ["branch.csv", "profile.csv", "branch.png", METRICS_FILE],
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def branch_summary(m: dict[str, Any], out: Path) -> str:
    """The two lines ``pinnopt blowup`` prints for a branch run."""
    if m["lambda"] is None:
        head = (f"{m['equation']} order {m['order']}: stopped ({m['status']}) after "
                f"{m['branch_points']} points of the branch, before the profile")  # fmt: skip
    else:
        head = (
            f"{m['equation']} order {m['order']}: λ = {m['lambda']:.10g} ({m['lambda_digits']} "
            f"digits on which grids h = {m['grid_steps'][0]:g} and {m['grid_steps'][1]:g} "
            f"agree), max |E|/|Ω| {m['quadrature_residual']:.1e} by quadrature, "
            f"{len(m['crossings'])} crossing(s) of γ = 2 in the bracket at λ ≈ "
            f"{', '.join(f'{c:.4f}' for c in m['crossings'])}; {m['seconds']:.1f} s"
        )
    return f"{head}\nrun directory: {out}  ({', '.join(m['files'])})"

"""The blow-up job for an equation solved with the analytic series (``pinnopt blowup ccf``).

    pinnopt blowup ccf [--order N] [--lambda-mode funnel|trainable|branch] [--bracket LO HI]
                       [--degree D] [--target T] [--funnel-scan K] [--out DIR]

writes a run directory: ``metrics.json`` (equation, order, status, lambda, lambda_digits,
max_residual and max_relative_residual on y ∈ (0, 100] and out to 10¹², lambda_rule_error,
first_integral_error, the refinement stages, the bracket's sign changes, the stability
count, files), ``history.csv``, ``profile.png``, ``residual.png``, ``profile.pt``
(:func:`load_series_profile`), and with fixed-λ fits ``funnel.csv`` / ``funnel.png``.
``metrics.json`` comes last; ``profile.pt`` is the checkpoint after each stage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pinnopt.blowup.analytic_series import AnalyticSeries
from pinnopt.blowup.branch_run import branch_summary, run_branch
from pinnopt.blowup.catalog import get_equation
from pinnopt.blowup.equation import ProfileEquation
from pinnopt.blowup.plots import plot_funnel, plot_residual, plot_series_profile
from pinnopt.blowup.run import (  # the same run-directory files as a Burgers run
    METRICS_FILE,
    PROFILE_FILE,
    RUN_FILES,
    OptionError,
    _progress,
    _write_csv,
)
from pinnopt.blowup.series_profile import (
    LAMBDA_MODES,
    BracketError,
    SeriesResult,
    check_points,
    find_series_profile,
)
from pinnopt.blowup.stability import count_unstable, series_spectrum, stable_eigenvalues
from pinnopt.train.checkpoint import save_checkpoint
from pinnopt.train.run_directory import clear_run

STABILITY_SIZES = (24, 32)  # the two bases of the stability count


def check_series_options(equation: ProfileEquation, order: int, lambda_mode: str,
                         lambda0: float | None, bracket: tuple[float, float] | None,
                         degree: int, target: float, funnel_scan: int) -> None:  # fmt: skip
    """Raise :class:`OptionError` (``--flag: …``) for the first bad option."""
    try:
        equation.check_order(order)
    except ValueError as e:
        raise OptionError(f"--order: {e}") from None
    modes = LAMBDA_MODES + (("branch",) if equation.branch is not None else ())
    if lambda_mode not in modes:
        raise OptionError(f"--lambda-mode: unknown {lambda_mode!r} for {equation.name}; "
                          f"allowed: {', '.join(modes)}")  # fmt: skip
    if lambda_mode == "trainable" and lambda0 is None:
        raise OptionError("--lambda0: trainable mode needs a starting λ (or use the funnel)")
    if lambda0 is not None and not (math.isfinite(lambda0) and lambda0 > 0):
        raise OptionError(f"--lambda0: must be a number > 0, got {lambda0}")
    if bracket is not None and not (0 < bracket[0] < bracket[1]):
        raise OptionError(f"--bracket: must be two numbers 0 < LO < HI, got {bracket}")
    if not (isinstance(degree, int) and degree >= 3):
        raise OptionError(f"--degree: must be an integer >= 3, got {degree!r}")
    if not target > 0:
        raise OptionError(f"--target: must be > 0, got {target}")
    if not (isinstance(funnel_scan, int) and funnel_scan >= 0):
        raise OptionError(f"--funnel-scan: must be an integer >= 0, got {funnel_scan!r}")


def stability(result: SeriesResult) -> dict[str, Any]:
    """Unstable modes of the profile (:mod:`pinnopt.blowup.stability`): the eigenvalues that
    bases of 24 and 32 terms agree on (to 1e-3). Larger bases bring spurious eigenvalues and
    lose the agreement; these sizes resolve the symmetries 1 and 0 of the CCF profile."""
    coarse = series_spectrum(result.equation, result.model, STABILITY_SIZES[0])
    fine = series_spectrum(result.equation, result.model, STABILITY_SIZES[1])
    converged = stable_eigenvalues(coarse, fine, tol=1e-3)
    count, unstable = count_unstable(converged)
    return {
        "unstable_modes": count,
        "unstable_eigenvalues": [[mu.real, mu.imag] for mu in unstable],
        "converged_eigenvalues": [[float(mu.real), float(mu.imag)] for mu in converged[:8]],
    }


def run_series(
    name: str,
    order: int,
    out: Path,
    lambda_mode: str | None = None,
    lambda0: float | None = None,
    bracket: tuple[float, float] | None = None,
    degree: int = 39,
    target: float = 1e-12,
    funnel_scan: int = 0,
    quiet: bool = False,
    time_limit: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Find the order-``order`` profile of the equation ``name``, write the run directory
    ``out``; its metrics. ``options`` go to :func:`find_series_profile`. The default
    ``lambda_mode`` is the funnel for order 0 and, for the unstable orders of an equation
    with a branch solver, the branch (:mod:`pinnopt.blowup.branch_run`)."""
    equation = get_equation(name)
    if lambda_mode is None:
        lambda_mode = "branch" if order > 0 and equation.branch is not None else "funnel"
    if lambda_mode == "branch":
        return run_branch(name, order, out, bracket, quiet, time_limit, should_stop)
    check_series_options(equation, order, lambda_mode, lambda0, bracket, degree, target,
                         funnel_scan)  # fmt: skip
    out = Path(out)
    if out.is_dir():
        clear_run(out, RUN_FILES)  # an earlier run's files would pass for this one's

    def checkpoint(model: AnalyticSeries) -> None:  # the folder appears with the first one
        out.mkdir(parents=True, exist_ok=True)
        save_series(model, name, out / PROFILE_FILE)

    with _progress(quiet) as progress:
        task = progress.add_task("search", total=None, loss=math.nan, lam=lambda0 or math.nan)

        def show(entry: dict) -> None:
            progress.update(task, loss=entry["loss"], lam=entry["lambda"],
                            description=f"{entry['kind']} d={entry['degree']}")  # fmt: skip

        try:
            result = find_series_profile(
                equation, order, lambda_mode, lam0=lambda0, bracket=bracket, max_degree=degree,
                target=target, funnel_scan=funnel_scan, callback=show, time_limit=time_limit,
                should_stop=should_stop, checkpoint=checkpoint,
                **options,
            )  # fmt: skip
        except BracketError as e:
            raise OptionError(f"--bracket: {e}") from None
    metrics = result.metrics()
    if result.status == "completed":
        metrics["stability"] = stability(result)
    return write_series_run(result, metrics, out)


def write_series_run(result: SeriesResult, metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the run directory; the metrics with ``files``, metrics.json last."""
    out.mkdir(parents=True, exist_ok=True)
    save_series(result.model, result.equation.name, out / PROFILE_FILE)
    files = [PROFILE_FILE, "history.csv"]
    _write_csv(result.history, out / "history.csv")
    if len(result.funnel) >= 2:
        _write_csv(result.funnel, out / "funnel.csv")
        plot_funnel(result.funnel, result.lam, None, out / "funnel.png",
                    signed_label="signed residual rule(Ω_λ) − λ")  # fmt: skip
        files += ["funnel.csv", "funnel.png"]
    y = check_points()
    with torch.no_grad():
        fields = result.model.fields(y)
        lam = result.model.lam.detach()
        rel = result.equation.residual(fields, y, lam) / result.equation.weight(y, lam)
    plot_series_profile(y, fields, result.equation.name, result.lam, out / "profile.png")
    plot_residual(y, rel, result.history, out / "residual.png",
                  label="|E| / (1+y²)^(−a/2)", logx=True)  # fmt: skip
    files += ["profile.png", "residual.png", METRICS_FILE]
    metrics = {**metrics, "files": files}
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def save_series(model: AnalyticSeries, name: str, path: Path) -> None:
    """Write the series (equation, degree, scale, w-block, coefficients, λ) to ``path``
    atomically."""
    save_checkpoint(path, {"equation": name, "degree": model.degree, "scale": model.scale,
                           "blocks": model.blocks, "modes": model.modes,
                           "state": model.state_dict()})  # fmt: skip


def load_series_profile(path: str | Path) -> tuple[ProfileEquation, AnalyticSeries]:
    """(equation, series) saved in a run directory's ``profile.pt`` (or that file)."""
    path = Path(path)
    path = path / PROFILE_FILE if path.is_dir() else path
    data = torch.load(path, map_location="cpu", weights_only=True)
    equation = get_equation(data["equation"])
    model = AnalyticSeries(data["degree"], float(data["state"]["lam"]), equation.decay,
                           data["scale"], blocks=data["blocks"], modes=data["modes"])  # fmt: skip
    model.load_state_dict(data["state"])
    return equation, model


def series_summary(m: dict[str, Any], out: Path) -> str:
    """The two lines ``pinnopt blowup`` prints for a series (or branch) run."""
    if m["lambda_mode"] == "branch":
        return branch_summary(m, out)
    unstable = m.get("stability", {}).get("unstable_modes", "?")
    return (
        f"{m['equation']} order {m['order']}: λ = {m['lambda']:.17g} "
        f"({m['lambda_digits'] if m['lambda_digits'] is not None else '?'} digits justified "
        f"by the funnel scan), max |residual| = {m['max_residual']:.2e} "
        f"(relative {m['max_relative_residual']:.2e}), {unstable} unstable mode(s), degree "
        f"{m['degree']}, {m['steps']} steps in {m['seconds']:.1f} s ({m['status']})\n"
        f"run directory: {out}  ({', '.join(m['files'])})"
    )

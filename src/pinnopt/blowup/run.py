"""The blow-up job: find one Burgers profile and its λ, and write a run directory.

    pinnopt blowup burgers --order N [--lambda-mode trainable|projection|funnel]
                           [--time-limit S] [--out DIR]

The run directory holds ``metrics.json`` (order, lambda_mode, status, lambda,
lambda_exact, lambda_rel_error, max_residual and profile_max_error on the dense check
grid y ∈ [−100, 100], steps, seconds, files, …), ``history.csv`` (one row per
Gauss–Newton step or fixed-λ training), ``profile.png``, ``residual.png``,
``profile.pt`` (the ansatz's state, loadable with :func:`load_profile`) and, when
the funnel has at least two points (fixed-λ trainings), ``funnel.csv`` (λ, RMS and
signed residual of each) and ``funnel.png``. ``files`` in metrics.json lists the
files the run wrote.

Status (``status`` in metrics.json): ``completed``; ``time_limit`` once ``time_limit``
seconds have passed; ``interrupted`` once ``should_stop()`` returns True (``pinnopt
blowup`` passes one that is True after a SIGINT or SIGTERM, see
:mod:`pinnopt.train.interrupts`). Either stops the search before its next Gauss–Newton
step, and the run directory is written as for a finished run, from the last good state.

Checkpoints: a run first removes the files of an earlier run from its directory,
then writes ``profile.pt`` (atomically: a temporary file, then a rename) at the start,
every ``checkpoint_every`` Gauss–Newton steps of the profile and once a funnel search
has picked its λ. ``metrics.json`` is written last, so a directory without it holds a
run that was killed (or is still running), and its ``profile.pt`` is the last checkpoint.

Options are checked before anything is written or drawn; a bad one raises
:class:`OptionError` naming the command's flag.

The starting λ: ``lambda0`` if given; else the prediction of a saved
:class:`~pinnopt.blowup.hypernet.LambdaHyperNet` (``hypernet``); else λ_n (1 − 5 %),
a deliberate 5 % miss of the exact rate, which Burgers lets us know.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.burgers import burgers_lambda, burgers_profile, profile_residual
from pinnopt.blowup.hypernet import LambdaHyperNet
from pinnopt.blowup.plots import plot_funnel, plot_profile, plot_residual
from pinnopt.blowup.profile import (
    CHECK_GRID,
    DEGREES,
    LAMBDA_MODES,
    ProfileResult,
    evaluate,
    find_profile,
    refine_profile,
)
from pinnopt.train.checkpoint import save_checkpoint
from pinnopt.train.run_directory import clear_run

DEFAULT_MISS = 0.05  # the default λ0 is λ_n (1 − DEFAULT_MISS)
PROFILE_FILE = "profile.pt"
METRICS_FILE = "metrics.json"
RUN_FILES = ("history.csv", "funnel.csv", "funnel.png", "profile.png", "residual.png",
             "branch.csv", "branch.png", "profile.csv", PROFILE_FILE, METRICS_FILE)  # fmt: skip


class OptionError(ValueError):
    """A bad option of the blow-up job; the message starts with the command's flag."""


def check_options(
    order: int,
    lambda_mode: str = "trainable",
    lambda0: float | None = None,
    hypernet: Path | None = None,
    degree: int | None = None,
    points: int = 400,
    max_steps: int = 200,
    funnel_scan: int | None = None,
    time_limit: float | None = None,
) -> None:
    """Raise :class:`OptionError` ``--flag: what is wrong; allowed: …`` for the first bad
    option of ``pinnopt blowup burgers`` (the hypernetwork file is loaded to check it)."""

    def integer(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not integer(order, 0):
        raise OptionError(f"--order: must be an integer >= 0, got {order!r}")
    if lambda_mode not in LAMBDA_MODES:
        raise OptionError(
            f"--lambda-mode: unknown {lambda_mode!r}; allowed: {', '.join(LAMBDA_MODES)}"
        )
    if lambda0 is not None and not (math.isfinite(lambda0) and lambda0 > 0):
        raise OptionError(f"--lambda0: must be a number > 0, got {lambda0}")
    if hypernet is not None:
        if not Path(hypernet).is_file():
            raise OptionError(f"--hypernet: no file {hypernet}")
        try:
            LambdaHyperNet.load(hypernet)
        except ValueError as e:
            raise OptionError(f"--hypernet: {e}") from None
    if degree is not None and not integer(degree, 1):
        raise OptionError(f"--degree: must be an integer >= 1, got {degree!r}")
    if degree is not None and not integer(points, degree + 1):
        raise OptionError(
            f"--points: must exceed --degree ({degree}): fewer residuals than unknowns; "
            f"got {points!r}"
        )
    if not integer(max_steps, 1):
        raise OptionError(f"--max-steps: must be an integer >= 1, got {max_steps!r}")
    if funnel_scan is not None and not integer(funnel_scan, 0):
        raise OptionError(f"--funnel-scan: must be an integer >= 0, got {funnel_scan!r}")
    if time_limit is not None and not time_limit > 0:
        raise OptionError(f"--time-limit: must be > 0 seconds, got {time_limit}")


def starting_lambda(order: int, lambda0: float | None, hypernet: Path | None) -> tuple[float, str]:
    """(λ0, where it came from): given, a hypernetwork's prediction, or the 5 % miss."""
    if lambda0 is not None:
        return lambda0, "given"
    if hypernet is not None:
        return LambdaHyperNet.load(hypernet).predict(order), f"hypernet {hypernet}"
    return burgers_lambda(order) * (1 - DEFAULT_MISS), f"exact (1 - {DEFAULT_MISS:g})"


def run_burgers(
    order: int,
    out: Path,
    lambda_mode: str = "trainable",
    lambda0: float | None = None,
    hypernet: Path | None = None,
    quiet: bool = False,
    degree: int | None = None,
    points: int = 400,
    max_steps: int = 200,
    funnel_scan: int | None = None,
    time_limit: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 10,
    **options: Any,
) -> dict[str, Any]:
    """Find the order-``order`` profile and write the run directory ``out``; its metrics.

    The options are checked first (:func:`check_options`). ``time_limit``,
    ``should_stop``, ``checkpoint_every`` and ``options`` (tol, funnel_steps, damping)
    go to :func:`find_profile`; ``profile.pt`` is its checkpoint.
    """
    check_options(order, lambda_mode, lambda0, hypernet, degree, points, max_steps,
                  funnel_scan, time_limit)  # fmt: skip
    lam0, source = starting_lambda(order, lambda0, hypernet)
    if not (math.isfinite(lam0) and lam0 > 0):
        raise OptionError(f"--hypernet: predicts λ = {lam0} for order {order}; λ must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_run(out, RUN_FILES)  # an earlier run's files would pass for this one's
    passes = 1 if degree is not None else len(DEGREES)
    budget = max_steps * (2 if lambda_mode == "funnel" else 1) * passes
    with _progress(quiet) as progress:
        task = progress.add_task("gauss-newton", total=budget, loss=math.nan, lam=lam0)

        def show(entry: dict) -> None:
            progress.update(task, completed=min(entry["step"], budget), loss=entry["loss"],
                            lam=entry["lambda"], description=entry["kind"])  # fmt: skip

        common = dict(max_steps=max_steps, funnel_scan=funnel_scan, callback=show,
                      time_limit=time_limit, should_stop=should_stop,
                      checkpoint=lambda m: save_profile(m, out / PROFILE_FILE),
                      checkpoint_every=checkpoint_every, **options)  # fmt: skip
        if degree is None:  # resolution refinement over DEGREES
            result = refine_profile(order, lam0, lambda_mode, **common)
        else:
            result = find_profile(order, lam0, lambda_mode, degree=degree, points=points, **common)
    metrics = {**result.metrics(), "lambda0_source": source}
    return write_run(result, metrics, out)


def burgers_summary(m: dict[str, Any], out: Path) -> str:
    """The two lines ``pinnopt blowup burgers`` prints."""
    return (
        f"burgers order {m['order']}: λ = {m['lambda']:.17g} (exact {m['lambda_exact']:.17g}, "
        f"rel. error {m['lambda_rel_error']:.2e}), max |residual| = {m['max_residual']:.2e}, "
        f"max |U − U_exact| = {m['profile_max_error']:.2e} after {m['steps']} steps in "
        f"{m['seconds']:.1f} s ({m['status']})\n"
        f"run directory: {out}  ({', '.join(m['files'])})"
    )


def write_run(result: ProfileResult, metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the run directory (module docstring); the metrics with ``files``, the names
    of the files written, metrics.json last."""
    out.mkdir(parents=True, exist_ok=True)
    save_profile(result.model, out / PROFILE_FILE)
    files = [PROFILE_FILE, "history.csv"]
    _write_csv(result.history, out / "history.csv")
    if len(result.funnel) >= 2:  # a single point (the profile found) is no funnel
        _write_csv(result.funnel, out / "funnel.csv")
        plot_funnel(result.funnel, result.lam, result.lam_exact, out / "funnel.png")
        files += ["funnel.csv", "funnel.png"]
    y, u, du = evaluate(result.model, CHECK_GRID)
    exact = burgers_profile(y, result.order)[0]
    plot_profile(y, u, exact, result.order, out / "profile.png")
    plot_residual(y, profile_residual(y, u, du, result.lam), result.history, out / "residual.png")
    files += ["profile.png", "residual.png", METRICS_FILE]
    metrics = {**metrics, "files": files}
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")  # last: run complete
    return metrics


def save_profile(model: BurgersAnsatz, path: Path) -> None:
    """Write the ansatz (order, degree, stretch, state with λ) to ``path`` atomically."""
    save_checkpoint(path, {"order": model.order, "degree": model.degree,
                           "stretch": model.stretch, "state": model.state_dict()})  # fmt: skip


def load_profile(path: str | Path) -> BurgersAnsatz:
    """The ansatz saved in a run directory's ``profile.pt`` (or that file), λ included."""
    path = Path(path)
    path = path / PROFILE_FILE if path.is_dir() else path
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = BurgersAnsatz(data["order"], float(data["state"]["lam"]), degree=data["degree"],
                          stretch=data["stretch"])  # fmt: skip
    # profile.pt files written before the free part was named ``network`` call it ``series``
    state = {k.replace("series.", "network.", 1): v for k, v in data["state"].items()}
    model.load_state_dict(state)
    return model


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3e}  λ {task.fields[lam]:.15f}"),
        TimeElapsedColumn(),
        disable=quiet,
    )

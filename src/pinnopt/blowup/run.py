"""The blow-up job: find one Burgers profile and its λ, and write a run directory.

    pinnopt blowup burgers --order N [--lambda-mode trainable|projection|funnel] [--out DIR]

The run directory holds ``metrics.json`` (order, lambda, lambda_exact,
lambda_rel_error, max_residual and profile_max_error on the dense check grid
y ∈ [−100, 100], steps, seconds, …), ``history.csv`` (one row per Gauss–Newton step
or fixed-λ training), ``funnel.csv`` (λ, RMS and signed residual of each fixed-λ
training), ``profile.png``, ``residual.png``, ``funnel.png`` (when there were
fixed-λ trainings) and ``profile.pt`` (the ansatz's state, loadable with
:func:`load_profile`).

The starting λ: ``lambda0`` if given; else the prediction of a saved
:class:`~pinnopt.blowup.hypernet.LambdaHyperNet` (``hypernet``); else λ_n (1 − 5 %),
a deliberate 5 % miss of the exact rate, which Burgers lets us know.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.burgers import burgers_lambda, burgers_profile, profile_residual
from pinnopt.blowup.hypernet import LambdaHyperNet
from pinnopt.blowup.plots import plot_funnel, plot_profile, plot_residual
from pinnopt.blowup.profile import CHECK_GRID, ProfileResult, evaluate, find_profile

DEFAULT_MISS = 0.05  # the default λ0 is λ_n (1 − DEFAULT_MISS)
PROFILE_FILE = "profile.pt"


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
    **options: Any,
) -> dict[str, Any]:
    """Find the order-``order`` profile (``options`` go to :func:`find_profile`), write ``out``."""
    lam0, source = starting_lambda(order, lambda0, hypernet)
    budget = options.get("max_steps", 200) * (2 if lambda_mode == "funnel" else 1)
    with _progress(quiet) as progress:
        task = progress.add_task("gauss-newton", total=budget, loss=math.nan, lam=lam0)

        def show(entry: dict) -> None:
            progress.update(task, completed=min(entry["step"], budget), loss=entry["loss"],
                            lam=entry["lambda"], description=entry["kind"])  # fmt: skip

        result = find_profile(order, lam0, lambda_mode, callback=show, **options)
    metrics = {**result.metrics(), "lambda0_source": source}
    write_run(result, metrics, out)
    return metrics


def write_run(result: ProfileResult, metrics: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(result.history, out / "history.csv")
    if result.funnel:
        _write_csv(result.funnel, out / "funnel.csv")
        plot_funnel(result.funnel, result.lam, result.lam_exact, out / "funnel.png")
    y, u, du = evaluate(result.model, CHECK_GRID)
    exact = burgers_profile(y, result.order)[0]
    plot_profile(y, u, exact, result.order, out / "profile.png")
    plot_residual(y, profile_residual(y, u, du, result.lam), result.history, out / "residual.png")
    model = result.model
    torch.save({"order": model.order, "degree": model.series.degree, "stretch": model.stretch,
                "state": model.state_dict()}, out / PROFILE_FILE)  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # last: run complete


def load_profile(path: str | Path) -> BurgersAnsatz:
    """The ansatz saved in a run directory's ``profile.pt`` (or that file), λ included."""
    path = Path(path)
    path = path / PROFILE_FILE if path.is_dir() else path
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = BurgersAnsatz(data["order"], float(data["state"]["lam"]), degree=data["degree"],
                          stretch=data["stretch"])  # fmt: skip
    model.load_state_dict(data["state"])
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

"""The run directory: what a run leaves behind, and how its folder is chosen.

    config.toml    the fully resolved config (runs started from a config or the CLI),
                   written before training
    checkpoint.pt  the trainer's state: at the start, every ``checkpoint_every`` steps,
                   at the end and on Ctrl-C / SIGTERM (written atomically)
    history.csv    step, time, stage, lr, loss per term, rel_l2 where evaluated
    loss.png       the history as a plot
    solution.png   prediction, reference and |error|
    metrics.json   written last, whatever the status (completed, interrupted, …)

:class:`~pinnopt.train.trainer.Trainer` writes all of these but config.toml when it
has an ``out_dir``. A folder that already holds a run is not reused unless the caller
says so (:func:`check_fresh`); with no folder given, a new numbered one is taken
(:func:`next_run_dir`).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from torch import nn

from pinnopt.plots import plot_loss, plot_solution
from pinnopt.problems.base import Problem

# the files a solve writes; any of them in a folder means a run was (or is being) written
RUN_FILES = ("config.toml", "checkpoint.pt", "metrics.json", "history.csv", "loss.png",
             "solution.png", "points.png")  # fmt: skip


def holds_run(path: str | Path, files: tuple[str, ...] = RUN_FILES) -> bool:
    """Whether ``path`` is a folder with one of a run's ``files`` in it."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in files)


def check_fresh(path: str | Path) -> None:
    """ValueError when ``path`` already holds a run (its files would be overwritten)."""
    if holds_run(path):
        raise ValueError(
            f"{path} already holds a run; choose another folder, resume it, or overwrite it"
        )


def clear_run(path: str | Path, files: tuple[str, ...] = RUN_FILES) -> None:
    """Remove a run's ``files`` from ``path`` (to overwrite it); other files stay."""
    for name in files:
        (Path(path) / name).unlink(missing_ok=True)


def next_run_dir(parent: str | Path, name: str) -> Path:
    """``parent/name-N`` with N one more than the largest N already there (from 1)."""
    parent = Path(parent)
    pattern = re.compile(rf"{re.escape(name)}-(\d+)")
    taken = [int(m.group(1)) for p in parent.glob(f"{name}-*") if (m := pattern.fullmatch(p.name))]
    return parent / f"{name}-{max(taken, default=0) + 1}"


def write_history(history: list[dict[str, Any]], path: str | Path) -> None:
    """The history rows as CSV, columns step, time, stage, lr, loss, network first."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    first = ["step", "time", "stage", "lr", "loss", "network"]
    keys = [k for k in first if k in keys] + [k for k in keys if k not in first]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def write_run_files(
    out: str | Path,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    model: nn.Module,
    problem: Problem,
) -> None:
    """history.csv, loss.png, solution.png, then metrics.json (last: the run has ended)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_history(history, out / "history.csv")
    plot_loss(history, out / "loss.png")
    plot_solution(model, problem, out / "solution.png")
    (out / "metrics.json").write_text(json.dumps(finite(metrics), indent=2) + "\n")


def finite(obj: Any) -> Any:
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    return obj

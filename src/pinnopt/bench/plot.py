"""Error against wall time for every run of a benchmark matrix.

Each run's ``history.csv`` holds rel_l2 at its evaluation steps, with the run's
elapsed time. A curve is those (time, rel_l2) points, drawn as markers joined by
straight lines; the plot has one panel per problem and one colour per optimizer, log
axes. With several seeds each seed is a faint line and the median over seeds a bold
one (no markers), on a common log-spaced time grid from the latest first evaluation
to the earliest last one (each seed's curve is interpolated linearly in log time and
log error, as the faint lines are drawn).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pinnopt.bench.matrix import run_dir  # noqa: E402


@dataclass
class Curve:
    """rel_l2 against elapsed seconds (and step) of one run."""

    problem: str
    optimizer: str
    seed: int
    step: list[int]
    time: list[float]
    rel_l2: list[float]


def read_curve(path: str | Path, problem: str, optimizer: str, seed: int) -> Curve:
    """The evaluated rows (finite, positive time and rel_l2) of a run's ``history.csv``."""
    curve = Curve(problem, optimizer, seed, [], [], [])
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("rel_l2"):
                continue
            t, e = float(row["time"]), float(row["rel_l2"])
            if t > 0 and e > 0 and math.isfinite(e):
                curve.step.append(int(row["step"]))
                curve.time.append(t)
                curve.rel_l2.append(e)
    return curve


def error_curves(out: str | Path, rows: list[dict[str, Any]]) -> list[Curve]:
    """The curve of every results row whose run directory has a ``history.csv``."""
    curves = []
    for r in rows:
        path = run_dir(out, r["problem"], r["optimizer"], r["seed"]) / "history.csv"
        if path.is_file():
            curves.append(read_curve(path, r["problem"], r["optimizer"], r["seed"]))
    return curves


def write_error_curves(curves: list[Curve], path: str | Path) -> None:
    """All curves as one long CSV: problem, optimizer, seed, step, time, rel_l2."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["problem", "optimizer", "seed", "step", "time", "rel_l2"])
        for c in curves:
            for step, t, e in zip(c.step, c.time, c.rel_l2):
                writer.writerow([c.problem, c.optimizer, c.seed, step, t, e])


def median_curve(curves: list[Curve], n: int = 200) -> tuple[np.ndarray, np.ndarray] | None:
    """(t, median rel_l2 over ``curves`` at t) on a log grid where every curve has data."""
    curves = [c for c in curves if c.time]
    if not curves:
        return None
    lo, hi = max(c.time[0] for c in curves), min(c.time[-1] for c in curves)
    if not hi > lo:
        return None
    grid = np.log(np.geomspace(lo, hi, n))
    logs = [np.interp(grid, np.log(c.time), np.log(c.rel_l2)) for c in curves]
    return np.exp(grid), np.exp(np.median(np.stack(logs), axis=0))


def plot_error_vs_time(curves: list[Curve], path: str | Path) -> None:
    """One panel per problem: rel_l2 against wall time, one colour per optimizer."""
    problems = list(dict.fromkeys(c.problem for c in curves)) or ["(no runs)"]
    optimizers = list(dict.fromkeys(c.optimizer for c in curves))
    colours = {o: plt.cm.tab10(i % 10) for i, o in enumerate(optimizers)}
    ncols = min(3, len(problems))
    nrows = math.ceil(len(problems) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, problem in zip(axes.flat, problems):
        for optimizer in optimizers:
            mine = [c for c in curves if c.problem == problem and c.optimizer == optimizer]
            several = len(mine) > 1
            for k, c in enumerate(mine):
                if c.time:
                    label = None if several or k else optimizer
                    ax.loglog(c.time, c.rel_l2, color=colours[optimizer], marker="o",
                              ms=3, alpha=0.3 if several else 1.0, lw=1 if several else 1.5,
                              label=label)  # fmt: skip
            median = median_curve(mine) if several else None
            if median is not None:
                ax.loglog(*median, color=colours[optimizer], lw=2, label=f"{optimizer} (median)")
            elif several:  # no common time range: label the faint lines instead
                ax.plot([], [], color=colours[optimizer], label=optimizer)
        ax.set_title(problem)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("rel. L2 error")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(problems) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

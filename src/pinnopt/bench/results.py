"""The results table of a benchmark matrix: one row per run, kept in ``results.csv``.

Floats are written with ``repr`` (every digit), so a row holds exactly the numbers
of its run's ``metrics.json``; a value that is missing (a run that failed) is empty.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

RESULTS_CSV = "results.csv"
BENCH_JSON = "bench.json"  # the command, machine and date of the matrix
INT_COLUMNS = ("seed", "width", "depth", "n_params", "steps")
FLOAT_COLUMNS = ("rel_l2", "max_abs_error", "final_loss", "wall_time_s")
COLUMNS = (
    "problem", "optimizer", "seed", "model", "width", "depth", "n_params",
    "rel_l2", "max_abs_error", "final_loss", "steps", "wall_time_s", "status",
)  # fmt: skip


def result_row(
    problem: str,
    optimizer: str,
    seed: int,
    model: dict[str, Any],
    metrics: dict[str, Any] | None,
    status: str | None = None,
) -> dict[str, Any]:
    """A results row from a run's metrics (``None`` for a run that failed: ``status`` says)."""
    m = metrics or {}
    return {
        "problem": problem,
        "optimizer": optimizer,
        "seed": seed,
        "model": model["kind"],
        "width": model["width"],
        "depth": model["depth"],
        "n_params": m.get("n_params"),
        "rel_l2": m.get("rel_l2", math.nan),
        "max_abs_error": m.get("max_abs_error", math.nan),
        "final_loss": m.get("final_loss", math.nan),
        "steps": m.get("steps"),
        "wall_time_s": m.get("wall_time_s", math.nan),
        "status": status or m.get("status", ""),
    }


def write_results(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write ``rows`` (dicts with :data:`COLUMNS`) as CSV."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``results.csv``, numbers parsed (missing ones as None / NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for k in INT_COLUMNS:
            row[k] = int(row[k]) if row[k] else None
        for k in FLOAT_COLUMNS:
            row[k] = float(row[k]) if row[k] else math.nan
    return rows

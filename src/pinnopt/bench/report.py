"""The report of a benchmark matrix, from its directory alone.

:func:`write_report` reads ``results.csv`` and ``bench.json`` (and each run's
``history.csv``) and writes

* ``results.md``: one row per problem × optimizer with the median relative L2 error
  over seeds (and its min and max when there is more than one seed), the median wall
  time and step count, and the runs' statuses, under a line saying how the numbers
  were made (command, machine, torch threads and version, dtype, date);
* ``error_vs_time.csv`` and ``error_vs_time.png`` (see :mod:`pinnopt.bench.plot`).

It can be re-run on a finished (or interrupted) matrix: ``write_report("runs/bench")``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from pinnopt.bench.plot import error_curves, plot_error_vs_time, write_error_curves
from pinnopt.bench.results import BENCH_JSON, RESULTS_CSV, read_results

RESULTS_MD = "results.md"


def group_runs(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows by (problem, optimizer), in the order they first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["problem"], row["optimizer"]), []).append(row)
    return groups


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / min / max rel_l2, median wall time and steps over the finite values of
    ``runs`` (the seeds of one problem × optimizer), and a count of their statuses."""

    def finite(key: str) -> list[float]:
        return [float(r[key]) for r in runs if r[key] is not None and math.isfinite(r[key])]

    errors, times, steps = finite("rel_l2"), finite("wall_time_s"), finite("steps")
    counts = Counter(r["status"] for r in runs)
    return {
        "n_params": runs[0]["n_params"],
        "seeds": len(runs),
        "rel_l2": statistics.median(errors) if errors else math.nan,
        "rel_l2_min": min(errors, default=math.nan),
        "rel_l2_max": max(errors, default=math.nan),
        "wall_time_s": statistics.median(times) if times else math.nan,
        "steps": statistics.median(steps) if steps else math.nan,
        "status": ", ".join(s if n == 1 else f"{s} ×{n}" for s, n in counts.items()),
    }


def results_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """``results.md``: the header line and one markdown row per problem × optimizer."""
    groups = {key: summarize(runs) for key, runs in group_runs(rows).items()}
    spread = any(s["seeds"] > 1 for s in groups.values())
    lines = [header(meta), ""]
    head = ["problem", "optimizer", "params", "seeds", "rel_l2 (median)"]
    head += ["rel_l2 min", "rel_l2 max"] if spread else []
    head += ["wall time (s)", "steps", "status"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) + ["---"]) + "|")
    for (problem, optimizer), s in groups.items():
        cells = [problem, f"`{optimizer}`", _int(s["n_params"]), str(s["seeds"]), _e(s["rel_l2"])]
        cells += [_e(s["rel_l2_min"]), _e(s["rel_l2_max"])] if spread else []
        cells += [_f(s["wall_time_s"]), _int(s["steps"]), s["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Medians over seeds; wall time and steps are those of each whole run."]
    return "\n".join(lines) + "\n"


def header(meta: dict[str, Any]) -> str:
    """How the numbers were made, from ``bench.json``."""
    if not meta:
        return "Produced by `pinnopt bench` (command and machine not recorded)."
    limit = meta.get("time_limit_s")
    budget = f"a time limit of {limit:g} s per run" if limit else "no time limit"
    return (
        f"Produced by `{meta['command']}` on {meta['machine']} with "
        f"{meta['torch_threads']} torch thread(s), torch {meta['torch']}, {meta['dtype']} "
        f"({meta.get('device', 'cpu')}), {budget}, on {meta['date']}."
    )


def write_report(out: str | Path) -> dict[str, Path]:
    """Write ``results.md`` and the error-vs-time CSV and plot from the matrix in ``out``."""
    out = Path(out)
    rows = read_results(out / RESULTS_CSV)
    meta_path = out / BENCH_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    paths = {
        "results.md": out / RESULTS_MD,
        "error_vs_time.csv": out / "error_vs_time.csv",
        "error_vs_time.png": out / "error_vs_time.png",
    }
    paths["results.md"].write_text(results_table(rows, meta))
    curves = error_curves(out, rows)
    write_error_curves(curves, paths["error_vs_time.csv"])
    plot_error_vs_time(curves, paths["error_vs_time.png"])
    return paths


def _e(x: float) -> str:
    return f"{x:.2e}" if math.isfinite(x) else "–"


def _f(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "–"


def _int(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return str(int(x)) if x == int(x) else f"{x:.1f}"

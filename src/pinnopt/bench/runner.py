"""Running a benchmark matrix: each run is a :func:`pinnopt.solve.solve` of its config.

The runner writes ``bench.json`` (the command, the machine and the date) before the
first run, and ``results.csv`` again after every run, so that an interrupted or
crashed matrix keeps what it finished. A run that raises is recorded with status
``error`` (its message in ``error.txt`` in its run directory) and the matrix goes on;
Ctrl-C stops the matrix after the current run.
"""

from __future__ import annotations

import json
import math
import platform
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinnopt.bench.matrix import Run
from pinnopt.bench.results import BENCH_JSON, RESULTS_CSV, result_row, write_results
from pinnopt.solve import solve


def describe(runs: list[Run], command: str) -> dict[str, Any]:
    """What ``results.md`` says about how the numbers were made."""
    t = runs[0].config.training
    return {
        "command": command,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "torch_threads": t.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": t.dtype,
        "device": t.device,
        "time_limit_s": t.time_limit,
        "steps": t.steps,
        "seeds": len({r.seed for r in runs}),
    }


def run_matrix(
    runs: list[Run],
    out: str | Path,
    command: str,
    console: Console | None = None,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell of ``runs``; returns the results rows (also in ``out/results.csv``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    (out / BENCH_JSON).write_text(json.dumps(describe(runs, command), indent=2) + "\n")
    rows: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task("bench", total=len(runs))
        for i, run in enumerate(runs, 1):
            progress.update(task, description=f"{run.problem} {run.optimizer} seed {run.seed}")
            try:
                row = _one_run(run)
            except KeyboardInterrupt:
                progress.console.print("interrupted: the matrix stops here", markup=False)
                break
            rows.append(row)
            write_results(rows, out / RESULTS_CSV)
            progress.console.print(f"[{i}/{len(runs)}] {summary_line(row)}", markup=False,
                                   highlight=False, soft_wrap=True)  # fmt: skip
            progress.advance(task)
            if row["status"] == "interrupted":
                progress.console.print("interrupted: the matrix stops here", markup=False)
                break
    if not rows:
        write_results(rows, out / RESULTS_CSV)
    return rows


def _one_run(run: Run) -> dict[str, Any]:
    model = run.config.model.model_dump()
    try:
        metrics = solve(run.config, overwrite=True)  # a matrix re-run replaces its cells
    except Exception as e:  # a crashed run is a result of the matrix, not its end
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / "error.txt").write_text(traceback.format_exc())
        row = result_row(run.problem, run.optimizer, run.seed, model, None, status="error")
        row["message"] = f"{type(e).__name__}: {e}"
        return row
    return result_row(run.problem, run.optimizer, run.seed, model, metrics)


def summary_line(row: dict[str, Any]) -> str:
    """One line about a finished run."""
    head = f"{row['problem']} {row['optimizer']} seed {row['seed']}:"
    if row["status"] == "error":
        return f"{head} error ({row.get('message', '')})"
    return (
        f"{head} rel_l2 {_e(row['rel_l2'])}, max|err| {_e(row['max_abs_error'])}, "
        f"loss {_e(row['final_loss'])}, {row['steps']} steps in {row['wall_time_s']:.1f} s "
        f"({row['status']})"
    )


def _e(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.3e}"

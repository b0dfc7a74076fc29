"""Running a benchmark matrix: each run is a :func:`pinnopt.solve.solve` of its config.

The runner writes ``bench.json`` (the command, the machine and the date) before the
first run, and ``results.csv`` again after every run, so that an interrupted or
crashed matrix keeps what it finished. A run that raises is recorded with status
``error`` (its message in ``error.txt`` in its run directory) and the matrix goes on;
Ctrl-C stops the matrix after the current run. Running the matrix again skips the cells
already done (same config, finished), so an interrupted matrix resumes. Cells run one
after the other here, or several at a time in local processes or as Ray tasks
(:mod:`pinnopt.bench.pool`), always through :func:`run_cell`.
"""

from __future__ import annotations

import json
import math
import platform
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinnopt.bench.matrix import Run
from pinnopt.bench.pool import local_cells, ray_cells
from pinnopt.bench.results import BENCH_JSON, RESULTS_CSV, result_row, write_results
from pinnopt.config import dump_config
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
    jobs: int = 1,
    ray: str | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of ``runs``; returns the results rows, in the matrix's order (also in
    ``out/results.csv``). ``jobs`` > 1 runs that many cells at a time in local processes,
    ``ray`` (an address, or "local") runs them as Ray tasks (:mod:`pinnopt.bench.pool`).
    A cell whose run directory already holds a finished run of the same config is not
    run again: its row is read back."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    (out / BENCH_JSON).write_text(json.dumps(describe(runs, command), indent=2) + "\n")
    rows: list[dict[str, Any] | None] = [finished_row(run) for run in runs]
    todo = [i for i, row in enumerate(rows) if row is None]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )

    def done() -> list[dict[str, Any]]:
        return [row for row in rows if row is not None]

    with progress:
        task = progress.add_task("bench", total=len(runs), completed=len(runs) - len(todo))
        if len(todo) < len(runs):
            progress.console.print(f"{len(runs) - len(todo)} cell(s) already done in {out}: "
                                   "read back, not run again", markup=False)  # fmt: skip
        cells = [runs[i] for i in todo]
        if ray is not None:
            finished = ray_cells(cells, ray, run_cell)
        elif jobs > 1:
            finished = local_cells(cells, jobs, run_cell)
        else:
            finished = _serial_cells(cells, progress, task)
        try:
            for k, row in finished:
                rows[todo[k]] = row
                write_results(done(), out / RESULTS_CSV)
                progress.console.print(f"[{len(done())}/{len(runs)}] {summary_line(row)}",
                                       markup=False, highlight=False, soft_wrap=True)  # fmt: skip
                progress.advance(task)
                if row["status"] == "interrupted":
                    progress.console.print("interrupted: the matrix stops here", markup=False)
                    break
        except KeyboardInterrupt:
            progress.console.print("interrupted: the matrix stops here", markup=False)
        finally:
            finished.close()  # a pool stops the cells it still runs
    write_results(done(), out / RESULTS_CSV)
    return done()


def _serial_cells(runs: list[Run], progress: Progress, task) -> Iterator[tuple[int, dict]]:
    for index, run in enumerate(runs):
        progress.update(task, description=f"{run.problem} {run.optimizer} seed {run.seed}")
        yield index, run_cell(run)


def finished_row(run: Run) -> dict[str, Any] | None:
    """The row of a run that its directory holds already, finished (not interrupted) and
    with the same config; None when the cell has to run."""
    metrics, config = run.out_dir / "metrics.json", run.out_dir / "config.toml"
    if not (metrics.is_file() and config.is_file()):
        return None
    if config.read_text() != dump_config(run.config):
        return None
    m = json.loads(metrics.read_text())
    if m.get("status") == "interrupted":
        return None
    return result_row(run.problem, run.optimizer, run.seed, run.config.model.model_dump(), m)


def run_cell(run: Run) -> dict[str, Any]:
    """Run one cell (in this process) and return its results row; a run that raises is
    recorded as a row with status ``error``, its traceback in ``error.txt``."""
    model = run.config.model.model_dump()
    try:
        metrics = solve(run.config, overwrite=True)  # a cell that runs replaces its directory
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

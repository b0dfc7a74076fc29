"""Running the cells of a benchmark matrix at the same time: local processes or Ray tasks.

Both run the one function that the serial runner runs in its own process,
:func:`pinnopt.bench.runner.run_cell` (a :func:`pinnopt.solve.solve` of the cell's config,
whose result row it returns), so a cell's numbers do not depend on where it ran: each
cell sets its own torch thread count from its config (``--threads``, 1 by default).

* :func:`local_cells`: ``jobs`` processes at a time (spawned, one per cell). A process
  that dies without a result (killed, out of memory) is recorded as a row with status
  ``killed`` and its exit code, and the others go on.
* :func:`ray_cells`: one ``ray.remote`` task per cell, on the Ray cluster at ``address``
  (``"local"``: a Ray started on this machine for the matrix). A task that fails or whose
  worker dies is recorded with status ``error``. Ray is an optional dependency
  (``pip install "pinnopt[ray]"``).

Both yield (index of the cell, its row) as cells finish, in no particular order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pinnopt.bench.matrix import Run
from pinnopt.bench.results import result_row

POLL_S = 0.05  # how often the local pool looks for finished processes


def _cell_process(run_cell: Callable[[Run], dict], run: Run, result: str) -> None:
    """A spawned process: run one cell, leave its row in the file ``result``."""
    Path(result).write_text(json.dumps(run_cell(run)))


def local_cells(
    runs: list[Run], jobs: int, run_cell: Callable[[Run], dict]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``runs`` in ``jobs`` processes at a time; (index, row) as each finishes."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    context = mp.get_context("spawn")  # a fresh interpreter: no state shared with this one
    waiting = list(enumerate(runs))
    running: dict[int, tuple[Any, Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    index, run = waiting.pop(0)
                    result = Path(tmp) / f"{index}.json"
                    proc = context.Process(target=_cell_process, args=(run_cell, run, str(result)))
                    proc.start()
                    running[index] = (proc, result)
                done = [i for i, (proc, _) in running.items() if not proc.is_alive()]
                if not done:
                    time.sleep(POLL_S)
                for index in done:
                    proc, result = running.pop(index)
                    proc.join()
                    yield index, _row_of(runs[index], proc.exitcode, result)
        finally:  # Ctrl-C or an error here: the cells still running stop too
            for proc, _ in running.values():
                proc.terminate()
                proc.join()


def _row_of(run: Run, exitcode: int | None, result: Path) -> dict[str, Any]:
    if result.exists():
        return json.loads(result.read_text())
    row = result_row(run.problem, run.optimizer, run.seed, run.config.model.model_dump(), None,
                     status="killed")  # fmt: skip
    row["message"] = f"the cell's process ended with exit code {exitcode} and no result"
    return row


def ray_cells(
    runs: list[Run], address: str, run_cell: Callable[[Run], dict]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``runs`` as Ray tasks on the cluster at ``address`` ("local": start one here)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    try:
        remote = ray.remote(run_cell)
        pending = {remote.remote(run): index for index, run in enumerate(runs)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                row = ray.get(ready[0])
            except Exception as e:  # the task raised, or its worker died
                run = runs[index]
                row = result_row(run.problem, run.optimizer, run.seed,
                                 run.config.model.model_dump(), None, status="error")  # fmt: skip
                row["message"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            yield index, row
    finally:
        if started:
            ray.shutdown()


def import_ray():
    """The ``ray`` module; ImportError saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            'Ray is not installed; install it with `pip install "pinnopt[ray]"` '
            "(or `pip install ray`)"
        ) from None
    return ray

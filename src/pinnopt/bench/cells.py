"""Independent benchmark cells, run in order or in a pool of processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def run_cells(fn: Callable[..., Any], cells: Iterable[tuple], jobs: int = 1) -> list[Any]:
    """``[fn(*cell) for cell in cells]``, with ``jobs`` > 1 in that many processes (each
    cell in its own, so one-thread runs do not share torch's thread pool); results come
    back in the order of ``cells``."""
    cells = list(cells)
    if jobs <= 1:
        return [fn(*cell) for cell in cells]
    with ProcessPoolExecutor(jobs) as pool:
        return [f.result() for f in [pool.submit(fn, *cell) for cell in cells]]

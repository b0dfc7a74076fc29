"""Ending a profile search between two Gauss–Newton steps: a time limit or a stop request."""

from __future__ import annotations

import time
from collections.abc import Callable


class Stopped(Exception):
    """Raised between two Gauss–Newton steps to end the search; ``status`` says why."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def stop_check(should_stop: Callable[[], bool] | None, time_limit: float | None, start: float
               ) -> Callable[[], None]:  # fmt: skip
    """A function to call before each step: it raises :class:`Stopped` with status
    "interrupted" once ``should_stop()`` is True, "time_limit" once ``time_limit`` seconds
    have passed since ``start`` (a ``time.perf_counter()`` reading)."""

    def tick() -> None:
        if should_stop is not None and should_stop():
            raise Stopped("interrupted")
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            raise Stopped("time_limit")

    return tick

"""Stopping a long run cleanly on Ctrl-C (SIGINT) and SIGTERM.

While a :class:`StopRequest` is active, the first SIGINT or SIGTERM does not
interrupt the work where it stands: it records the signal, and the loop that
polls :attr:`StopRequest.signum` stops at its next step boundary, where its
state is consistent and can be checkpointed. A second signal raises
``KeyboardInterrupt`` at once, for a user who does not want to wait.

Batch schedulers and ``timeout`` send SIGTERM, a terminal sends SIGINT; both
end the same way. Requests nest: an inner one reports to the outermost, and
only the outermost decides what happens after the stop. A run that saved its
state hands the signal on (:meth:`StopRequest.pass_on`) when nobody above it
listens, so a script still ends as that signal would end it. A command line
exits with :func:`exit_code` of the signal, 128 + its number (130 for SIGINT,
143 for SIGTERM), as a shell reports it. Signal handlers can only be installed
from the main thread; elsewhere the request is inert and Python's default
handling stays.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The exit status a shell reports for a process ended by ``signum``: 128 + signum."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    """``"SIGINT"``, ``"SIGTERM"``, …"""
    return signal.Signals(signum).name


class StopRequest:
    """Context manager: the first SIGINT/SIGTERM sets ``signum``; a second raises
    ``KeyboardInterrupt``. Nested requests share the outer one's record."""

    _active: StopRequest | None = None

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._outer: StopRequest | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        outer = StopRequest._active
        if outer is not None:  # an enclosing run already listens: report to it
            self._outer = outer
            return outer
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            StopRequest._active = self
        return self

    def pass_on(self) -> None:
        """Raise the recorded signal again, now that the handlers before this request are
        back: Python's own turns SIGINT into ``KeyboardInterrupt`` and lets SIGTERM end
        the process (exit status 143). Nothing happens when no signal came."""
        if self.signum is not None and not self._previous:
            signal.raise_signal(self.signum)

    def __exit__(self, *exc: object) -> None:
        if self._outer is not None:
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
        if StopRequest._active is self:
            StopRequest._active = None

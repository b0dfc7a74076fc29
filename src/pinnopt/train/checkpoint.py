"""Checkpoints written atomically and read with clear errors."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "pinnopt-checkpoint-1"


def callback_state(callback: Any) -> Any:
    """What a trainer callback keeps across a resume: its ``state_dict()``, or None."""
    return callback.state_dict() if hasattr(callback, "state_dict") else None


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not match the run."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash while writing leaves the previous checkpoint intact, and the temporary
    file it left is removed by the next successful write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f"{glob.escape(path.name)}*.tmp"):  # left by a killed write
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"corrupt checkpoint {path}: {type(e).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"corrupt checkpoint {path}: not a {FORMAT} file")
    return payload

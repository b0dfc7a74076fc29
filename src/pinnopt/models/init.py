"""Weight initializers by name for the linear layers of a model."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn


def _kaiming(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="linear")


def _xavier(w: torch.Tensor) -> None:
    nn.init.xavier_normal_(w)


def _orthogonal(w: torch.Tensor) -> None:
    nn.init.orthogonal_(w)


def _small_uniform(w: torch.Tensor) -> None:
    bound = 0.1 / math.sqrt(w.shape[1])
    nn.init.uniform_(w, -bound, bound)


INITIALIZERS: dict[str, Callable[[torch.Tensor], None]] = {
    "kaiming": _kaiming,
    "xavier": _xavier,
    "orthogonal": _orthogonal,
    "small-uniform": _small_uniform,
}


def initialize(module: nn.Module, name: str) -> None:
    """Initialize every ``nn.Linear`` weight in ``module`` by ``name``; biases to zero."""
    if name not in INITIALIZERS:
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)}, got {name!r}")
    for m in module.modules():
        if isinstance(m, nn.Linear):
            INITIALIZERS[name](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global generator seeded with ``seed``, restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_dims(
    in_dim: int, out_dim: int, lower: Sequence[float] | None, upper: Sequence[float] | None
) -> None:
    """ValueError unless the dimensions are positive and the box matches ``in_dim``."""
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"in_dim and out_dim must be >= 1, got {in_dim} and {out_dim}")
    if (lower is None) != (upper is None):
        raise ValueError("give both lower and upper, or neither")
    if lower is not None and not len(lower) == len(upper) == in_dim:
        raise ValueError(f"lower and upper must have in_dim = {in_dim} entries")

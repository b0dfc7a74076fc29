"""Models by name.

A model module registers a factory beside its class with :func:`register_model`
(``pinnopt.models`` imports every model module); this module imports none of them. A
registered factory is called as ``factory(in_dim, lower, upper, **options)`` with every
option of :func:`build_model`, and takes the ones its model uses (``**_`` the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pinnopt.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register_model = MODELS.register  # decorator adding a model factory under a name


def build_model(
    kind: str,
    in_dim: int,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    out_dim: int = 1,
    width: int = 32,
    depth: int = 2,
    activation: str = "tanh",
    init: str = "xavier",
    degree: int = 5,
    fourier_features: int = 0,
    fourier_sigma: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """Build a model by name (``mlp`` or ``chebykan``) for inputs in the box [lower, upper].

    ``activation``, ``init`` and the Fourier features apply to ``mlp``; ``degree`` to
    ``chebykan`` (whose hidden nonlinearity is tanh by construction).
    """
    if kind not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {kind!r}")
    return MODELS[kind](
        in_dim, lower, upper, out_dim=out_dim, width=width, depth=depth,
        activation=activation, init=init, degree=degree, fourier_features=fourier_features,
        fourier_sigma=fourier_sigma, seed=seed, dtype=dtype,
    )  # fmt: skip

"""Models for PINNs; every built-in model supports forward jets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pinnopt.models.chebykan import ChebyKAN, ChebyshevLayer
from pinnopt.models.init import INITIALIZERS, initialize
from pinnopt.models.layers import ACTIVATIONS, Activation, FourierFeatures, InputScaling
from pinnopt.models.mlp import MLP

MODELS = ("mlp", "chebykan")


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
    if kind == "mlp":
        return MLP(
            in_dim, out_dim, width, depth, activation, init, lower, upper,
            fourier_features, fourier_sigma, seed, dtype,
        )  # fmt: skip
    if kind == "chebykan":
        return ChebyKAN(in_dim, out_dim, width, depth, degree, lower, upper, seed, dtype)
    raise ValueError(f"model must be one of {list(MODELS)}, got {kind!r}")


__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "MODELS",
    "MLP",
    "Activation",
    "ChebyKAN",
    "ChebyshevLayer",
    "FourierFeatures",
    "InputScaling",
    "build_model",
    "initialize",
]

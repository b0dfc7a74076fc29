"""Multilayer perceptron for PINNs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pinnopt.models.init import check_dims, initialize, seeded
from pinnopt.models.layers import Activation, FourierFeatures, InputScaling
from pinnopt.models.registry import register_model


class MLP(nn.Sequential):
    """x ↦ W_L σ(… σ(W_1 s(x) + b_1) …) + b_L with ``depth`` hidden layers of ``width`` units.

    ``s`` maps the domain box onto [-1, 1]^d (when ``lower``/``upper`` are given) and
    optionally lifts it with random Fourier features. Every layer supports jets.
    The weights are drawn from ``seed``; the model is built in ``dtype`` (float64).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1,
        width: int = 32,
        depth: int = 2,
        activation: str = "tanh",
        init: str = "xavier",
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        fourier_features: int = 0,
        fourier_sigma: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        check_dims(in_dim, out_dim, lower, upper)
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[nn.Module] = []
        if lower is not None and upper is not None:
            layers.append(InputScaling(lower, upper))
        features = in_dim
        if fourier_features:
            ff = FourierFeatures(in_dim, fourier_features, fourier_sigma, seed=seed)
            layers.append(ff)
            features = ff.out_dim
        for _ in range(depth):
            layers += [nn.Linear(features, width), Activation(activation)]
            features = width
        layers.append(nn.Linear(features, out_dim))
        super().__init__(*layers)
        with seeded(seed):
            initialize(self, init)
        self.to(dtype)


@register_model("mlp")
def _mlp(
    in_dim: int,
    lower: Sequence[float] | None,
    upper: Sequence[float] | None,
    *,
    out_dim: int,
    width: int,
    depth: int,
    activation: str,
    init: str,
    fourier_features: int,
    fourier_sigma: float,
    seed: int,
    dtype: torch.dtype,
    **_: object,
) -> MLP:
    """``build_model("mlp", …)``; ignores the options of other models (``degree``)."""
    return MLP(
        in_dim, out_dim, width, depth, activation, init, lower, upper,
        fourier_features, fourier_sigma, seed, dtype,
    )  # fmt: skip

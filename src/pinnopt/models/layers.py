"""Jet-aware building blocks: activations, input scaling, Fourier features.

Each layer has an ordinary ``forward`` and a ``forward_jet(z)`` mapping a
:class:`~pinnopt.derivatives.Jet` of its input to one of its output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet, elementwise_jet

# Each activation gives (σ, σ', σ'') evaluated at z.
Derivatives = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def _tanh(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.tanh(z)
    s1 = 1 - s * s
    return s, s1, -2 * s * s1


def _sin(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sin(z)
    return s, torch.cos(z), -s


def _sigmoid(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sigmoid(z)
    s1 = s * (1 - s)
    return s, s1, s1 * (1 - 2 * s)


def _silu(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sigmoid(z)
    s1 = s * (1 - s)
    return z * s, s + z * s1, s1 * (2 + z * (1 - 2 * s))


def _softplus(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sigmoid(z)
    return nn.functional.softplus(z), s, s * (1 - s)


def _gelu(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # GELU(z) = z Φ(z);  GELU' = Φ + z φ;  GELU'' = φ (2 - z²)
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return z * cdf, cdf + z * phi, phi * (2 - z * z)


ACTIVATIONS: dict[str, Derivatives] = {
    "tanh": _tanh,
    "sin": _sin,
    "sigmoid": _sigmoid,
    "silu": _silu,
    "softplus": _softplus,
    "gelu": _gelu,
}


class Activation(nn.Module):
    """Elementwise activation by name, with its first two derivatives for jets."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, z: Tensor) -> Tensor:
        return _FORWARD[self.name](z)

    def forward_jet(self, z: Jet) -> Jet:
        return elementwise_jet(z, *self.fn(z.value))

    def extra_repr(self) -> str:
        return self.name


_FORWARD: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sin": torch.sin,
    "sigmoid": torch.sigmoid,
    "silu": nn.functional.silu,
    "softplus": nn.functional.softplus,
    "gelu": nn.functional.gelu,
}


class InputScaling(nn.Module):
    """Affine map of the box [lower, upper] onto [-1, 1]^d: x ↦ (2x - (l + u)) / (u - l)."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float]) -> None:
        super().__init__()
        lo = torch.as_tensor(lower, dtype=torch.float64)
        hi = torch.as_tensor(upper, dtype=torch.float64)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise ValueError("lower and upper must be 1-D and of the same length")
        if not bool((hi > lo).all()):
            raise ValueError("upper must exceed lower in every coordinate")
        self.register_buffer("scale", 2.0 / (hi - lo))
        self.register_buffer("shift", -(hi + lo) / (hi - lo))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def forward_jet(self, z: Jet) -> Jet:
        out = z.map(lambda t: t * self.scale)
        out.value = out.value + self.shift
        return out


class FourierFeatures(nn.Module):
    """x ↦ [sin(2π B x), cos(2π B x)] with a fixed Gaussian B of std ``sigma``.

    Random Fourier features for low-frequency bias (Tancik et al. 2020;
    Wang, Wang & Perdikaris 2021).
    """

    def __init__(self, in_dim: int, num_features: int, sigma: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        g = torch.Generator().manual_seed(seed)
        b = torch.randn(num_features, in_dim, generator=g, dtype=torch.float64) * sigma
        self.register_buffer("B", 2 * math.pi * b)
        self.out_dim = 2 * num_features

    def forward(self, x: Tensor) -> Tensor:
        p = x @ self.B.t()
        return torch.cat([torch.sin(p), torch.cos(p)], dim=-1)

    def forward_jet(self, z: Jet) -> Jet:
        p = z.map(lambda t: torch.matmul(t, self.B.t()))
        s, c = torch.sin(p.value), torch.cos(p.value)
        sin_jet = elementwise_jet(p, s, c, -s)
        cos_jet = elementwise_jet(p, c, -s, -c)
        parts = zip(sin_jet.parts, cos_jet.parts)
        return Jet(*(None if a is None else torch.cat([a, b], dim=-1) for a, b in parts))

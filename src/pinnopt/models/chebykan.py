"""Chebyshev Kolmogorov–Arnold network (scaled cPIKAN).

Each layer maps features x ∈ [-1, 1]^p to y_j = Σ_i Σ_k c_{jik} T_k(x_i), with the
Chebyshev polynomials from the recurrence T_0 = 1, T_1 = x, T_{k+1} = 2x T_k - T_{k-1}.
Inputs are mapped affinely from the domain box to [-1, 1]; hidden features pass
through tanh to stay in [-1, 1] (Mostajeran & Faroughi, "Scaled-cPIKANs", 2024;
SS et al., "Chebyshev polynomial-based KAN", 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pinnopt.models.init import check_dims, seeded
from pinnopt.models.layers import Activation, InputScaling


def _chebyshev_jet(z: Tensor, degree: int, d: int) -> Tensor:
    """Stacked jets of T_0..T_degree of every feature: (N, S, p) -> (N, S, p, degree + 1).

    Product rule on T_{k+1} = 2 x T_k - T_{k-1}, slot by slot:
      value  2 x T_k,   gradient 2(x' T_k + x T_k'),   second 2(x'' T_k + 2 x' T_k' + x T_k'').
    """
    order = (z.shape[1] - 1) // d
    x = z[:, 0]
    one = torch.ones_like(x)
    zero = torch.zeros_like(z)
    t_prev = zero.clone()
    t_prev[:, 0] = one  # T_0 = 1, all derivatives 0
    polys = [t_prev, z]
    for _ in range(1, degree):
        t = polys[-1]
        v = 2 * x * t[:, 0]
        slots = [v.unsqueeze(1)]
        if order >= 1:
            g = z[:, 1 : 1 + d]
            tg = t[:, 1 : 1 + d]
            slots.append(2 * (g * t[:, :1] + x.unsqueeze(1) * tg))
        if order >= 2:
            h = z[:, 1 + d :]
            th = t[:, 1 + d :]
            slots.append(2 * (h * t[:, :1] + 2 * g * tg + x.unsqueeze(1) * th))
        polys.append(torch.cat(slots, dim=1) - polys[-2])
    return torch.stack(polys[: degree + 1], dim=-1)


class ChebyshevLayer(nn.Module):
    """y_j = Σ_i Σ_k c_{jik} T_k(x_i) for inputs in [-1, 1]."""

    def __init__(self, in_features: int, out_features: int, degree: int) -> None:
        super().__init__()
        if degree < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        self.degree = degree
        self.coeffs = nn.Parameter(torch.empty(out_features, in_features, degree + 1))
        std = 1.0 / (in_features * (degree + 1)) ** 0.5
        nn.init.normal_(self.coeffs, 0.0, std)

    def basis(self, x: Tensor) -> Tensor:
        polys = [torch.ones_like(x), x]
        for _ in range(1, self.degree):
            polys.append(2 * x * polys[-1] - polys[-2])
        return torch.stack(polys[: self.degree + 1], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("...ik,jik->...j", self.basis(x), self.coeffs)

    def forward_jet(self, z: Tensor, d: int) -> Tensor:
        return torch.einsum("nsik,jik->nsj", _chebyshev_jet(z, self.degree, d), self.coeffs)


class ChebyKAN(nn.Sequential):
    """Scaled cPIKAN: input scaling, then Chebyshev layers with tanh between them."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1,
        width: int = 16,
        depth: int = 2,
        degree: int = 5,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        check_dims(in_dim, out_dim, lower, upper)
        if width < 1 or depth < 1:
            raise ValueError("width and depth must be >= 1")
        layers: list[nn.Module] = []
        if lower is not None and upper is not None:
            layers.append(InputScaling(lower, upper))
        features = in_dim
        with seeded(seed):
            for _ in range(depth):
                layers += [ChebyshevLayer(features, width, degree), Activation("tanh")]
                features = width
            layers.append(ChebyshevLayer(features, out_dim, degree))
        super().__init__(*layers)
        self.to(dtype)

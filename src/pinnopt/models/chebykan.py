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

from pinnopt.derivatives import Jet
from pinnopt.models.init import check_dims, seeded
from pinnopt.models.layers import Activation, InputScaling
from pinnopt.models.registry import register_model


def _chebyshev_jet(z: Jet, degree: int) -> Jet:
    """Jets of T_0..T_degree of every feature; each part gains a last axis of size degree + 1.

    Product rule on T_{k+1} = 2 x T_k - T_{k-1}, part by part:
      value 2xT,  gradient 2(x'T + xT'),  second 2(x''T + 2x'T' + xT''),
      Laplacian 2(Δx T + 2 Σ_i ∂_i x ∂_i T + x ΔT).
    """
    x, g, h, lap = z.value, z.grad, z.hess_diag, z.lap
    xg = x.unsqueeze(1)

    def zero(t: Tensor | None) -> Tensor | None:
        return None if t is None else torch.zeros_like(t)

    polys = [Jet(torch.ones_like(x), zero(g), zero(h), zero(lap)), z]
    for _ in range(1, degree):
        t, prev = polys[-1], polys[-2]
        tv = t.value.unsqueeze(1)
        value = 2 * x * t.value - prev.value
        grad = hess = lp = None
        if g is not None:
            grad = 2 * (g * tv + xg * t.grad) - prev.grad
        if h is not None:
            hess = 2 * (h * tv + 2 * g * t.grad + xg * t.hess_diag) - prev.hess_diag
        if lap is not None:
            cross = (g * t.grad).sum(dim=1)
            lp = 2 * (lap * t.value + 2 * cross + x * t.lap) - prev.lap
        polys.append(Jet(value, grad, hess, lp))
    parts = zip(*(q.parts for q in polys[: degree + 1]))
    return Jet(*(None if p[0] is None else torch.stack(p, dim=-1) for p in parts))


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

    def forward_jet(self, z: Jet) -> Jet:
        basis = _chebyshev_jet(z, self.degree)
        return basis.map(lambda t: torch.einsum("...ik,jik->...j", t, self.coeffs))


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


@register_model("chebykan")
def _chebykan(
    in_dim: int,
    lower: Sequence[float] | None,
    upper: Sequence[float] | None,
    *,
    out_dim: int,
    width: int,
    depth: int,
    degree: int,
    seed: int,
    dtype: torch.dtype,
    **_: object,
) -> ChebyKAN:
    """``build_model("chebykan", …)``; ignores the options of other models (``activation``,
    ``init``, the Fourier features: the hidden nonlinearity is tanh by construction)."""
    return ChebyKAN(in_dim, out_dim, width, depth, degree, lower, upper, seed, dtype)

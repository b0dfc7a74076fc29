"""Logistic reaction u_t − ρ u(1 − u) = 0 with a Gaussian initial profile, exact solution.

The failure-mode benchmark of Krishnapriyan, Gholami, Zhe, Kirby & Mahoney, "Characterizing
possible failure modes in physics-informed neural networks", NeurIPS 2021 (ρ = 5 here).
Each x evolves by the logistic ODE, so u = h e^{ρt} / (h e^{ρt} + 1 − h) with
h(x) = exp(−(x − π)² / (2(π/4)²)).

Periodicity: h(0) = h(2π) = e^{−8} ≈ 3.35e-4 by symmetry about π, but the slopes differ,
h'(0) = (16/π) e^{−8} ≈ 1.7e-3 = −h'(2π), so the periodic extension has a kink at
x = 0 ≡ 2π that the logistic growth amplifies: the slope jump of u is ≈ 0.46 at t = 1
(ρ = 5). A network that is periodic by construction is smooth there, so it cannot match
the exact solution to arbitrary precision in a neighbourhood of x = 0 and x = 2π.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.registry import register_problem

PI = math.pi
TWO_PI = 2.0 * PI


def gaussian_profile(x: Tensor) -> Tensor:
    """h(x) = exp(−(x − π)² / (2(π/4)²)), the initial data."""
    return torch.exp(-((x - PI) ** 2) / (2 * (PI / 4) ** 2))


@register_problem("reaction1d")
def reaction1d(rho: float = 5.0) -> Problem:
    """u_t − ρ u(1−u) = 0 on [0,2π]×[0,1], periodic in x, u(x,0) = h(x) (Gaussian).

    Exact u = h e^{ρt} / (h e^{ρt} + 1 − h). Periodic in x (period 2π) through the
    network's inputs, so there is no boundary term (see the module note on the kink).
    """
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be > 0 and finite, got {rho}")
    box = Box([0.0, 0.0], [TWO_PI, 1.0])

    def exact(x: Tensor) -> Tensor:
        h = gaussian_profile(x[:, 0])
        g = h * torch.exp(rho * x[:, 1])
        return g / (g + 1 - h)

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) - rho * u.u * (1 - u.u)

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u - gaussian_profile(x[:, 0])

    terms = [
        Term("pde", box.interior, pde, order=1, n=4000),
        Term("ic", box.face(1, "lower"), ic, order=0, n=256),
    ]
    return Problem(
        "reaction1d", box, terms, exact, ("x", "t"),
        f"u_t - {rho:g} u(1-u) = 0 on [0,2pi]x[0,1], periodic, Gaussian u(x,0)",
        eval_grid=201, params={"rho": rho}, periodic={0: TWO_PI},
    )  # fmt: skip

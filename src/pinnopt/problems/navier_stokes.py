"""Unsteady incompressible 2-D Navier–Stokes: the decaying Taylor–Green vortex (exact).

    u_t + u u_x + v u_y + p_x − ν (u_xx + u_yy) = 0
    v_t + u v_x + v v_y + p_y − ν (v_xx + v_yy) = 0
    u_x + v_y = 0                                          (density 1)

on [0, 2π]² × [0, 1], periodic in x and y. Exact solution (Taylor & Green 1937; see e.g.
Chorin 1968 or Jin, Cai, Li & Karniadakis, "NSFnets", J. Comput. Phys. 426 (2021)):
u = −cos x sin y F, v = sin x cos y F, p = −¼(cos 2x + cos 2y) F², F = e^{−2νt}.

Pressure gauge: the equations contain only ∇p, so p is fixed only up to an additive
c(t). An initial condition on p would fix c(0) alone, so instead the term ``p_gauge``
pins the pressure at (x, y) = (0, 0) for all t to the exact p(0, 0, t) = −½ e^{−4νt};
then the error in p is meaningful. Initial conditions are on u and v only (p at t = 0
follows from them and the gauge).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Sampler, Term
from pinnopt.problems.registry import register_problem

TWO_PI = 2.0 * math.pi
T_END = 1.0


def taylor_green(x: Tensor, nu: float) -> Tensor:
    """(u, v, p) of the Taylor–Green vortex at points (x, y, t), shape (N, 3)."""
    f = torch.exp(-2 * nu * x[:, 2])
    cx, sx = torch.cos(x[:, 0]), torch.sin(x[:, 0])
    cy, sy = torch.cos(x[:, 1]), torch.sin(x[:, 1])
    u = -cx * sy * f
    v = sx * cy * f
    p = -0.25 * (torch.cos(2 * x[:, 0]) + torch.cos(2 * x[:, 1])) * f * f
    return torch.stack([u, v, p], dim=1)


@register_problem("navier_stokes2d")
def navier_stokes2d(nu: float = 0.01) -> Problem:
    """Taylor–Green vortex on [0,2π]²×[0,1], periodic in x and y, viscosity ν = 0.01.

    Components (u, v, p), inputs (x, y, t); terms ``momentum_x``, ``momentum_y``,
    ``continuity``, ``ic_u``, ``ic_v`` and the pressure gauge ``p_gauge``.
    """
    if not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"nu must be > 0 and finite, got {nu}")
    box = Box([0.0, 0.0, 0.0], [TWO_PI, TWO_PI, T_END])

    def exact(x: Tensor) -> Tensor:
        return taylor_green(x, nu)

    def momentum(c: str, i: int):
        def residual(u: Jet, x: Tensor) -> Tensor:
            advection = u.of("u") * u.d(0, c) + u.of("v") * u.d(1, c)
            diffusion = u.d2(0, c) + u.d2(1, c)
            return u.d(2, c) + advection + u.d(i, "p") - nu * diffusion

        return residual

    def continuity(u: Jet, x: Tensor) -> Tensor:
        return u.d(0, "u") + u.d(1, "v")

    def ic(c: int):
        def residual(u: Jet, x: Tensor) -> Tensor:
            return u.of(c) - taylor_green(x, nu)[:, c]

        return residual

    def p_gauge(u: Jet, x: Tensor) -> Tensor:
        return u.of("p") + 0.5 * torch.exp(-4 * nu * x[:, 2])

    def origin_line() -> Sampler:
        def sample(n: int, g: torch.Generator) -> Tensor:
            x = box.interior(n, g)
            x[:, :2] = 0.0
            return x

        return sample

    start = box.face(2, "lower")
    terms = [
        Term("momentum_x", box.interior, momentum("u", 0), order=2, n=4000),
        Term("momentum_y", box.interior, momentum("v", 1), order=2, n=4000),
        Term("continuity", box.interior, continuity, order=1, n=4000),
        Term("ic_u", start, ic(0), order=0, n=512),
        Term("ic_v", start, ic(1), order=0, n=512),
        Term("p_gauge", origin_line(), p_gauge, order=0, n=64),
    ]
    return Problem(
        "navier_stokes2d", box, terms, exact, ("x", "y", "t"),
        f"2-D Navier-Stokes, Taylor-Green vortex, nu = {nu:g}, on [0,2pi]^2x[0,{T_END:g}], "
        "periodic",
        params={"nu": nu}, components=("u", "v", "p"), periodic={0: TWO_PI, 1: TWO_PI},
    )  # fmt: skip

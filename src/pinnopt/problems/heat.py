"""Heat equation u_t = α u_xx."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.registry import register_problem

PI = math.pi


@register_problem("heat1d")
def heat1d(alpha: float = 0.25) -> Problem:
    """u_t = α u_xx on [0,1]×[0,1], u(0,t) = u(1,t) = 0, u(x,0) = sin(πx).

    Exact solution u = exp(-απ² t) sin(πx); α = 1/4 by default. Inputs (x, t).
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be > 0, got {alpha}")
    box = Box([0.0, 0.0], [1.0, 1.0])

    def exact(x: Tensor) -> Tensor:
        return torch.exp(-alpha * PI**2 * x[:, 1]) * torch.sin(PI * x[:, 0])

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) - alpha * u.d2(0)

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u - torch.sin(PI * x[:, 0])

    terms = [
        Term("pde", box.interior, pde, order=2, n=1000),
        Term("bc", box.boundary(dims=[0]), bc, order=0, n=200),
        Term("ic", box.face(1, "lower"), ic, order=0, n=200),
    ]
    # exact: u = sin(πx) + x(1 − x)·t·N, zero at x = 0, 1 and sin(πx) at t = 0
    faces = [(0, "lower"), (0, "upper"), (1, "lower")]
    constraint = Constraint(
        lambda x: torch.sin(PI * x[:, 0]), box_distance(box.lower, box.upper, faces), ("bc", "ic")
    )
    return Problem(
        "heat1d", box, terms, exact, ("x", "t"),
        f"u_t = {alpha} u_xx on [0,1]x[0,1], u = exp(-{alpha} pi^2 t) sin(pi x)",
        params={"alpha": alpha}, constraint=constraint,
    )  # fmt: skip

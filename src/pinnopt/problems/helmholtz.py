"""Helmholtz equation Δu + k²u = q."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.registry import register_problem

PI = math.pi


@register_problem("helmholtz2d")
def helmholtz2d(a1: float = 1.0, a2: float = 4.0, k: float = 1.0) -> Problem:
    """Δu + k²u = q on [-1,1]² with u = sin(a1 πx) sin(a2 πy), Dirichlet (a1=1, a2=4, k=1).

    q = (k² - (a1π)² - (a2π)²) u, the benchmark of Wang, Teng & Perdikaris (2021).
    """
    for name, value in (("a1", a1), ("a2", a2), ("k", k)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    box = Box([-1.0, -1.0], [1.0, 1.0])

    def exact(x: Tensor) -> Tensor:
        return torch.sin(a1 * PI * x[:, 0]) * torch.sin(a2 * PI * x[:, 1])

    factor = k**2 - (a1 * PI) ** 2 - (a2 * PI) ** 2

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.laplacian() + k**2 * u.u - factor * exact(x)

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u - exact(x)

    terms = [
        Term("pde", box.interior, pde, order=2, n=2000, trace=True),
        Term("bc", box.boundary(), bc, order=0, n=400),
    ]
    constraint = None
    if a1 == int(a1) and a2 == int(a2):  # then u = 0 on the boundary: u = d·N exactly
        constraint = Constraint(lambda x: torch.zeros_like(x[:, 0]), _all_faces(box), ("bc",))
    return Problem(
        "helmholtz2d", box, terms, exact, ("x", "y"),
        f"Lap u + {k**2:g} u = q on [-1,1]^2, u = sin({a1:g} pi x) sin({a2:g} pi y)",
        params={"a1": a1, "a2": a2, "k": k}, constraint=constraint,
    )  # fmt: skip


def _all_faces(box: Box):
    faces = [(i, side) for i in range(box.dim) for side in ("lower", "upper")]
    return box_distance(box.lower, box.upper, faces)

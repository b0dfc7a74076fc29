"""Poisson problems -Δu = f with Dirichlet data from the exact solution."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.registry import register_problem

PI = math.pi


def _sine_product(x: Tensor) -> Tensor:
    return torch.sin(PI * x).prod(dim=1)


def poisson_problem(
    name: str, box: Box, exact, source, n_pde: int, n_bc: int, description: str,
    zero_on_boundary: bool = False,
):  # fmt: skip
    """The problem −Δu = source on the box, u = exact on its boundary (the registry's
    Poisson problems and :class:`pinnopt.learned.tasks.PoissonFamily` are built with it).

    ``zero_on_boundary``: exact is zero on the boundary, so the problem declares the
    exact constraint u = d·N with d the product of the distances to the faces.
    """

    def pde(u: Jet, x: Tensor) -> Tensor:
        return -u.laplacian() - source(x)

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u - exact(x)

    terms = [
        Term("pde", box.interior, pde, order=2, n=n_pde, trace=True),
        Term("bc", box.boundary(), bc, order=0, n=n_bc),
    ]
    names = ("x", "y", "z") if box.dim <= 3 else tuple(f"x{i + 1}" for i in range(box.dim))
    constraint = None
    if zero_on_boundary:
        faces = [(i, side) for i in range(box.dim) for side in ("lower", "upper")]
        zero = lambda x: torch.zeros_like(x[:, 0])  # noqa: E731
        constraint = Constraint(zero, box_distance(box.lower, box.upper, faces), ("bc",))
    return Problem(name, box, terms, exact, names[: box.dim], description, constraint=constraint)


@register_problem("poisson1d")
def poisson1d() -> Problem:
    """-u'' = π² sin(πx) on [0, 1], u(0) = u(1) = 0; u = sin(πx)."""
    box = Box([0.0], [1.0])
    return poisson_problem(
        "poisson1d", box, _sine_product, lambda x: PI**2 * _sine_product(x), 200, 2,
        "-u'' = pi^2 sin(pi x) on [0,1], u(0)=u(1)=0", zero_on_boundary=True,
    )  # fmt: skip


@register_problem("poisson2d")
def poisson2d() -> Problem:
    """-Δu = 2π² sin(πx) sin(πy) on [0, 1]², u = 0 on the boundary; u = sin(πx) sin(πy)."""
    box = Box([0.0, 0.0], [1.0, 1.0])
    return poisson_problem(
        "poisson2d", box, _sine_product, lambda x: 2 * PI**2 * _sine_product(x), 1000, 200,
        "-Lap u = 2 pi^2 sin(pi x) sin(pi y) on [0,1]^2, u=0 on the boundary",
        zero_on_boundary=True,
    )  # fmt: skip


@register_problem("poisson3d")
def poisson3d() -> Problem:
    """-Δu = 3π² u on [0, 1]³ with u = sin(πx) sin(πy) sin(πz), Dirichlet."""
    box = Box([0.0] * 3, [1.0] * 3)
    return poisson_problem(
        "poisson3d", box, _sine_product, lambda x: 3 * PI**2 * _sine_product(x), 2000, 600,
        "-Lap u = 3 pi^2 u on [0,1]^3, u = sin(pi x) sin(pi y) sin(pi z)",
        zero_on_boundary=True,
    )  # fmt: skip


def _cos_sum(x: Tensor) -> Tensor:
    return torch.cos(PI * x).sum(dim=1)


@register_problem("poisson5d")
def poisson5d() -> Problem:
    """-Δu = π² Σ cos(πx_i) on [0, 1]⁵ with u = Σ cos(πx_i), Dirichlet from u."""
    box = Box([0.0] * 5, [1.0] * 5)
    return poisson_problem(
        "poisson5d", box, _cos_sum, lambda x: PI**2 * _cos_sum(x), 3000, 1000,
        "-Lap u = pi^2 sum cos(pi x_i) on [0,1]^5, u = sum cos(pi x_i)",
    )  # fmt: skip

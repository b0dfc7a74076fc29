"""Wave equation u_tt = c² u_xx."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.registry import register_problem

PI = math.pi


@register_problem("wave1d")
def wave1d(c: float = 2.0) -> Problem:
    """u_tt = c² u_xx on [0,1]×[0,1] (c = 2), u(0,t) = u(1,t) = 0.

    u(x,0) = sin(πx) + sin(4πx)/2, u_t(x,0) = 0; exact
    u = sin(πx) cos(cπt) + sin(4πx) cos(4cπt)/2. Inputs (x, t).
    """
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"c must be > 0, got {c}")
    box = Box([0.0, 0.0], [1.0, 1.0])

    def exact(x: Tensor) -> Tensor:
        xs, t = x[:, 0], x[:, 1]
        return torch.sin(PI * xs) * torch.cos(c * PI * t) + 0.5 * torch.sin(
            4 * PI * xs
        ) * torch.cos(4 * c * PI * t)

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d2(1) - c**2 * u.d2(0)

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u - exact(x)

    def ic_t(u: Jet, x: Tensor) -> Tensor:
        return u.d(1)

    terms = [
        Term("pde", box.interior, pde, order=2, n=2000),
        Term("bc", box.boundary(dims=[0]), bc, order=0, n=200),
        Term("ic", box.face(1, "lower"), ic, order=0, n=200),
        Term("ic_t", box.face(1, "lower"), ic_t, order=1, n=200),
    ]
    # exact: u = u(x, 0) + x(1 − x)·t²·N: zero at x = 0, 1, and at t = 0 both u and u_t
    # match (d = t² makes ∂_t(d·N) vanish there)
    distance = box_distance(box.lower, box.upper, [(0, "lower"), (0, "upper"), (1, "lower")])
    constraint = Constraint(lambda x: exact(x * x.new_tensor([1.0, 0.0])),
                            lambda x: distance(x) * x[:, 1], ("bc", "ic", "ic_t"))  # fmt: skip
    return Problem(
        "wave1d", box, terms, exact, ("x", "t"),
        f"u_tt = {c**2:g} u_xx on [0,1]x[0,1], u = sin(pi x)cos({c:g} pi t) + ...",
        params={"c": c}, constraint=constraint,
    )  # fmt: skip

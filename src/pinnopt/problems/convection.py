"""Convection (linear advection) u_t + β u_x = 0, periodic in x, with its exact solution.

The failure-mode benchmark of Krishnapriyan, Gholami, Zhe, Kirby & Mahoney, "Characterizing
possible failure modes in physics-informed neural networks", NeurIPS 2021: plain PINNs
fail for β ≳ 10; β = 40 is the hard default. The exact solution is the translated
initial data, u = sin(x − βt) (method of characteristics).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.registry import register_problem

TWO_PI = 2.0 * math.pi


@register_problem("convection1d")
def convection1d(beta: float = 40.0) -> Problem:
    """u_t + β u_x = 0 on [0,2π]×[0,1], periodic in x, u(x,0) = sin x; u = sin(x − βt).

    Periodic in x (period 2π) through the network's inputs, so there is no boundary term.
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be > 0 and finite, got {beta}")
    box = Box([0.0, 0.0], [TWO_PI, 1.0])

    def exact(x: Tensor) -> Tensor:
        return torch.sin(x[:, 0] - beta * x[:, 1])

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) + beta * u.d(0)

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u - torch.sin(x[:, 0])

    terms = [
        Term("pde", box.interior, pde, order=1, n=4000),
        Term("ic", box.face(1, "lower"), ic, order=0, n=256),
    ]
    return Problem(
        "convection1d", box, terms, exact, ("x", "t"),
        f"u_t + {beta:g} u_x = 0 on [0,2pi]x[0,1], periodic, u = sin(x - {beta:g} t)",
        eval_grid=201, params={"beta": beta}, periodic={0: TWO_PI},
    )  # fmt: skip

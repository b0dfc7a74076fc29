"""Viscous Burgers equation u_t + u u_x = ν u_xx with its Hopf–Cole reference solution."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.observations import observation_terms
from pinnopt.problems.registry import register_problem
from pinnopt.problems.unknowns import Unknown

PI = math.pi
NU = 0.01 / PI


def burgers_hopf_cole(
    x: np.ndarray, t: np.ndarray, nu: float = NU, nodes: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """u and u_x of Burgers with u(x,0) = -sin(πx) on the real line (periodic extension).

    Hopf–Cole (Cole 1951; Basdevant et al. 1986):

        u(x,t) = -∫ sin(π(x-η)) f(x-η) G(η) dη / ∫ f(x-η) G(η) dη,
        f(y) = exp(-cos(πy) / (2πν)),  G(η) = exp(-η² / (4νt)).

    With η = 2√(νt) z both integrals are Gauss–Hermite sums over z; exponents are
    shifted by their maximum so that exp(50·…) cannot overflow. u_x differentiates
    the quotient exactly. Matches the known max slope |u_x(0, 1.6037/π)| = 152.00516
    (Basdevant et al.) for ν = 0.01/π. Since the solution is odd and 2-periodic in x,
    u(±1, t) = 0.
    """
    x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
    x, t = x.reshape(-1), t.reshape(-1)
    z, w = np.polynomial.hermite.hermgauss(nodes)
    y = x[:, None] - 2.0 * np.sqrt(nu * t)[:, None] * z[None, :]
    a = -np.cos(PI * y) / (2 * PI * nu)
    e = w * np.exp(a - a.max(axis=1, keepdims=True))
    s, c = np.sin(PI * y), np.cos(PI * y)
    den = e.sum(axis=1)
    num = (s * e).sum(axis=1)
    d_num = (PI * c * e + s * s * e / (2 * nu)).sum(axis=1)
    d_den = (s * e / (2 * nu)).sum(axis=1)
    u = -num / den
    ux = -(d_num * den - num * d_den) / den**2
    at_zero = t == 0
    u[at_zero] = -np.sin(PI * x[at_zero])
    ux[at_zero] = -PI * np.cos(PI * x[at_zero])
    return u, ux


@register_problem("burgers1d")
def burgers1d(nu: float = NU) -> Problem:
    """u_t + u u_x = ν u_xx on [-1,1]×[0,1], u(x,0) = -sin(πx), u(±1,t) = 0; ν = 0.01/π.

    The reference solution is the Hopf–Cole formula by Gauss–Hermite quadrature.
    """
    if not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"nu must be > 0, got {nu}")
    box = Box([-1.0, 0.0], [1.0, 1.0])

    def reference(x: Tensor) -> Tensor:
        u, _ = burgers_hopf_cole(x[:, 0].cpu().numpy(), x[:, 1].cpu().numpy(), nu)
        return torch.from_numpy(u).to(x.device)

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) + u.u * u.d(0) - nu * u.d2(0)

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u + torch.sin(PI * x[:, 0])

    terms = [
        Term("pde", box.interior, pde, order=2, n=4000),
        Term("bc", box.boundary(dims=[0]), bc, order=0, n=200),
        Term("ic", box.face(1, "lower"), ic, order=0, n=200),
    ]
    # exact: u = −sin(πx) + (1 − x²)/4·t·N, zero at x = ±1 (to 1e-16) and −sin(πx) at t = 0
    faces = [(0, "lower"), (0, "upper"), (1, "lower")]
    constraint = Constraint(
        lambda x: -torch.sin(PI * x[:, 0]), box_distance(box.lower, box.upper, faces), ("bc", "ic")
    )
    return Problem(
        "burgers1d", box, terms, reference, ("x", "t"),
        f"u_t + u u_x = {nu:.6g} u_xx on [-1,1]x[0,1], u(x,0) = -sin(pi x)",
        eval_grid=201, params={"nu": nu}, constraint=constraint,
    )  # fmt: skip


@register_problem("burgers1d_inverse")
def burgers1d_inverse(
    noise: float = 0.0, observations: float = 2000, nu_initial: float = 0.0
) -> Problem:
    """Identify ν of Burgers from observations of its solution (Raissi et al. 2019, §4.1.1).

    ``observations`` points uniform in [-1,1]×[0,1] (drawn from a fixed seed) carry the
    Hopf–Cole reference u(x, t) plus Gaussian noise of ``noise`` · std(u); the PDE
    residual u_t + u u_x − ν u_xx, with ν trainable from ``nu_initial``, is imposed at
    collocation points. No boundary or initial data are given: the observations stand
    in for them. The truth ν = 0.01/π is reported as ``param_nu_rel_error``.
    """
    count = int(observations)
    if count != observations or count < 1:
        raise ValueError(f"observations must be an integer >= 1, got {observations}")
    if not math.isfinite(nu_initial):
        raise ValueError(f"nu_initial must be finite, got {nu_initial}")
    box = Box([-1.0, 0.0], [1.0, 1.0])

    def reference(x: Tensor) -> Tensor:
        u, _ = burgers_hopf_cole(x[:, 0].cpu().numpy(), x[:, 1].cpu().numpy(), NU)
        return torch.from_numpy(u).to(x.device)

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) + u.u * u.d(0) - u.unknown("nu") * u.d2(0)

    points = box.interior(count, torch.Generator().manual_seed(1234))
    data = observation_terms(points, reference(points), noise=noise, seed=4321)
    return Problem(
        "burgers1d_inverse", box, [Term("pde", box.interior, pde, order=2, n=4000), *data],
        reference, ("x", "t"),
        f"identify nu in u_t + u u_x = nu u_xx from {count} observations"
        + (f" with {noise:g} noise" if noise else ""),
        eval_grid=201, params={"noise": noise, "observations": count, "nu_initial": nu_initial},
        unknowns={"nu": Unknown(nu_initial, truth=NU)},
    )  # fmt: skip

"""The CCF profiles of every order on one branch of fixed-λ solutions (transport form).

The first integral of the CCF profile equation (:mod:`pinnopt.blowup.ccf`) puts it in
transport form: with Θ' = Ω and the constant fixed by Θ(0) = 0,

    −λ Θ + v Θ' = 0,     v = (1 + λ) y − U,     U' = H Ω,  U(0) = 0,

so Θ = −exp(∫ λ / v dy): Ω keeps one sign on y > 0 and v > 0 there. For a fixed λ this
has a solution (up to the dilation y → μ y) whether or not λ belongs to a profile; near
the origin it behaves like Θ ~ |y|^γ with

    γ = λ / v'(0) = λ / (1 + λ − H Ω(0)),

and it is smooth with Ω'(0) ≠ 0 exactly when γ = 2, which is the λ rule. So the profiles
are the zeros of γ(λ) − 2 along the fixed-λ solutions. Followed from the top of a bracket
down (pseudo-arclength continuation, :func:`follow_branch`), γ oscillates about 2:
each crossing is a profile, the first the stable one, the next ones the unstable orders
(their Ω grows a sharper and sharper peak where v nearly stalls, docs/blowup.md).

Discretisation (this module's, independent of the analytic series): x = log y on a
uniform grid of step h over [x_min, x_max]; unknowns φ = log(−Θ) and w = U / y, and

    φ(x) = φ(0) + ∫_0^x λ / (1 + λ − w) dx          (trapezoid),
    w = U / y,   φ = γ log y at the first point    (fixes the dilation: Θ ≈ −|y|^γ),
    U(y) = (1/π) ∫_0^∞ Ω(s) log|(y − s)/(y + s)| ds   (U' = HΩ for an odd Ω).

With s = y e^t and g = Ω s = Θ φ_x, U(y) = (1/π) ∫ g(y e^t) K(t) dt, K = log|tanh(t/2)|,
∫ K dt = −π²/2; the log singularity is subtracted, U = (1/π)[∫ (g(s) − g(y)) K dt − g(y) π²/2],
the rest integrated by the trapezoid rule, with the tails beyond the grid from g → 0
(left) and g ~ s^(1−a), K ~ −2e^(−t) (right). Levenberg–Marquardt solves the 2N + 1
equations for the 2N unknowns; a root of γ = 2 is one more unknown (λ) and one more
equation (w(0) = 1 + λ/2). The accuracy is that of the trapezoid rules: second order in
h for smooth integrands, about first order near the sharp peak of an unstable profile
(docs/blowup.md); :func:`find_branch_profile` reports λ at two steps, and the digits on
which they agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pinnopt.blowup.quadrature_check import ccf_residual_by_quadrature, quadrature_points
from pinnopt.blowup.stopping import stop_check

GAMMA = 2.0  # Θ ~ y² at the origin: the λ rule


class LogGrid:
    """The transport form on x = log y ∈ [x_min, x_max] with step h (module docstring)."""

    def __init__(self, h: float = 0.2, x_min: float = -12.0, x_max: float = 40.0) -> None:
        if not (0 < h <= 1 and x_min < 0 < x_max):
            raise ValueError(f"need 0 < h <= 1 and x_min < 0 < x_max, got {h}, {x_min}, {x_max}")
        x = torch.arange(x_min, x_max + h / 2, h, dtype=torch.float64)
        self.h, self.x, self.y, self.n = h, x, torch.exp(x), len(x)
        t = x[None, :] - x[:, None]
        kernel = torch.log(torch.tanh(t.abs() / 2).clamp_min(1e-300))
        kernel.fill_diagonal_(0.0)  # (g(s) − g(y)) K → 0 at s = y
        weights = kernel * h
        weights[:, 0] /= 2
        weights[:, -1] /= 2
        self.weights, self.row_sums = weights, weights.sum(1)
        self.left_tail = -2 * torch.exp(x[0] - x)  # ∫ K dt below the grid, K ≈ −2 e^t
        self.right_gap = torch.exp(x - x[-1])  # e^(−(x_max − x)): the right tail's size
        self.origin = int(torch.argmin(x.abs()))

    def velocity(self, g: Tensor, a: Tensor) -> Tensor:
        """U at the grid points from g = Ω y (module docstring)."""
        s = self.weights @ g - g * self.row_sums - g * self.left_tail
        s = s - 2 * self.right_gap * (g[-1] / a - g)
        return (s - g * math.pi**2 / 2) / math.pi

    def fields(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(φ_x, Θ, U) of the state z = (φ, w)."""
        phi, w = z[: self.n], z[self.n :]
        slope = lam / (1 + lam - w)
        theta = -torch.exp(phi)
        return slope, theta, self.velocity(theta * slope, 1 / (1 + lam))

    def residual(self, z: Tensor, lam: Tensor) -> Tensor:
        """The 2N + 1 equations of the fixed-λ solution (module docstring)."""
        phi, w = z[: self.n], z[self.n :]
        slope, _, u = self.fields(z, lam)
        steps = torch.cumsum((slope[1:] + slope[:-1]) * self.h / 2, 0)
        integral = torch.cat([steps.new_zeros(1), steps])
        dilation = (phi[0] - self.x[0] * slope[0]).reshape(1)  # Θ ≈ −|y|^γ at the origin
        return torch.cat([phi - phi[self.origin] - (integral - integral[self.origin]),
                          w - u / self.y, dilation])  # fmt: skip

    def gamma(self, z: Tensor, lam: float) -> float:
        """γ = λ / v'(0): Θ ~ |y|^γ at the origin (v'(0) read at the grid's first point)."""
        return lam / (1 + lam - float(z[self.n]))

    def start(self, lam: float) -> Tensor:
        """A starting state: Θ ~ −y² near 0, −y^(1−a) far, and U/y ~ (1 + λ/2) y^(−a)."""
        a = 1 / (1 + lam)
        phi = torch.log(self.y**2 / (1 + self.y**2) ** ((1 + a) / 2))  # Θ ≈ −y² at 0
        return torch.cat([phi, (1 + lam / 2) / (1 + self.y) ** a])

    def omega(self, z: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """(y, Ω) dilated to Ω'(0) = −1, the CCF normalisation: Ω̃(y) = Ω(μ y)."""
        slope, theta, _ = self.fields(z, torch.tensor(lam, dtype=z.dtype))
        omega = theta * slope / self.y
        mu = -1 / float(omega[0] / self.y[0])
        return self.y / mu, omega

    def resample(self, z: Tensor, other: LogGrid) -> Tensor:
        """The state z of ``other`` interpolated onto this grid (linear in x)."""
        xs, xo = self.x.numpy(), other.x.numpy()
        parts = [np.interp(xs, xo, part.numpy()) for part in (z[: other.n], z[other.n :])]
        return torch.from_numpy(np.concatenate(parts))


def levenberg_marquardt(fun: Callable[[Tensor], Tensor], z: Tensor, tol: float = 1e-11,
                        max_iter: int = 60, tick: Callable[[], None] = lambda: None
                        ) -> tuple[Tensor, float]:  # fmt: skip
    """Minimise |fun(z)| by Levenberg–Marquardt with a dense Jacobian; (z, |fun(z)|)."""
    damping = 1e-6
    r = fun(z)
    for _ in range(max_iter):
        if r.norm() < tol:
            break
        tick()
        jac = torch.func.jacfwd(fun)(z)
        normal, grad = jac.T @ jac, jac.T @ r
        eye = torch.eye(len(z), dtype=z.dtype)
        while damping < 1e8:
            trial = z - torch.linalg.solve(normal + damping * eye, grad)
            rt = fun(trial)
            if rt.norm() < r.norm():
                z, r, damping = trial, rt, max(damping / 3, 1e-14)
                break
            damping *= 4
        else:
            break
    return z, float(r.norm())


@dataclass
class BranchPoint:
    lam: float
    gamma: float
    state: Tensor = field(repr=False)


def follow_branch(grid: LogGrid, bracket: tuple[float, float], step: float = 0.05,
                  max_step: float = 1.0, tol: float = 1e-9, max_points: int = 2000,
                  tick: Callable[[], None] = lambda: None,
                  callback: Callable[[BranchPoint], None] | None = None
                  ) -> list[BranchPoint]:  # fmt: skip
    """The fixed-λ solutions from λ = hi down to λ = lo, by pseudo-arclength continuation
    in (z, λ) (λ weighted by √(2N) in the arclength so that it moves): the step grows by
    1.3 while the corrector converges and halves when it does not."""
    lo, hi = bracket
    weight = torch.ones(2 * grid.n + 1, dtype=torch.float64)
    weight[-1] = 2 * grid.n

    def point(state: Tensor) -> BranchPoint:
        lam = float(state[-1])
        return BranchPoint(lam, grid.gamma(state[:-1], lam), state)

    def fixed(lam: float, z: Tensor) -> Tensor:
        held = torch.tensor(lam, dtype=torch.float64)
        z, res = levenberg_marquardt(lambda s: grid.residual(s, held), z, tick=tick)
        if res > tol:
            raise RuntimeError(f"no fixed-λ solution found at λ = {lam:g} (residual {res:.1e})")
        return torch.cat([z, torch.tensor([lam], dtype=z.dtype)])

    first = fixed(hi, grid.start(hi))
    points = [point(first), point(fixed(hi - 0.01 * (hi - lo), first[:-1]))]
    for p in points:
        if callback is not None:
            callback(p)
    while points[-1].lam > lo and len(points) < max_points:
        prev, cur = points[-2].state, points[-1].state
        tangent = cur - prev
        tangent = tangent / torch.sqrt((tangent * tangent * weight).sum())
        guess = cur + step * tangent

        def corrector(s: Tensor, guess=guess, tangent=tangent) -> Tensor:
            arc = (tangent * (s - guess) * weight).sum().reshape(1)
            return torch.cat([grid.residual(s[:-1], s[-1]), arc])

        state, res = levenberg_marquardt(corrector, guess, tick=tick)
        if res > tol:
            step /= 2
            if step < 1e-6:
                raise RuntimeError(f"the branch cannot be followed past λ = {points[-1].lam:g}")
            continue
        points.append(point(state))
        if callback is not None:
            callback(points[-1])
        step = min(1.3 * step, max_step)
    return points


def solve_root(grid: LogGrid, state: Tensor, tick: Callable[[], None] = lambda: None
               ) -> tuple[Tensor, float]:  # fmt: skip
    """The profile near ``state`` = (z, λ): λ one more unknown, w(0) = 1 + λ/2 one more
    equation (γ = 2); (state, residual)."""

    def equations(s: Tensor) -> Tensor:
        lam = s[-1]
        rule = (s[grid.n] - 1 - lam / 2).reshape(1)
        return torch.cat([grid.residual(s[:-1], lam), rule])

    return levenberg_marquardt(equations, state, tick=tick)


def crossings(points: list[BranchPoint]) -> list[tuple[BranchPoint, BranchPoint]]:
    """Consecutive points of the branch between which γ − 2 changes sign, largest λ first."""
    pairs = [
        (p, q) for p, q in zip(points, points[1:]) if (p.gamma - GAMMA) * (q.gamma - GAMMA) < 0
    ]
    return sorted(pairs, key=lambda pq: -pq[0].lam)


@dataclass
class BranchProfile:
    """The order-``order`` CCF profile found on the branch, with its λ on two grids."""

    order: int
    lam: float
    lam_coarse: float
    h: tuple[float, float]
    residual: float
    y: Tensor = field(repr=False)
    omega: Tensor = field(repr=False)
    branch: list[dict] = field(default_factory=list)  # lambda, gamma along the branch
    roots: list[float] = field(default_factory=list)  # λ of every crossing (coarse grid)
    checked: list[dict] = field(default_factory=list)  # E/Ω by quadrature at check points
    seconds: float = 0.0

    @property
    def digits(self) -> int:
        """Significant digits of λ on which the two grids agree."""
        gap = abs(self.lam - self.lam_coarse) / abs(self.lam)
        return max(0, math.floor(-math.log10(gap))) if gap > 0 else 16


class BranchError(ValueError):
    """The bracket holds fewer crossings of γ = 2 than the order asks for."""


def find_branch_profile(
    order: int,
    bracket: tuple[float, float] = (0.3, 1.5),
    h: tuple[float, float] = (0.1, 0.05),
    follow_h: float = 0.2,
    x_range: tuple[float, float] = (-12.0, 40.0),
    callback: Callable[[BranchPoint], None] | None = None,
    time_limit: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BranchProfile:
    """Follow the branch across ``bracket`` on the grid of step ``follow_h``, take its
    (order+1)-th crossing of γ = 2 (largest λ first), solve for the profile there on the
    grids of steps h[0] and h[1] (each started from the last): λ on the finer grid, and
    the digits the two agree on; E checked by quadrature on the found profile
    (:mod:`pinnopt.blowup.quadrature_check`)."""
    lo, hi = bracket
    if not (0 < lo < hi):
        raise ValueError(f"bracket must be two numbers 0 < lo < hi, got {bracket}")
    start = time.perf_counter()
    tick = stop_check(should_stop, time_limit, start)
    grid = LogGrid(follow_h, *x_range)
    points = follow_branch(grid, bracket, tick=tick, callback=callback)
    pairs = [pq for pq in crossings(points) if lo <= pq[0].lam <= hi or lo <= pq[1].lam <= hi]
    roots = [(p.lam + q.lam) / 2 for p, q in pairs]
    if len(pairs) <= order:
        raise BranchError(
            f"the bracket [{lo:g}, {hi:g}] holds {len(pairs)} crossing(s) of γ = 2 on the branch; "
            f"order {order} needs {order + 1}"
        )
    p, q = pairs[order]
    state = (p if abs(p.gamma - GAMMA) < abs(q.gamma - GAMMA) else q).state
    solved = []
    for step in h:
        finer = LogGrid(step, *x_range)
        state = torch.cat([finer.resample(state[:-1], grid), state[-1:]])
        state, res = solve_root(finer, state, tick)
        grid = finer
        solved.append(float(state[-1]))
    lam = solved[-1]
    y, omega = grid.omega(state[:-1], lam)
    checked = ccf_residual_by_quadrature(y, omega, lam, quadrature_points(y, omega))
    return BranchProfile(
        order=order, lam=lam, lam_coarse=solved[0], h=tuple(h), residual=res,
        y=y, omega=omega, branch=[{"lambda": b.lam, "gamma": b.gamma} for b in points],
        roots=roots, checked=checked, seconds=time.perf_counter() - start,
    )  # fmt: skip

"""Poisson's equation on the L-shaped domain, with a finite-difference reference solution.

−Δu = 1 on Ω = [−1, 1]² minus [0, 1] × [−1, 0], u = 0 on ∂Ω. Near the re-entrant corner
u ~ c r^(2/3) sin(2θ/3): the gradient is unbounded there, no closed form is known, and
the error of the 5-point scheme is O(h^(4/3)) away from the corner, O(h^(2/3)) at it.

Reference: the 5-point scheme on the uniform grids h = 1/m and h/2 (m = ``COARSE``),
solved directly with scipy.sparse, combined by Richardson extrapolation with the
exponent 4/3 (u_h/2 + (u_h/2 − u_h)/(2^(4/3) − 1), the correction interpolated to the
fine grid), then bilinear interpolation between the fine grid's nodes. The default
evaluation grid (101 points per axis, spacing 0.02) lies on the nodes.

Measured accuracy (u itself is 0.149 at most, 0.072 root-mean-square):

- at the nodes of the h = 1/100 grid, this reference (m = 100) against the same
  construction with m = 200 differs by 4.7e-5 at most (next to the corner) and 6.6e-7
  root-mean-square; plain 5-point solves h = 1/200 and 1/400 differ by 3.9e-4 at most,
  1.2e-5 root-mean-square, so the extrapolation gains a factor of 8 to 20;
- at random points (bilinear interpolation included): 6.6e-4 at most, within 0.1 of
  the corner where u is not smooth, 7.6e-6 at most farther away, 3.2e-6
  root-mean-square; interpolation dominates between nodes;
- m = 50 against m = 100, at the nodes of the h = 1/50 grid (the check in
  tests/problems/test_lshape.py): 7.5e-5 at most, 2.3e-6 root-mean-square.

The two solves take about 0.6 s (m = 100) the first time; the result is cached.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Problem, Term
from pinnopt.problems.geometry import l_shape
from pinnopt.problems.registry import register_problem

COARSE = 100  # cells per unit length of the coarse grid; the fine grid has 2·COARSE
EXPONENT = 4.0 / 3.0  # leading error order of the 5-point scheme away from the corner


def fd_solve(m: int) -> np.ndarray:
    """Node values (2m+1, 2m+1) of the 5-point solution of −Δu = 1, u = 0 on ∂Ω, on the
    grid x_i = −1 + i/m (index [i, j] ↔ (x_i, y_j)); zero on ∂Ω and outside Ω."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    n, h = 2 * m + 1, 1.0 / m
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    unknown = (i > 0) & (i < n - 1) & (j > 0) & (j < n - 1) & ~((i >= m) & (j <= m))
    second = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    eye = sp.identity(n)
    k = np.flatnonzero(unknown.ravel())
    a = ((sp.kron(second, eye) + sp.kron(eye, second)).tocsr()[k][:, k] / h**2).tocsc()
    u = np.zeros((n, n))
    u[unknown] = spsolve(a, np.ones(len(k)))
    return u


def _refine(c: np.ndarray) -> np.ndarray:
    """Bilinear prolongation of node values from a grid to the grid of half the spacing."""
    n = c.shape[0]
    f = np.zeros((2 * n - 1, 2 * n - 1))
    f[::2, ::2] = c
    f[1::2, ::2] = 0.5 * (c[:-1] + c[1:])
    f[:, 1::2] = 0.5 * (f[:, :-2:2] + f[:, 2::2])
    return f


@functools.cache
def reference_grid(m: int = COARSE) -> np.ndarray:
    """Richardson-extrapolated node values on the grid of spacing 1/(2m), cached."""
    fine, coarse = fd_solve(2 * m), fd_solve(m)
    return fine + _refine(fine[::2, ::2] - coarse) / (2**EXPONENT - 1)


def interpolate(values: np.ndarray, x: Tensor) -> Tensor:
    """Bilinear interpolation of node values on the uniform grid of [−1, 1]² at x (N, 2)."""
    n = values.shape[0]
    h = 2.0 / (n - 1)
    s = ((x.detach().cpu().to(torch.float64) + 1.0) / h).numpy()
    i = np.clip(np.floor(s), 0, n - 2).astype(np.int64)
    t = s - i
    v = values
    tx, ty, ix, iy = t[:, 0], t[:, 1], i[:, 0], i[:, 1]
    out = (1 - tx) * (1 - ty) * v[ix, iy] + tx * (1 - ty) * v[ix + 1, iy]
    out += (1 - tx) * ty * v[ix, iy + 1] + tx * ty * v[ix + 1, iy + 1]
    return torch.from_numpy(out)


def lshape_reference(x: Tensor, m: int = COARSE) -> Tensor:
    """The reference u(x) at points x (N, 2) of the closed L-shape, (N,) float64."""
    return interpolate(reference_grid(m), x)


@register_problem("poisson_lshape")
def poisson_lshape() -> Problem:
    """−Δu = 1 on the L-shape [−1, 1]² minus [0, 1] × [−1, 0], u = 0 on its boundary."""
    domain = l_shape()

    def pde(u: Jet, x: Tensor) -> Tensor:
        return -u.laplacian() - 1.0

    def bc(u: Jet, x: Tensor) -> Tensor:
        return u.u

    terms = [
        Term("pde", domain.interior, pde, order=2, n=2000, trace=True),
        Term("bc", domain.boundary(), bc, order=0, n=400),
    ]
    return Problem(
        "poisson_lshape", domain, terms, lshape_reference, ("x", "y"),
        "-Lap u = 1 on the L-shape [-1,1]^2 minus [0,1]x[-1,0], u=0 on the boundary "
        "(finite-difference reference)",
    )  # fmt: skip

"""Allen–Cahn equation u_t − ε u_xx + a u³ − a u = 0 with a Fourier–ETDRK4 reference.

The benchmark (Raissi, Perdikaris & Karniadakis 2019; Wight & Zhao 2020) is ε = 1e-4,
a = 5 on x ∈ [−1, 1] (periodic), t ∈ [0, 1], u(x, 0) = x² cos(πx). Its reference is
computed here, numpy only: a Fourier pseudo-spectral discretisation in x and the
fourth-order exponential time differencing scheme ETDRK4 of Cox & Matthews (2002) in t,
with the φ-functions evaluated by contour integrals as in Kassam & Trefethen, "Fourth-
order time-stepping for stiff PDEs", SIAM J. Sci. Comput. 26 (2005).

Settings and measured accuracy (defaults ε = 1e-4, a = 5; ``tests/problems/
test_hard_problems.py`` re-measures them): N = 4096 Fourier modes, dt = 5e-4 (2000
steps, every level stored: 66 MB, cached), M = 32 contour points; the first call takes
about 0.5 s. In max norm over x, halving dt changes u by ≤ 1e-11 for t ≥ 0.004 (7e-12 at
t = 0.005, 2e-12 at t = 1), doubling N by ≤ 3e-11 for t ≥ 0.003; M = 64 changes the
φ-weights by ≤ 6e-15 relative. The PDE residual of the reference (u_x, u_xx spectral,
u_t by 8th-order central differences of the stored levels) is ≤ 1e-10 for t ≥ 0.005
(measured 5e-11). The initial data are the
exact Fourier coefficients of x² cos(πx), whose periodic extension has a kink at x = ±1
(u'(±1) = ∓2), so they decay only like k⁻²: the truncated series is 2e-4 off at t = 0
near x = ±1, and for small t the reference is limited by N near x = ±1 until diffusion
and the reaction (rate −10 at u = −1) smooth the kink: 3e-7 at t = 0.001, 3e-9 at
t = 0.002. At t = 0 the reference returns the initial data x² cos(πx) exactly.

Evaluation is exact in x (the Fourier series summed at the requested x). In t, times on
the step grid t_n = n·dt read the stored coefficients; up to ``EXACT_TIMES`` other distinct
times are reached by one ETDRK4 step of size t − t_n from the level below (as accurate as
the scheme); more distinct times fall back to local degree-7 Lagrange interpolation of the
stored levels with the linear part as integrating factor, measured against the exact
route at ≤ 3e-13 for t ≥ 0.005, ≤ 4e-11 for t ≥ 0.001 and ≤ 1e-9 below.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.registry import register_problem

PI = math.pi
DIFFUSION = 1e-4
REACTION = 5.0
T_END = 1.0
N_MODES = 4096  # Fourier modes (grid points) in x ∈ [−1, 1)
DT = 5e-4  # ETDRK4 time step; every level is stored
CONTOUR_POINTS = 32  # points on the upper half circle for the φ-functions
EXACT_TIMES = 32  # at most this many distinct off-grid times get exact partial steps
INTERPOLATION_NODES = 8  # degree-7 Lagrange interpolation in t beyond that


def initial_coefficients(n_modes: int) -> np.ndarray:
    """Exact Fourier coefficients a_k, k = 0..N/2, of x² cos(πx) in the basis e^{iπk(x+1)}.

    With I(m) = ∫₀¹ x² cos(mπx) dx = 2(−1)^m / (mπ)² (m ≠ 0), 1/3 (m = 0), the cosine
    coefficient is c_k = [I(k+1) + I(k−1)] / 2 and the shift x + 1 gives a_k = (−1)^k c_k.
    The Nyquist mode is set to zero.
    """
    k = np.arange(n_modes // 2 + 1, dtype=np.float64)

    def integral(m: np.ndarray) -> np.ndarray:
        m = np.abs(m)
        safe = np.where(m == 0, 1.0, m)
        return np.where(m == 0, 1.0 / 3.0, 2.0 * (-1.0) ** m / (safe * PI) ** 2)

    a = 0.5 * (integral(k + 1) + integral(k - 1)) * (-1.0) ** k
    a[-1] = 0.0
    return a.astype(np.complex128)


def etdrk4_weights(hl: np.ndarray, h: np.ndarray | float, m: int = CONTOUR_POINTS):
    """ETDRK4 coefficients (E, E/2, Q, f1, f2, f3) for z = hL (real, any shape).

    The φ-type functions are means over m points z + ρ e^{iπ(j−½)/m} of the upper half
    of a circle around z (Kassam & Trefethen 2005), which avoids the cancellation of the
    closed forms at small |z|; the real part completes the circle by symmetry. The
    radius is ρ = 1 for |z| ≥ 2 and ρ = 1 + |z| below, so that every point keeps
    |z + ρe^{iθ}| ≥ 1 (a unit circle around z ≈ −1 would pass next to 0, where the
    closed forms lose ~10 digits); the functions are entire, so the trapezoid rule
    converges like ρ^{2m}/(2m)!, far below rounding for ρ ≤ 3 and m = 32.
    """
    hl = np.asarray(hl, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    radius = np.where(np.abs(hl) < 2, 1 + np.abs(hl), 1.0)
    r = np.exp(1j * PI * (np.arange(1, m + 1) - 0.5) / m)
    z = hl[..., None] + radius[..., None] * r
    ez, ez2 = np.exp(z), np.exp(z / 2)
    z3 = z**3
    q = h * np.real(np.mean((ez2 - 1) / z, axis=-1))
    f1 = h * np.real(np.mean((-4 - z + ez * (4 - 3 * z + z * z)) / z3, axis=-1))
    f2 = h * np.real(np.mean((2 + z + ez * (z - 2)) / z3, axis=-1))
    f3 = h * np.real(np.mean((-4 - 3 * z - z * z + ez * (4 - z)) / z3, axis=-1))
    return np.exp(hl), np.exp(hl / 2), q, f1, f2, f3


class AllenCahnReference:
    """u_t = ε u_xx + a(u − u³), x ∈ [−1, 1) periodic, u(x, 0) = x² cos(πx), by Fourier–ETDRK4.

    ``coefficients[n]`` holds a_k(t_n), k = 0..N/2, at t_n = n·dt, with
    u(x, t) = Σ_k w_k Re(a_k(t) e^{iπk(x+1)}), w_0 = 1, w_k = 2 (k ≥ 1). The nonlinear
    term is evaluated on the N-point grid (pseudo-spectral; the Nyquist mode is kept 0).
    """

    def __init__(
        self,
        diffusion: float = DIFFUSION,
        reaction: float = REACTION,
        n_modes: int = N_MODES,
        dt: float = DT,
        t_end: float = T_END,
        contour_points: int = CONTOUR_POINTS,
    ) -> None:
        if n_modes < 8 or n_modes % 2:
            raise ValueError(f"n_modes must be even and >= 8, got {n_modes}")
        steps = round(t_end / dt)
        if not (dt > 0 and abs(steps * dt - t_end) <= 1e-12 * t_end):
            raise ValueError(f"dt must divide t_end = {t_end}, got {dt}")
        self.diffusion, self.reaction = float(diffusion), float(reaction)
        self.n_modes, self.dt, self.t_end = n_modes, float(dt), float(t_end)
        self.contour_points = contour_points
        self.k = np.arange(n_modes // 2 + 1, dtype=np.float64)
        self.linear = -self.diffusion * (PI * self.k) ** 2
        weights = etdrk4_weights(self.linear * dt, dt, contour_points)
        levels = np.empty((steps + 1, self.k.size), dtype=np.complex128)
        levels[0] = v = initial_coefficients(n_modes)
        for n in range(steps):
            levels[n + 1] = v = self._step(v, weights)
        self.coefficients = levels
        self.times = np.arange(steps + 1) * self.dt

    def _nonlinear(self, v: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v, self.n_modes, norm="forward")
        w = np.fft.rfft(self.reaction * (u - u * u * u), norm="forward")
        w[..., -1] = 0.0
        return w

    def _step(self, v: np.ndarray, weights) -> np.ndarray:
        """One ETDRK4 step (Cox & Matthews 2002) of v (…, K) with the given weights."""
        e, e2, q, f1, f2, f3 = weights
        nv = self._nonlinear(v)
        a = e2 * v + q * nv
        na = self._nonlinear(a)
        b = e2 * v + q * na
        nb = self._nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = self._nonlinear(c)
        return e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc

    def _level(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = t / self.dt
        n = np.rint(s)
        on = np.abs(s - n) <= 1e-9 * np.maximum(1.0, s)
        return n.astype(np.int64), on

    def _times(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if t.size and not (t.min() >= -1e-12 and t.max() <= self.t_end * (1 + 1e-12)):
            raise ValueError(
                f"t must lie in [0, {self.t_end}], got values in [{t.min()}, {t.max()}]"
            )
        return np.clip(t, 0.0, self.t_end)

    def coefficients_at(self, t: np.ndarray, exact_times: int = EXACT_TIMES) -> np.ndarray:
        """a_k(t) for times t (T,) in [0, t_end]: stored, by a partial step, or interpolated.

        Times on the step grid read the stored levels. Distinct times off it, up to
        ``exact_times`` of them, are each reached by one ETDRK4 step of size t − t_n from
        the level t_n below; with more of them the coefficients are interpolated
        (:meth:`interpolate`).
        """
        t = self._times(t)
        return self._coefficients(t, self._exact(t, exact_times))

    def _exact(self, t: np.ndarray, exact_times: int = EXACT_TIMES) -> bool:
        _, on = self._level(t)
        return np.unique(t[~on]).size <= exact_times

    def _coefficients(self, t: np.ndarray, exact: bool) -> np.ndarray:
        n, on = self._level(t)
        out = np.empty((t.size, self.k.size), dtype=np.complex128)
        out[on] = self.coefficients[n[on]]
        off = np.flatnonzero(~on)
        if off.size and not exact:
            out[off] = self.interpolate(t[off])
        elif off.size:
            for chunk in np.array_split(off, -(-off.size // 16)):
                below = np.floor(t[chunk] / self.dt).astype(np.int64)
                h = (t[chunk] - below * self.dt)[:, None]
                weights = etdrk4_weights(self.linear * h, h, self.contour_points)
                out[chunk] = self._step(self.coefficients[below], weights)
        return out

    def interpolate(self, t: np.ndarray, nodes: int = INTERPOLATION_NODES) -> np.ndarray:
        """a_k(t) by Lagrange interpolation of ``nodes`` stored levels around each t.

        The interpolant is of e^{L(t−s)} a_k(s) (the linear part as integrating factor,
        which takes out the fast decay of the diffusive modes), with L clipped at
        −20/(nodes·dt) so that the factor stays ≤ e^20 on the stencil.
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        last = self.times.size - nodes
        start = np.clip(np.floor(t / self.dt).astype(np.int64) - (nodes // 2 - 1), 0, last)
        s = t / self.dt - start  # position in units of dt from the first node
        j = np.arange(nodes)
        diff = s[:, None] - j  # (T, nodes)
        lagrange = np.ones((t.size, nodes))
        for i in range(nodes):
            for m in range(nodes):
                if m != i:
                    lagrange[:, i] *= (s - m) / (i - m)
        lin = np.maximum(self.linear, -20.0 / (nodes * self.dt))
        out = np.zeros((t.size, self.k.size), dtype=np.complex128)
        for i in range(nodes):
            decay = np.exp(np.outer(diff[:, i] * self.dt, lin))
            out += (lagrange[:, i, None] * decay) * self.coefficients[start + i]
        return out

    def basis(self, x: np.ndarray, dx: int = 0) -> np.ndarray:
        """w_k (iπk)^dx e^{iπk(x+1)} at points x (X,): shape (X, K)."""
        w = np.where(self.k == 0, 1.0, 2.0) * (1j * PI * self.k) ** dx
        return w * np.exp(1j * PI * np.outer(np.asarray(x, np.float64) + 1.0, self.k))

    def __call__(self, x: np.ndarray, t: np.ndarray, dx: int = 0) -> np.ndarray:
        """∂ₓ^dx u(x, t) at points (x_i, t_i), evaluated exactly in x by the Fourier series.

        Points are grouped by their distinct t, a block of times at a time. On a tensor
        grid (few distinct x) a block is one matrix product (times × modes)·(modes × x's);
        scattered points are summed point by point. At t = 0 the value (dx = 0) is the
        initial data x² cos(πx) itself.
        """
        x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
        x, t = x.reshape(-1), self._times(t)
        tu, ti = np.unique(t, return_inverse=True)
        xu, xi = np.unique(x, return_inverse=True)
        exact = self._exact(tu)
        grid = xu.size <= 2048 and tu.size * xu.size <= 16 * x.size + 65536
        basis = self.basis(xu, dx) if grid else None
        order = np.argsort(ti, kind="stable")
        values = np.empty(x.size)
        block = 256
        for first in range(0, tu.size, block):
            a = self._coefficients(tu[first : first + block], exact)
            lo, hi = np.searchsorted(ti[order], [first, first + block])
            points = order[lo:hi]
            if grid:
                table = np.real(a @ basis.T)
                values[points] = table[ti[points] - first, xi[points]]
                continue
            for chunk in np.array_split(points, -(-points.size // 1024)):
                e = self.basis(x[chunk], dx)
                values[chunk] = np.real(np.einsum("ik,ik->i", a[ti[chunk] - first], e))
        if dx == 0:
            start = t == 0
            values[start] = x[start] ** 2 * np.cos(PI * x[start])
        return values


@lru_cache(maxsize=2)
def allen_cahn_reference(
    diffusion: float = DIFFUSION,
    reaction: float = REACTION,
    n_modes: int = N_MODES,
    dt: float = DT,
    contour_points: int = CONTOUR_POINTS,
) -> AllenCahnReference:
    """The Fourier–ETDRK4 reference, computed once per setting (module-level cache)."""
    return AllenCahnReference(diffusion, reaction, n_modes, dt, T_END, contour_points)


@register_problem("allen_cahn1d")
def allen_cahn1d(diffusion: float = DIFFUSION, reaction: float = REACTION) -> Problem:
    """u_t − ε u_xx + a u³ − a u = 0 on [−1,1]×[0,1], periodic in x, u(x,0) = x² cos(πx).

    ε = ``diffusion`` = 1e-4 and a = ``reaction`` = 5 by default. Periodic in x with
    period 2 through the network's inputs, so there is no boundary term. The reference
    is the Fourier–ETDRK4 solution of this module (resolution verified for the defaults).
    """
    if not (math.isfinite(diffusion) and diffusion > 0):
        raise ValueError(f"diffusion must be > 0, got {diffusion}")
    if not (math.isfinite(reaction) and reaction >= 0):
        raise ValueError(f"reaction must be >= 0, got {reaction}")
    box = Box([-1.0, 0.0], [1.0, T_END])

    def reference(x: Tensor) -> Tensor:
        solution = allen_cahn_reference(float(diffusion), float(reaction))
        u = solution(x[:, 0].detach().cpu().numpy(), x[:, 1].detach().cpu().numpy())
        return torch.from_numpy(u).to(x.device)

    def pde(u: Jet, x: Tensor) -> Tensor:
        return u.d(1) - diffusion * u.d2(0) + reaction * u.u**3 - reaction * u.u

    def ic(u: Jet, x: Tensor) -> Tensor:
        return u.u - x[:, 0] ** 2 * torch.cos(PI * x[:, 0])

    terms = [
        Term("pde", box.interior, pde, order=2, n=4000),
        Term("ic", box.face(1, "lower"), ic, order=0, n=256),
    ]
    return Problem(
        "allen_cahn1d", box, terms, reference, ("x", "t"),
        f"u_t - {diffusion:g} u_xx + {reaction:g} u^3 - {reaction:g} u = 0 on [-1,1]x[0,1], "
        "periodic, u(x,0) = x^2 cos(pi x)",
        eval_grid=201, params={"diffusion": diffusion, "reaction": reaction},
        periodic={0: 2.0},
    )  # fmt: skip

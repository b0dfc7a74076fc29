"""The CCF residual of a sampled profile by adaptive quadrature: a check independent of
the grid the profile was found on (:mod:`pinnopt.blowup.ccf_branch`).

Ω is interpolated by a cubic spline in x = log y of Ω (1 + y²)^((1+a)/2) / y (smooth
and bounded), and at each check point y

    E = Ω + ((1 + λ) y − U) Ω' − Ω HΩ,
    HΩ(y) = (1/π) p.v. ∫_0^∞ Ω(s) 2s / (y² − s²) ds,
    U(y) = (1/π) ∫_0^∞ Ω(s) log|(y − s)/(y + s)| ds,

both by scipy's QUADPACK in t = log s (the principal value with its Cauchy weight, the
log singularity of U split at s = y). |E| / |Ω| is the relative residual reported.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad
from scipy.interpolate import CubicSpline
from torch import Tensor


def quadrature_points(y: Tensor, omega: Tensor, count: int = 16) -> list[float]:
    """``count`` points log-spaced over y ∈ [10⁻², 10²], and the peak of |Ω| with the grid
    points two to each side of it (where a sharp profile is hardest to get right)."""
    peak = int(omega.abs().argmax())
    near = [float(y[i]) for i in range(peak - 2, peak + 3) if 0 <= i < len(y)]
    return sorted([10 ** (-2 + 4 * k / (count - 1)) for k in range(count)] + near)


def ccf_residual_by_quadrature(y: Tensor, omega: Tensor, lam: float,
                               points: list[float]) -> list[dict]:  # fmt: skip
    """[{y, omega, residual, relative}] at ``points`` for the sampled odd profile
    (y > 0 increasing, Ω) of rate λ (module docstring)."""
    a = 1 / (1 + lam)
    ys, om = y.double().numpy(), omega.double().numpy()
    x = np.log(ys)
    spline = CubicSpline(x, om / ys * (1 + ys**2) ** ((1 + a) / 2))
    lo, hi = float(x[0]), float(x[-1])

    def profile(s: float) -> float:
        return float(spline(math.log(s))) * s / (1 + s * s) ** ((1 + a) / 2)

    def slope(s: float) -> float:
        g, dg = float(spline(math.log(s))), float(spline(math.log(s), 1)) / s
        env = s / (1 + s * s) ** ((1 + a) / 2)
        denv = (1 + s * s) ** (-(1 + a) / 2) - (1 + a) * s * s * (1 + s * s) ** (-(3 + a) / 2)
        return dg * env + g * denv

    def hilbert(yy: float) -> float:
        t0 = math.log(yy)

        def smooth(t: float) -> float:  # Ω 2s²/((y+s)(y−s)) times (t − t0): finite at t0
            s = math.exp(t)
            ratio = -1 / yy if abs(t - t0) < 1e-12 else (t - t0) / (yy - s)
            return profile(s) * 2 * s * s / (yy + s) * ratio

        def kernel(t: float) -> float:
            s = math.exp(t)
            return profile(s) * 2 * s * s / (yy * yy - s * s)

        core = quad(smooth, t0 - 3, t0 + 3, weight="cauchy", wvar=t0, limit=400)[0]
        tails = quad(kernel, lo, t0 - 3, limit=400)[0] + quad(kernel, t0 + 3, hi, limit=400)[0]
        return (core + tails) / math.pi

    def velocity(yy: float) -> float:
        t0 = math.log(yy)

        def kernel(t: float) -> float:
            s = math.exp(t)
            return profile(s) * s * math.log(abs(math.tanh((t - t0) / 2)) + 1e-300)

        return (quad(kernel, lo, t0, limit=400)[0] + quad(kernel, t0, hi, limit=400)[0]) / math.pi

    rows = []
    for yy in points:
        o = profile(yy)
        e = o + ((1 + lam) * yy - velocity(yy)) * slope(yy) - o * hilbert(yy)
        rows.append({"y": yy, "omega": o, "residual": e, "relative": abs(e) / abs(o)})
    return rows

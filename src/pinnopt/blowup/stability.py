"""Stability of a found profile: the spectrum of the linearised self-similar evolution.

In self-similar time s the profile equation is the steady state of ∂_s W = −E(W, λ)
(:mod:`pinnopt.blowup.equation`). A perturbation W + ε e^(μ s) φ grows when Re μ > 0, and
μ, φ solve the linearised problem

    −DE(W)[φ] = μ φ,

DE the Fréchet derivative of E at the profile, for fixed λ. It is discretised in the basis
of the profile's own ansatz, in the same symmetry class (odd): φ = Σ c_k φ_k, collocated
at as many points as there are basis functions, so that A c = μ M c with
A_jk = −DE[φ_k](y_j) and M_jk = φ_k(y_j), a generalised eigenproblem (scipy's QZ).
DE[φ_k] is a forward-mode derivative of E (``torch.func.jvp``), so an equation needs to
supply nothing more than its residual.

Two eigenvalues come from the symmetries of every such equation and are no instability of
the profile: μ = 1, the shift of the blow-up time (φ = W-derivative along T), and μ = 0,
the dilation y → μ y (φ = y W'). :func:`count_unstable` leaves them out. (Space
translation, μ = 1 + λ for Burgers, has an even eigenfunction and is not in the odd class.)
Eigenvalues of a collocation are trusted only where two resolutions agree
(:func:`stable_eigenvalues`): the others belong to the discretisation. That filter is
not enough when the operator has, for every μ, a solution that is merely very smooth
(not analytic) at an end of the domain: polynomials then resolve it, and a spurious
eigenvalue converges too (spectral pollution; docs/blowup.md shows it for Burgers from
order 3 on, where the count comes out wrong).

For Burgers the odd-class spectrum is known in closed form: near y = 0 an eigenfunction
behaves like y^((1 + λ − μ)/λ), smooth only when the power is an odd integer j, so
μ_j = 1 − (j − 1) λ_n, j = 1, 3, 5, …: μ = 1, 1 − 2λ_n, …, 1 − 2nλ_n > 0, then 0
(j = 2n + 3) — n unstable modes besides the two symmetries for the order-n profile
(:func:`burgers_spectrum`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from pinnopt.blowup.analytic_series import (
    AnalyticSeries,
    chebyshev_with_derivatives,
    series_fields,
)
from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.equation import ProfileEquation
from pinnopt.blowup.series_profile import collocation_points
from pinnopt.derivatives import jet

SYMMETRY_EIGENVALUES = (1.0, 0.0)  # blow-up time shift, dilation


def _spectrum(equation: ProfileEquation, base: dict, modes: list[dict], y: Tensor,
              lam: Tensor) -> np.ndarray:  # fmt: skip
    """Eigenvalues μ of −DE[φ] = μ φ in the span of ``modes`` collocated at y."""
    weight = equation.weight(y, lam)
    cols_a, cols_m = [], []
    for mode in modes:
        _, tangent = torch.func.jvp(lambda fl: equation.residual(fl, y, lam), (base,), (mode,))
        cols_a.append(-tangent / weight)
        cols_m.append(mode["f"] / weight)
    a = torch.stack(cols_a, 1).numpy()
    m = torch.stack(cols_m, 1).numpy()
    mu = scipy.linalg.eigvals(a, m)
    mu = mu[np.isfinite(mu)]
    return mu[np.argsort(-mu.real)]


@torch.no_grad()
def series_spectrum(equation: ProfileEquation, model: AnalyticSeries, size: int | None = None
                    ) -> np.ndarray:  # fmt: skip
    """Eigenvalues of the linearisation around an analytic-series profile, ``size`` basis
    functions (default: the model's degree + 1), largest real part first."""
    n = model.degree + 1 if size is None else size
    lam = model.lam.detach()
    a = equation.decay(lam)
    y = collocation_points(n, float(a), model.scale)
    base = {k: v.detach() for k, v in model.fields(y).items()}
    columns = series_fields(y, a, torch.eye(n, dtype=y.dtype), model.scale)  # φ_k: column k
    modes = [{key: value[:, k] for key, value in columns.items()} for k in range(n)]
    return _spectrum(equation, base, modes, y, lam)


@torch.no_grad()
def chebyshev_spectrum(equation: ProfileEquation, model: BurgersAnsatz, size: int) -> np.ndarray:
    """Eigenvalues of the linearisation around a Chebyshev-ansatz profile (Burgers), in the
    basis φ_k = y (1 + y²)^((β − 1)/2) T_k(2ζ − 1), k < ``size``: the ansatz's envelope
    and compactified coordinate, without its normalisation."""
    lam = model.lam.detach()
    z = (1 + torch.cos(torch.pi * (torch.arange(size, dtype=lam.dtype) + 0.5) / size)) / 2
    y = model.y_of_zeta(z.clamp(max=1 - 1e-15))
    j = jet(model, y.unsqueeze(1), 1)
    base = {"f": j.u.detach().reshape(-1), "df": j.d(0).detach().reshape(-1)}

    with torch.enable_grad():
        yg = y.clone().requires_grad_(True)
        (dzeta,) = torch.autograd.grad(model.zeta(yg).sum(), yg)
    t, dt, _ = chebyshev_with_derivatives((2 * model.zeta(y) - 1).unsqueeze(1), size)
    d = 1 + y * y
    env = (y * d ** ((model.beta - 1) / 2)).unsqueeze(1)
    denv = d ** ((model.beta - 1) / 2) + (model.beta - 1) * y * y * d ** ((model.beta - 3) / 2)
    values = env * t
    slopes = denv.unsqueeze(1) * t + env * dt * 2 * dzeta.unsqueeze(1)
    modes = [{"f": values[:, k], "df": slopes[:, k]} for k in range(size)]
    return _spectrum(equation, base, modes, y, lam)


def stable_eigenvalues(coarse: np.ndarray, fine: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """The eigenvalues of ``fine`` that ``coarse`` reproduces to ``tol`` (relative to
    max(1, |μ|)): the ones the discretisation has converged, largest real part first."""
    keep = [mu for mu in fine if np.min(np.abs(coarse - mu)) <= tol * max(1.0, abs(mu))]
    return np.array(sorted(keep, key=lambda m: -m.real))


def count_unstable(eigenvalues: np.ndarray, tol: float = 1e-6, symmetry_tol: float = 1e-2
                   ) -> tuple[int, list[complex]]:  # fmt: skip
    """(n, unstable): the eigenvalues with Re μ > tol once the one nearest each symmetry
    value (1 and 0) is set aside, if it is within ``symmetry_tol`` of it."""
    rest = list(eigenvalues)
    for sym in SYMMETRY_EIGENVALUES:
        if rest:
            k = int(np.argmin([abs(mu - sym) for mu in rest]))
            if abs(rest[k] - sym) < symmetry_tol:
                rest.pop(k)
    unstable = [complex(mu) for mu in rest if mu.real > tol]
    return len(unstable), unstable


def burgers_spectrum(order: int, count: int) -> list[float]:
    """The first ``count`` odd-class eigenvalues 1 − 2mλ_n, m = 0, 1, … (module docstring)."""
    lam = 1.0 / (2 * order + 2)
    return [1 - 2 * m * lam for m in range(count)]

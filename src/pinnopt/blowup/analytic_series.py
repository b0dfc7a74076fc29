"""A series on the real line whose Hilbert transform is exact: boundary values of an
analytic function of the upper half plane, with the far field built in.

If B(z) is analytic for Im z > 0 and B'(z) → 0 as |z| → ∞ there, then on the real line

    Im B'(y) = H[Re B'](y),     H f(y) = (1/π) p.v. ∫ f(s) / (y − s) ds,

(H[1/(1+y²)] = y/(1+y²)): Re B' and Im B' are a Hilbert pair, whatever B is, with no
quadrature (Titchmarsh, *Introduction to the theory of Fourier integrals*, 1937, Thm 93;
the same idea as the Wiener/Christov functions ((1 + iy)/(1 − iy))ⁿ/(1 − iy), which
are eigenfunctions of H, Weideman, *Math. Comp.* 64, 1995). This module builds B as

    B(y) = q^b · [ Σ_k c_k T_k(2ρ − 1) + Σ_{k<K} Σ_{1≤n≤N} d_kn ρ^k wⁿ ],
    q = 1 − iy,   ρ = q^(−a),   b = 1 − a,   w = (1 + iy)/(1 − iy) = 2/q − 1,

with T_k the Chebyshev polynomials and real coefficients c_k, d_kn (the second sum, the
"w-block", is empty unless ``blocks`` K and ``modes`` N are set). q^p and ρ are analytic
for Im z > 0 (q has positive real part there), so every term is. Then

* f = Re B' decays like |y|^(−a) and is odd, H f = Im B' is even (real coefficients
  give B(−y) = conj B(y)); F = Re B is even and grows like |y|^b, and U = Im B − Im B(0)
  is odd with U' = H f;
* the far field is a power series in ρ ~ |y|^(−a): B ~ y^b (c + c' y^(−a) + …), the
  expansion that a profile equation with far-field decay |y|^(−a) generates from its
  quadratic terms (pinnopt.blowup.ccf). Integer powers y^(−j) (from U(0) ≠ 0 and the
  q = 1 − iy shift) are not in the span, and ρ^(1/a) is not a polynomial in ρ unless 1/a
  is an integer: the first sum alone then converges algebraically in the degree
  (docs/blowup.md says how fast). The w-block adds, for each branch power ρ^k, a
  Fourier series on the circle |w| = 1 (the Wiener/Christov direction): with it the
  residual of the CCF profile falls from 3e-6 to 1e-10 (docs/blowup.md);
* the exponent a depends on λ (a = 1/(1+λ) for CCF), and so does the series: its
  fields are differentiable in λ, so λ can be one more unknown of Gauss–Newton.

The ``scale`` L stretches the map, q = 1 − iy/L.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def chebyshev_with_derivatives(x: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """T_k(x), T_k'(x), T_k''(x) for k < n, x of shape (M, 1) (complex allowed): (M, n) each.

    T_{k+1} = 2x T_k − T_{k−1}, differentiated once and twice.
    """
    t = [torch.ones_like(x), x]
    d = [torch.zeros_like(x), torch.ones_like(x)]
    dd = [torch.zeros_like(x), torch.zeros_like(x)]
    for k in range(1, n - 1):
        t.append(2 * x * t[k] - t[k - 1])
        d.append(2 * t[k] + 2 * x * d[k] - d[k - 1])
        dd.append(4 * d[k] + 2 * x * dd[k] - dd[k - 1])
    return torch.cat(t[:n], 1), torch.cat(d[:n], 1), torch.cat(dd[:n], 1)


def basis_terms(y: Tensor, a: Tensor, n: int, scale: float = 1.0, blocks: int = 0,
                modes: int = 0) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """(B_k, B_k', B_k'') at ``y`` (shape (M,)) for the n terms q^b T_k(2ρ − 1), then the
    ``blocks`` × ``modes`` terms q^b ρ^k wⁿ (k < blocks, 1 ≤ n ≤ modes, k slowest): complex
    (M, n + blocks·modes) each; derivatives with respect to y."""
    b = 1 - a
    q = (1 - 1j * y / scale).unsqueeze(1)
    rho = q ** (-a)
    drho = -a * rho / q  # dρ/dq
    d2rho = a * (a + 1) * rho / q**2
    t, dt, ddt = chebyshev_with_derivatives(2 * rho - 1, n)
    g1 = 2 * dt * drho  # d/dq T_k(2ρ − 1)
    g2 = 4 * ddt * drho**2 + 2 * dt * d2rho
    if blocks and modes:  # ρ^k wⁿ = q^(−ka) (2/q − 1)ⁿ, differentiated in q
        k = torch.arange(blocks, dtype=y.dtype).repeat_interleave(modes).unsqueeze(0)
        m = torch.arange(1, modes + 1, dtype=y.dtype).repeat(blocks).unsqueeze(0)
        w = 2 / q - 1
        dw, d2w = -2 / q**2, 4 / q**3
        p = -k * a
        qp, wm, wm1 = q**p, w**m, w ** (m - 1)
        wm2 = torch.where(m > 1, w ** (m - 2), torch.zeros_like(w))
        h = qp * wm
        h1 = p * qp / q * wm + qp * m * wm1 * dw
        h2 = (p * (p - 1) * qp / q**2 * wm + 2 * p * qp / q * m * wm1 * dw
              + qp * (m * (m - 1) * wm2 * dw**2 + m * wm1 * d2w))  # fmt: skip
        t, g1, g2 = torch.cat([t, h], 1), torch.cat([g1, h1], 1), torch.cat([g2, h2], 1)
    qb = q**b
    f = qb * t
    f1 = b * qb / q * t + qb * g1
    f2 = b * (b - 1) * qb / q**2 * t + 2 * b * qb / q * g1 + qb * g2
    dq = -1j / scale  # dq/dy
    return f, f1 * dq, f2 * dq**2


def series_fields(y: Tensor, a: Tensor, coeffs: Tensor, scale: float = 1.0, blocks: int = 0,
                  modes: int = 0) -> dict[str, Tensor]:  # fmt: skip
    """The named fields of B = Σ coeffs · terms (:func:`basis_terms`, the first
    ``len(coeffs) − blocks·modes`` of them Chebyshev terms) at y: f = Re B', df = Re B'',
    hf = Im B' (= H f), dhf = Im B'', F = Re B, U = Im B − Im B(0). ``coeffs`` (real) may
    be a matrix with one column per function: each field then has a column per function."""
    c = coeffs.to(torch.complex128 if coeffs.dtype == torch.float64 else torch.complex64)
    n = coeffs.shape[0] - blocks * modes
    b, db, d2b = basis_terms(y, a, n, scale, blocks, modes)
    b0 = basis_terms(torch.zeros(1, dtype=y.dtype), a, n, scale, blocks, modes)[0]
    big, slope, curve = b @ c, db @ c, d2b @ c
    return {"f": slope.real, "df": curve.real, "hf": slope.imag, "dhf": curve.imag,
            "F": big.real, "U": big.imag - (b0 @ c).imag}  # fmt: skip


class AnalyticSeries(nn.Module):
    """B(y) = q^b [Σ_k c_k T_k(2ρ − 1) + w-block] with exponent a = ``exponent(λ)`` (module
    docstring).

    Parameters: the coefficients ``coeffs`` (degree + 1 of them), the w-block's ``wcoeffs``
    (``blocks`` × ``modes``, k slowest) and λ (a parameter when ``trainable_lambda``, else a
    buffer). :meth:`fields` gives, at points y, the odd
    profile f = Re B', its derivatives, its Hilbert transform, F = Re B and
    U = Im B − Im B(0) (so U' = H f, U(0) = 0).
    """

    def __init__(
        self,
        degree: int,
        lam: float,
        exponent: Callable[[Tensor], Tensor],
        scale: float = 1.0,
        trainable_lambda: bool = True,
        dtype: torch.dtype = torch.float64,
        blocks: int = 0,
        modes: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(degree, int) and degree >= 0):
            raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.exponent, self.scale = exponent, float(scale)
        self.coeffs = nn.Parameter(torch.zeros(degree + 1, dtype=dtype))
        self.blocks, self.modes = int(blocks), int(modes)
        self.wcoeffs = nn.Parameter(torch.zeros(self.blocks * self.modes, dtype=dtype))
        lam_t = torch.tensor(float(lam), dtype=dtype)
        if trainable_lambda:
            self.lam = nn.Parameter(lam_t)
        else:
            self.register_buffer("lam", lam_t)

    @property
    def degree(self) -> int:
        return self.coeffs.numel() - 1

    def set_lambda(self, lam: float) -> None:
        with torch.no_grad():
            self.lam.fill_(float(lam))

    def fields(self, y: Tensor, coeffs: Tensor | None = None, lam: Tensor | None = None,
               wcoeffs: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
        """The named fields at y (shape (M,)): f, df (profile and its derivative), hf, dhf
        (H f and its derivative), F = Re B, U = Im B − Im B(0). ``coeffs``, ``lam`` and
        ``wcoeffs`` replace the module's own (for torch.func transforms)."""
        coeffs = self.coeffs if coeffs is None else coeffs
        wcoeffs = self.wcoeffs if wcoeffs is None else wcoeffs
        lam = self.lam if lam is None else lam
        return series_fields(y, self.exponent(lam), torch.cat([coeffs, wcoeffs]), self.scale,
                             self.blocks, self.modes)  # fmt: skip

    def grow(self, degree: int, blocks: int | None = None, modes: int | None = None) -> None:
        """Raise the degree (and the w-block's ``blocks`` × ``modes``), the new coefficients
        zero: the function is unchanged."""
        blocks = self.blocks if blocks is None else blocks
        modes = self.modes if modes is None else modes
        if degree < self.degree or blocks < self.blocks or modes < self.modes:
            raise ValueError(
                f"cannot shrink the series from ({self.degree}, {self.blocks}, {self.modes}) "
                f"to ({degree}, {blocks}, {modes})"
            )
        with torch.no_grad():
            extra = torch.zeros(degree - self.degree, dtype=self.coeffs.dtype)
            self.coeffs = nn.Parameter(torch.cat([self.coeffs.detach(), extra]))
            w = torch.zeros(blocks, modes, dtype=self.coeffs.dtype)
            w[: self.blocks, : self.modes] = self.wcoeffs.detach().reshape(self.blocks, self.modes)
            self.blocks, self.modes = blocks, modes
            self.wcoeffs = nn.Parameter(w.flatten())

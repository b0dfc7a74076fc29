"""An ansatz for the order-n self-similar Burgers profile: odd, normalised, far field
built in, with a Chebyshev series or a neural network as its free part.

    U(y) = y (1 + y²)^((β − 1)/2) · F(ζ),    F(ζ) = −1 + ζ (1 − ζ) · N(2ζ − 1),
    η = (1 + y²)^(−β) ∈ (0, 1],    ζ = η / (η + k (1 − η)),    β = 1/(2n + 3),

with N a Chebyshev series Σ_j c_j T_j of degree ``degree`` (a one-input
:class:`~pinnopt.models.chebykan.ChebyshevLayer`, coefficients zero at the start, so
the initial guess is U = −y (1 + y²)^((β−1)/2)), or any ``network`` of one input in
[−1, 1] that supports the forward jet: the PINN option of
:mod:`pinnopt.blowup.network_profile` (an MLP in the same compactified coordinate,
under the same far-field envelope). Why this form:

* y (1 + y²)^((β−1)/2) is odd, ≈ y near 0 and ≈ sign(y)|y|^β far away. β = 1/(2n+3)
  is the far-field growth of the order-n profile (U ~ −sign(y)|y|^(1/(2n+3))); for a
  rate λ the equation forces growth |y|^(λ/(1+λ)), so this choice ties the far
  field to λ_n — the issue's design, and the reason a wrong λ cannot be fitted;
* F depends on y² only, so U is odd whatever N is;
* η compactifies y ∈ [0, ∞) onto (0, 1]. With U = −|y|^β v the profile equation
  y = −U − U^(2n+3) becomes v^(2n+3) = 1 − η^(n+1) v (large y), so F is a power series
  in η there; near y = 0, η is analytic in y². F is smooth on the whole of [0, 1];
* the complex singularities of U (where 1 + (2n+3) U^(2n+2) = 0, |y| ≈ 0.7) sit at a
  distance of order β from η = 1, which would make a Chebyshev series in η converge
  slowly for large n. The Möbius map ζ with k = ``stretch`` (default 1/β = 2n + 3)
  moves them a distance of order one away (1 − ζ ≈ k (1 − η) near η = 1), and the
  series converges geometrically: degree 100 reaches residuals of 1e-13 or less for
  n ≤ 4 and 2e-11 for n = 5 (docs/blowup.md);
* F(ζ = 1) = −1 fixes U'(0) = −1 and F(0) = −1 the far-field coefficient to 1, the
  two normalisations of the exact profiles y = −U − U^(2n+3).

The module maps y (N, 1) to (N, 2): the profile U and λ itself (constant in y), so
that residuals read λ from the output and the objective's Jacobian includes ∂r/∂λ
when λ is trainable. λ is an ``nn.Parameter`` when trainable, a buffer otherwise
(:meth:`set_lambda` changes it either way). :meth:`forward_jet` gives U, U' and U''
by the chain rule in y written out (U is a function of one variable), so residuals
need no ``torch.func`` transform of the ansatz; under nested ``torch.func`` transforms
every elementwise op of the Chebyshev recurrence ran through a Python decomposition,
which made a Gauss–Newton step of a degree-24 series take most of a second.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pinnopt.blowup.burgers import burgers_exponent
from pinnopt.derivatives import Jet, elementwise_jet, jet, supports_jet
from pinnopt.models.chebykan import ChebyshevLayer


class BurgersAnsatz(nn.Module):
    def __init__(
        self,
        order: int,
        lam: float,
        degree: int = 100,
        stretch: float | None = None,
        trainable_lambda: bool = True,
        dtype: torch.dtype = torch.float64,
        network: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not lam > 0:
            raise ValueError(f"lambda must be > 0, got {lam}")
        self.order = order
        self.beta = 1.0 / burgers_exponent(order)
        self.stretch = 1.0 / self.beta if stretch is None else float(stretch)
        if not self.stretch > 0:
            raise ValueError(f"stretch must be > 0, got {stretch}")
        if network is None:
            network = ChebyshevLayer(1, 1, degree).to(dtype)
            with torch.no_grad():
                network.coeffs.zero_()
        elif not supports_jet(network):
            raise ValueError(
                f"network ({type(network).__name__}) must support the forward jet "
                "(pinnopt.derivatives.supports_jet)"
            )
        self.network = network
        lam_t = torch.tensor(float(lam), dtype=dtype)
        if trainable_lambda:
            self.lam = nn.Parameter(lam_t)
        else:
            self.register_buffer("lam", lam_t)

    @property
    def degree(self) -> int | None:
        """The degree of the Chebyshev series; None when the free part is another network."""
        return self.network.degree if isinstance(self.network, ChebyshevLayer) else None

    def set_lambda(self, lam: float) -> None:
        with torch.no_grad():
            self.lam.fill_(float(lam))

    def zeta(self, y: Tensor) -> Tensor:
        """The compactified coordinate ζ(y) ∈ (0, 1], ζ(0) = 1, ζ → 0 as |y| → ∞."""
        eta = (1 + y * y) ** (-self.beta)
        return eta / (eta + self.stretch * (1 - eta))

    def y_of_zeta(self, zeta: Tensor) -> Tensor:
        """The y ≥ 0 with ζ(y) = ``zeta`` (inverse of :meth:`zeta` on y ≥ 0)."""
        eta = self.stretch * zeta / (1 - zeta + self.stretch * zeta)
        return torch.sqrt(eta ** (-1 / self.beta) - 1)

    def profile(self, y: Tensor) -> Tensor:
        """U(y) for y of shape (N, 1), shape (N, 1)."""
        z = self.zeta(y)
        f = -1 + z * (1 - z) * self.network(2 * z - 1)
        return y * (1 + y * y) ** ((self.beta - 1) / 2) * f

    def forward(self, y: Tensor) -> Tensor:
        u = self.profile(y)
        return torch.cat([u, self.lam.expand_as(u)], dim=1)

    def profile_derivatives(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """U, dU/dy and d²U/dy² for y of shape (N, 1), by the chain rule through
        s = 1 + y², η = s^(−β), ζ = η / (k + (1 − k) η) and U = P(y) F(ζ), P = y s^a."""
        b, k, a = self.beta, self.stretch, (self.beta - 1) / 2
        s = 1 + y * y
        eta = s ** (-b)
        eta1 = -2 * b * y * eta / s
        eta2 = (4 * b * (b + 1) * y * y / s - 2 * b) * eta / s
        den = k + (1 - k) * eta
        zeta = eta / den
        g1, g2 = k / den**2, -2 * k * (1 - k) / den**3
        zeta1, zeta2 = g1 * eta1, g2 * eta1 * eta1 + g1 * eta2
        n = jet(self.network, 2 * zeta - 1, 2)
        nv, n1, n2 = n.value, 2 * n.grad[:, 0], 4 * n.hess_diag[:, 0]  # in ζ
        q, q1 = zeta * (1 - zeta), 1 - 2 * zeta
        f, f1, f2 = -1 + q * nv, q1 * nv + q * n1, -2 * nv + 2 * q1 * n1 + q * n2
        fy1, fy2 = f1 * zeta1, f2 * zeta1 * zeta1 + f1 * zeta2
        sa = s**a
        p, p1 = y * sa, sa * (1 + 2 * a * y * y / s)
        p2 = (6 * a + 4 * a * (a - 1) * y * y / s) * y * sa / s
        return p * f, p1 * f + p * fy1, p2 * f + 2 * p1 * fy1 + p * fy2

    def forward_jet(self, z: Jet) -> Jet:
        u, u1, u2 = self.profile_derivatives(z.value)
        u_jet = elementwise_jet(z, u, u1, u2)
        lam = self.lam.expand_as(u)  # constant in y: its derivatives are zero

        def with_lambda(part: Tensor | None, lam_part: Tensor) -> Tensor | None:
            return None if part is None else torch.cat([part, lam_part], dim=-1)

        value, *derivatives = u_jet.parts
        return Jet(
            with_lambda(value, lam),
            *(with_lambda(t, torch.zeros_like(t)) if t is not None else None for t in derivatives),
        )

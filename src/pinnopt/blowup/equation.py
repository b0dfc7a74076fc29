"""A self-similar profile equation as data: what the solvers of pinnopt.blowup need to know.

A blow-up of the form w(x, t) = (1 − t)^κ W(y), y = x / (1 − t)^(1+λ), turns an evolution
equation into a profile equation E(W, λ)(y) = 0 for the profile W and its rate λ. Written
in self-similar time s = −log(1 − t), the evolution reads

    ∂_s W = −E(W, λ),

the convention of this package: the profile is a steady state, and its stability is the
spectrum of −DE, the linearisation around it (:mod:`pinnopt.blowup.stability`).

An equation says:

* ``residual(fields, y, lam)``: E at the points y, from the named fields of the ansatz
  (``f`` the profile, ``df`` its derivative; for non-local equations ``hf`` = H f,
  ``dhf``, ``F`` an antiderivative and ``U`` = H F − (H F)(0), see
  :mod:`pinnopt.blowup.analytic_series`);
* ``decay(lam)``: the far-field exponent a, f ~ |y|^(−a) (negative for a growing profile);
  the residual is divided by (1 + y²)^(−a/2) so that its rows are relative in the far
  field;
* the symmetry class (``odd``) and the normalisation f'(0) = ``slope`` that fixes the
  dilation y → μ y every such equation has;
* optionally ``lambda_rule(fields at 0)``: λ read from the profile at the origin, where the
  equation's lowest-order balance fixes it; the solvers use it as one more residual row;
* optionally ``first_integral(fields, y, lam)``: a quantity whose y-derivative is E, so it
  is constant along an exact profile — a check that does not use E itself;
* ``ansatz``: ``"analytic"`` (the Hilbert-exact series, any equation) or ``"chebyshev"``
  (the compactified Chebyshev ansatz of Burgers, :mod:`pinnopt.blowup.profile`);
* ``max_order`` and a default ``bracket`` of λ for the search by sign changes;
* optionally ``branch(order, bracket, …)``: a solver of the equation's own that follows its
  fixed-λ solutions across the bracket and returns the order-n profile
  (:mod:`pinnopt.blowup.ccf_branch` for CCF; ``--lambda-mode branch``).

Add an equation with :func:`register_equation`; ``examples/blowup_custom_equation.py``
does so in a few lines. :func:`pinnopt.blowup.catalog.get_equation` finds one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

Fields = dict[str, Tensor]

ANSATZES = ("analytic", "chebyshev")


@dataclass(frozen=True)
class ProfileEquation:
    name: str
    description: str
    residual: Callable[[Fields, Tensor, Tensor], Tensor]
    decay: Callable[[Tensor], Tensor]
    slope: float = -1.0
    symmetry: str = "odd"
    lambda_rule: Callable[[Fields], Tensor] | None = None
    first_integral: Callable[[Fields, Tensor, Tensor], Tensor] | None = None
    ansatz: str = "analytic"
    max_order: int | None = None
    bracket: tuple[float, float] = (0.3, 1.5)
    branch: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.ansatz not in ANSATZES:
            raise ValueError(f"ansatz must be one of {', '.join(ANSATZES)}, got {self.ansatz!r}")
        if self.symmetry != "odd":
            raise ValueError(f"symmetry: only 'odd' profiles are supported, got {self.symmetry!r}")
        lo, hi = self.bracket
        if not 0 < lo < hi:
            raise ValueError(f"bracket must be 0 < lo < hi, got {self.bracket}")

    def weight(self, y: Tensor, lam: Tensor) -> Tensor:
        """(1 + y²)^(−a/2): the far-field size of the profile, which scales the residual."""
        return (1 + y * y) ** (-self.decay(lam) / 2)

    def check_order(self, order: int) -> None:
        """ValueError unless ``order`` is an integer in 0 … max_order."""
        if not (isinstance(order, int) and not isinstance(order, bool) and order >= 0):
            raise ValueError(f"order must be an integer >= 0, got {order!r}")
        if self.max_order is not None and order > self.max_order:
            raise ValueError(
                f"order {order} is beyond what {self.name} supports (0 … {self.max_order})"
            )


EQUATIONS: dict[str, ProfileEquation] = {}


def register_equation(equation: ProfileEquation, replace: bool = False) -> ProfileEquation:
    """Make ``equation`` known by its name (to ``get_equation`` and ``pinnopt blowup``)."""
    if equation.name in EQUATIONS and not replace:
        raise ValueError(f"an equation named {equation.name!r} is already registered")
    EQUATIONS[equation.name] = equation
    return equation

"""The Córdoba–Córdoba–Fontelos (CCF) equation and its self-similar profile equation.

In vorticity form (the generalised Constantin–Lax–Majda family ω_t + a u ω_x = u_x ω,
u_x = Hω, at a = −1; Okamoto, Sakajo & Wunsch, *Nonlinearity* 21, 2008; Córdoba,
Córdoba & Fontelos, *Ann. of Math.* 162, 2005)

    ω_t − u ω_x = ω u_x,     u_x = H ω,     H f(y) = (1/π) p.v. ∫ f(s) / (y − s) ds.

With ω = (1 − t)^(−1) Ω(y), y = x / (1 − t)^(1+λ), u = (1 − t)^λ U(y), the profile
equation is

    E = Ω + ((1 + λ) y − U) Ω' − Ω U' = 0,     U' = H Ω,   U(0) = 0,

for an odd Ω. Facts the solvers use (each one line of algebra):

* far field: Ω + (1 + λ) y Ω' = 0 at leading order, so Ω ~ |y|^(−a), a = 1/(1 + λ);
* λ at the origin: the O(y) term of E is Ω'(0) (2 + λ − 2 U'(0)), so
  λ = 2 H Ω(0) − 2 (the "λ rule");
* first integral: with Θ' = Ω and U = H Θ − (H Θ)(0), the quantity
  I = −λ Θ + ((1 + λ) y − U) Θ' has I' = E, so I is constant along a profile; it is the
  self-similar form of the transport equation θ_t − (Hθ) θ_x = 0 that ω = θ_x comes
  from (Θ = F of the analytic series);
* dilation Ω(y) → Ω(μ y) maps profiles to profiles: fixed by Ω'(0) = −1;
* ∂_s Ω = −E in self-similar time s = −log(1 − t).

Nothing here holds a value of λ: the profiles are found from a bracket, by sign changes
of the λ rule with the analytic series
(:func:`pinnopt.blowup.series_profile.find_series_profile`) or along the branch of
fixed-λ solutions in transport form (:mod:`pinnopt.blowup.ccf_branch`), which also finds
the unstable orders.
"""

from __future__ import annotations

from torch import Tensor

from pinnopt.blowup.ccf_branch import find_branch_profile
from pinnopt.blowup.equation import Fields, ProfileEquation, register_equation


def ccf_residual(fields: Fields, y: Tensor, lam: Tensor) -> Tensor:
    """E = Ω + ((1 + λ) y − U) Ω' − Ω H Ω."""
    f, df, hf, u = fields["f"], fields["df"], fields["hf"], fields["U"]
    return f + ((1 + lam) * y - u) * df - f * hf


def ccf_decay(lam: Tensor) -> Tensor:
    """a = 1/(1 + λ): Ω ~ |y|^(−a) far away."""
    return 1 / (1 + lam)


def ccf_lambda_rule(at_origin: Fields) -> Tensor:
    """λ = 2 H Ω(0) − 2, the O(y) balance of E at y = 0."""
    return 2 * at_origin["hf"] - 2


def ccf_first_integral(fields: Fields, y: Tensor, lam: Tensor) -> Tensor:
    """I = −λ Θ + ((1 + λ) y − U) Ω, whose y-derivative is E (Θ = F, Θ' = Ω)."""
    return -lam * fields["F"] + ((1 + lam) * y - fields["U"]) * fields["f"]


CCF = register_equation(
    ProfileEquation(
        name="ccf",
        description="Córdoba–Córdoba–Fontelos: Ω + ((1+λ)y − U)Ω' − Ω HΩ = 0, U' = HΩ",
        residual=ccf_residual,
        decay=ccf_decay,
        slope=-1.0,
        lambda_rule=ccf_lambda_rule,
        first_integral=ccf_first_integral,
        ansatz="analytic",
        max_order=2,
        bracket=(0.3, 1.5),
        branch=find_branch_profile,
    )
)

"""Step control for least-squares optimizers on L(θ) = ½‖r(θ)‖², shared by ``gn`` and ``kfac``.

A curvature optimizer proposes a step δ from a local quadratic model m(δ) of L (the
Gauss–Newton model ½‖r + Jδ‖² plus damping). Whether the step is taken, and how the
damping μ changes, is decided here, the same way for every such optimizer:

Gain ratio. ρ = (L(θ) − L(θ + δ)) / (L(θ) − m(δ)), the actual over the predicted
decrease (:func:`gain_ratio`); ρ = −∞ when the model predicts no decrease.

Damping after an accepted step (``rule`` of :class:`LevenbergMarquardt`):

* ``"nielsen"``: μ ← μ · max(1/3, 1 − (2ρ − 1)³), ν ← 2 (Nielsen 1999; Madsen,
  Nielsen & Tingleff, "Methods for non-linear least squares problems", 2004, §3.2),
  used by :class:`pinnopt.optim.gauss_newton.GaussNewton`;
* ``"marquardt"``: μ ← μω if ρ > 3/4, μ/ω if ρ < 1/4, unchanged otherwise, with
  0 < ω < 1 (the Levenberg–Marquardt rule as stated by Martens & Grosse, ICML 2015,
  §6.5; K-FAC's default ω is 2/3), used by :class:`pinnopt.optim.kfac.KFAC`.

Damping after a rejected step (both rules): the parameters go back to the start point,
μ ← μν and ν ← 2ν, so that every rejection in a row grows μ faster (Nielsen 1999).
μ is kept in [damping_min, damping_max] (the ``"nielsen"`` acceptance bounds it below
only, as it always has).

Step-size scan. :func:`scan_step_sizes` tries θ + α d for α in a grid (for example
lr · 2⁻ᵏ, the search of Müller & Zeinhofer, ICML 2023) and returns the best.

Matrix-free Jacobian. :class:`MatrixFreeJacobian` gives J v and Jᵀ u for
J = ∂r/∂θ from the autograd graph of r, without forming J.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

RULES = ("nielsen", "marquardt")


def gain_ratio(actual: float, predicted: float) -> float:
    """ρ = actual / predicted decrease of the loss; −∞ unless ``predicted > 0``."""
    return actual / predicted if predicted > 0 else -math.inf


@dataclass(frozen=True)
class LevenbergMarquardt:
    """The Levenberg–Marquardt damping rule (see the module docstring for the math).

    Works on an optimizer's state record with the keys ``damping`` (μ), ``nu`` (ν, 2
    after an accepted step) and ``rejected`` (count of rejected trial steps), so that
    the state round-trips through ``state_dict`` as before.

    Args:
        damping_min, damping_max: bounds on μ.
        rule: ``"nielsen"`` or ``"marquardt"``: how μ changes after an accepted step.
        omega: ω of the ``"marquardt"`` rule, 0 < ω < 1.
    """

    damping_min: float
    damping_max: float
    rule: str = "nielsen"
    omega: float = 2 / 3

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"Invalid rule: {self.rule!r}; allowed: {', '.join(RULES)}")

    @staticmethod
    def init_state(damping: float) -> dict[str, Any]:
        """The entries a fresh state record needs: μ = ``damping``, ν = 2, no rejections."""
        return {"damping": damping, "nu": 2.0, "rejected": 0}

    def accept(self, state: MutableMapping[str, Any], rho: float) -> float:
        """μ after an accepted step with gain ratio ρ (stored in ``state``); ν ← 2."""
        mu = state["damping"]
        if self.rule == "nielsen":
            mu = max(self.damping_min, mu * max(1 / 3, 1 - (2 * rho - 1) ** 3))
        else:
            if rho > 0.75:
                mu = mu * self.omega
            elif rho < 0.25:
                mu = mu / self.omega
            mu = min(self.damping_max, max(self.damping_min, mu))
        state["damping"], state["nu"] = mu, 2.0
        return mu

    def reject(self, state: MutableMapping[str, Any]) -> float:
        """μ ← μν (clamped), ν ← 2ν, one more rejection; returns the unclamped μν."""
        proposed = state["damping"] * state["nu"]
        state["nu"] *= 2.0
        state["damping"] = min(self.damping_max, max(self.damping_min, proposed))
        state["rejected"] += 1
        return proposed


def set_params(
    params: Sequence[Tensor],
    start: Sequence[Tensor],
    step: Tensor | Sequence[Tensor] | None = None,
    alpha: float = 0.0,
) -> None:
    """θ ← start + α · step, in place; ``step`` flat (in parameter order) or one per parameter.

    With no step or α = 0 the parameters are restored to ``start`` exactly.
    """
    if step is None or alpha == 0.0:
        for p, p0 in zip(params, start):
            p.copy_(p0)
        return
    for p, p0, d in zip(params, start, _split(step, params)):
        torch.add(p0, d, alpha=alpha, out=p)


def _split(step: Tensor | Sequence[Tensor], params: Sequence[Tensor]) -> Iterable[Tensor]:
    if not isinstance(step, Tensor):
        return step
    pieces, offset = [], 0
    for p in params:
        n = p.numel()
        pieces.append(step[offset : offset + n].view_as(p))
        offset += n
    return pieces


def scan_step_sizes(
    loss_at: Callable[[float], float],
    alphas: Iterable[float],
    baseline: float = math.inf,
    stop_past_best: bool = False,
) -> tuple[float, float]:
    """(loss, α) of the lowest ``loss_at(α)`` over ``alphas``, or (baseline, 0) if none is lower.

    ``loss_at`` moves the parameters to θ + α d and returns the loss there; afterwards
    the parameters are wherever the last call left them. With ``stop_past_best`` the
    scan ends at the first α that does not improve on a step already found.
    """
    best = (baseline, 0.0)
    for alpha in alphas:
        value = loss_at(alpha)
        if value < best[0]:
            best = (value, alpha)
        elif stop_past_best and best[1] > 0:
            break
    return best


def flatten(tensors: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """One flat vector of per-parameter tensors (zeros where a tensor is None)."""
    return torch.cat(
        [(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, params)]
    )


class MatrixFreeJacobian:
    """Products with J = ∂r/∂θ from the autograd graph of r; J is never formed.

    Jᵀu is a backward pass through r's graph. Jv uses the double-backward identity
    Jv = ∂/∂u ⟨Jᵀu, v⟩: Jᵀu is built once with ``create_graph`` for a dummy u, and
    each product is one backward pass through that (linear in u) graph. Vectors over
    θ are flat, in the order of ``params``.
    """

    def __init__(self, r: Tensor, params: Sequence[Tensor]) -> None:
        self.graph, self.r, self.params = r, r.detach(), list(params)
        with torch.enable_grad():
            self.u = torch.zeros_like(r, requires_grad=True)
            self.jtu = torch.autograd.grad(
                r, self.params, self.u, create_graph=True, allow_unused=True
            )

    def gradient(self) -> Tensor:
        """∇(½‖r‖²) = Jᵀr."""
        return self.jt(self.r)

    def jt(self, u: Tensor) -> Tensor:
        """Jᵀu, flat."""
        with torch.enable_grad():
            g = torch.autograd.grad(
                self.graph, self.params, u, retain_graph=True, allow_unused=True
            )
        return flatten(g, self.params)

    def j(self, v: Tensor) -> Tensor:
        """Jv for a flat v, shaped like r."""
        pieces, offset, outs = [], 0, []
        for p, t in zip(self.params, self.jtu):
            n = p.numel()
            if t is not None and t.requires_grad:
                outs.append(t)
                pieces.append(v[offset : offset + n].view_as(p))
            offset += n
        with torch.enable_grad():
            (jv,) = torch.autograd.grad(outs, self.u, pieces, retain_graph=True)
        return jv

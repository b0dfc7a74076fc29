"""The one contract: a PINN is a least-squares problem.

For residual terms k with weights w_k evaluated at N_k points,

    r(θ) = [ sqrt(w_k / N_k) · r_k(x_i; θ) ]_k,i        loss(θ) = ½ ‖r(θ)‖²,

so that loss = Σ_k ½ w_k · mean_i r_k(x_i; θ)². This module is the single place
where residuals become a loss: first-order optimizers see :meth:`Objective.loss`,
curvature optimizers see :meth:`Objective.residual_vector`, loss weighting
changes ``weights`` and adaptive sampling changes ``points``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pinnopt.derivatives import jet
from pinnopt.problems.base import Problem


class Objective:
    """Weighted least-squares objective of a problem's residual terms for one model.

    ``points`` maps term names to collocation points (already in the model's dtype
    and device); ``weights`` overrides the terms' default weights w_k.
    """

    def __init__(
        self,
        problem: Problem,
        model: nn.Module,
        points: dict[str, Tensor],
        weights: dict[str, float] | None = None,
    ) -> None:
        names = [t.name for t in problem.terms]
        missing = set(names) - set(points)
        if missing:
            raise ValueError(f"points missing for term(s) {sorted(missing)}")
        weights = dict(weights or {})
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"unknown term(s) {sorted(unknown)} in weights; allowed: {names}")
        self.problem = problem
        self.model = model
        self.points = points
        self.weights = {t.name: float(weights.get(t.name, t.weight)) for t in problem.terms}
        for name, w in self.weights.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of term {name!r} must be finite and >= 0, got {w}")

    def residuals(self) -> dict[str, Tensor]:
        """Unweighted residuals r_k at every term's points, each of shape (N_k,)."""
        out = {}
        for term in self.problem.terms:
            x = self.points[term.name]
            out[term.name] = term.residual(jet(self.model, x, term.order, term.trace), x)
        return out

    def weighted(self, residuals: dict[str, Tensor]) -> dict[str, Tensor]:
        """sqrt(w_k / N_k) · r_k for every term."""
        return {k: r * math.sqrt(self.weights[k] / r.numel()) for k, r in residuals.items()}

    def residual_vector(self) -> Tensor:
        """r(θ): all weighted residuals concatenated, shape (Σ N_k,)."""
        return torch.cat(list(self.weighted(self.residuals()).values()))

    def loss_terms(self) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, per-term losses ½ w_k mean r_k²), with loss = ½ ‖r(θ)‖² their sum."""
        parts = {k: 0.5 * r.square().sum() for k, r in self.weighted(self.residuals()).items()}
        return torch.stack(list(parts.values())).sum(), parts

    def loss(self) -> Tensor:
        """½ ‖r(θ)‖²."""
        return self.loss_terms()[0]

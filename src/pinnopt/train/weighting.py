"""Loss balancing: set the term weights w_k of the objective during training.

Every ``period`` steps a balancer computes new weights and hands them to
:meth:`pinnopt.objective.Objective.set_weights`, which tells the optimizer in charge
(the objective-change seam), so curvature optimizers see the weights too: they
scale rows of the residual vector. Methods:

    fixed      the weights never change
    grad_norm  learning-rate annealing (Wang, Teng & Perdikaris, SIAM J. Sci. Comput.
               2021, in the form of Wang et al. 2023, "An expert's guide to training
               PINNs"): with L_k = ½ mean r_k² the unweighted loss of term k,

                   ŵ_k = Σ_j ‖∇_θ L_j‖ / ‖∇_θ L_k‖,     w_k ← α w_k + (1 − α) ŵ_k,

               so every weighted term pulls on θ with the same gradient norm.

Each update leaves ``weight_<term>`` in the next history row (``trainer.log_values``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pinnopt.objective import Objective

METHODS = ("fixed", "grad_norm")


@dataclass
class WeightingSettings:
    """``[weighting]``: the method, the steps between updates and the averaging α."""

    method: str = "fixed"
    period: int = 100
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: unknown {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.period < 1:
            raise ValueError(f"period must be >= 1 step, got {self.period}")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha < 1):
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")


def gradient_norms(objective: Objective) -> dict[str, float]:
    """‖∇_θ L_k‖ for every term, L_k = ½ mean r_k² (unweighted)."""
    params = [p for p in objective.model.parameters() if p.requires_grad]
    norms = {}
    with torch.enable_grad():
        for name, r in objective.residuals().items():
            loss = 0.5 * r.square().mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms[name] = math.sqrt(sum(float(g.square().sum()) for g in grads if g is not None))
    return norms


def grad_norm_weights(norms: dict[str, float]) -> dict[str, float]:
    """ŵ_k = Σ_j ‖∇L_j‖ / ‖∇L_k‖ (a term with a zero gradient keeps weight 1)."""
    total = sum(norms.values())
    return {k: (total / n if n > 0 else 1.0) for k, n in norms.items()}


class LossBalancer:
    """A trainer callback applying :class:`WeightingSettings` to an objective."""

    def __init__(self, objective: Objective, settings: WeightingSettings) -> None:
        self.objective = objective
        self.settings = settings

    def __call__(self, state) -> bool:
        s = self.settings
        index = state.step // s.period
        if s.method != "fixed" and index > (state.step - state.done) // s.period:
            state.trainer.log_values.update(self.update())
        return False

    def update(self) -> dict[str, float]:
        """New weights from the current θ; returns them as history columns."""
        a = self.settings.alpha
        target = grad_norm_weights(gradient_norms(self.objective))
        old = self.objective.weights
        new = {k: a * old[k] + (1 - a) * w for k, w in target.items()}
        self.objective.set_weights(new)
        return {f"weight_{k}": w for k, w in new.items()}

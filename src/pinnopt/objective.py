"""The one contract: a PINN is a least-squares problem.

For residual terms k with weights w_k evaluated at N_k points,

    r(θ) = [ sqrt(w_k / N_k) · r_k(x_i; θ) ]_k,i        loss(θ) = ½ ‖r(θ)‖²,

so that loss = Σ_k ½ w_k · mean_i r_k(x_i; θ)². This module is the single place
where residuals become a loss: first-order optimizers see :meth:`Objective.loss`,
curvature optimizers see :meth:`Objective.residual_vector` and its Jacobian
(:meth:`Objective.jacobian`, or both through a :class:`ResidualClosure`), loss
weighting changes ``weights`` and adaptive sampling changes ``points``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from pinnopt.problems.base import Problem, Term

# per-point Jacobian rows are built in chunks of at most this many entries (points × params)
JACOBIAN_CHUNK_ENTRIES = 2**24


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
        """Unweighted residuals r_k at every term's points, each of shape (N_k,).

        A residual of any other shape raises ValueError naming its term.
        """
        out = {}
        for term in self.problem.terms:
            x = self.points[term.name]
            out[term.name] = term.evaluate(self.model, x)
        return out

    def weighted(self, residuals: dict[str, Tensor]) -> dict[str, Tensor]:
        """sqrt(w_k / N_k) · r_k for every term."""
        return {k: r * math.sqrt(self.weights[k] / r.numel()) for k, r in residuals.items()}

    def residual_vector(self) -> Tensor:
        """r(θ): all weighted residuals concatenated, shape (Σ N_k,)."""
        return torch.cat(list(self.weighted(self.residuals()).values()))

    def split(self, r: Tensor) -> dict[str, Tensor]:
        """The slices of a residual vector (or of Jacobian rows) that belong to each term."""
        sizes = [self.points[t.name].shape[0] for t in self.problem.terms]
        return dict(zip(self.weights, torch.split(r, sizes)))

    def term_losses(self, r: Tensor) -> dict[str, Tensor]:
        """Per-term losses ½ ‖r_k‖² of a residual vector r."""
        return {k: 0.5 * rk.square().sum() for k, rk in self.split(r).items()}

    def loss_terms(self) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, per-term losses ½ w_k mean r_k²), with loss = ½ ‖r(θ)‖² their sum."""
        parts = {k: 0.5 * r.square().sum() for k, r in self.weighted(self.residuals()).items()}
        return torch.stack(list(parts.values())).sum(), parts

    def loss(self) -> Tensor:
        """½ ‖r(θ)‖²."""
        return self.loss_terms()[0]

    @torch.no_grad()
    def jacobian(self, params: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(r(θ), J) with J = ∂r/∂params of shape (Σ N_k, Σ numel), columns in ``params`` order.

        ``params`` defaults to the model's trainable parameters. Residual r_k(x_i; θ)
        depends on θ through the network at x_i alone, so row i of J is the gradient
        of one point's residual: ``torch.func`` vmaps that gradient over the points,
        which costs a few batched forward passes, not one backward pass per row.
        """
        params = self._trainable() if params is None else list(params)
        names = self._parameter_names(params)
        values = {name: p.detach() for name, p in zip(names, params)}
        chunk = max(1, JACOBIAN_CHUNK_ENTRIES // max(1, sum(p.numel() for p in params)))
        r_parts, j_parts = [], []
        for term in self.problem.terms:
            x = self.points[term.name]
            scale = math.sqrt(self.weights[term.name] / x.shape[0])
            module = _PointResidual(self.model, term)

            def one_point(p: dict[str, Tensor], xi: Tensor, module=module) -> Tensor:
                r = functional_call(module, p, (xi.unsqueeze(0),))[0]
                return r, r

            grads, r = vmap(jacrev(one_point, has_aux=True), (None, 0), chunk_size=chunk)(values, x)
            r_parts.append(r * scale)
            j_parts.append(torch.cat([grads[n].reshape(x.shape[0], -1) for n in names], 1) * scale)
        return torch.cat(r_parts), torch.cat(j_parts)

    def _trainable(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _parameter_names(self, params: Sequence[Tensor]) -> list[str]:
        """Names (as seen from :class:`_PointResidual`) of ``params``, which must be the model's."""
        by_id = {id(p): f"model.{n}" for n, p in self.model.named_parameters()}
        missing = [i for i, p in enumerate(params) if id(p) not in by_id]
        if missing:
            raise ValueError(f"parameters {missing} are not parameters of the objective's model")
        return [by_id[id(p)] for p in params]


class _PointResidual(nn.Module):
    """The model as a function of (parameters, points) → unweighted residual of one term."""

    def __init__(self, model: nn.Module, term: Term) -> None:
        super().__init__()
        self.model = model
        self.term = term

    def forward(self, x: Tensor) -> Tensor:
        return self.term.evaluate(self.model, x, " (one point at a time, for the Jacobian)")


class ResidualClosure:
    """The closure a least-squares optimizer takes: ``closure()`` returns r(θ) with its graph.

    ``closure.jacobian(params)`` returns (r(θ), ∂r/∂params) through
    :meth:`Objective.jacobian`; optimizers that need the whole Jacobian use it when
    present and fall back to autograd on ``closure()`` otherwise. ``observe``, when
    given, sees the (detached) residual vector of every evaluation.
    """

    def __init__(self, objective: Objective, observe: Callable[[Tensor], None] | None = None):
        self.objective = objective
        self.observe = observe

    def __call__(self) -> Tensor:
        r = self.objective.residual_vector()
        if self.observe is not None:
            self.observe(r.detach())
        return r

    def jacobian(self, params: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        r, J = self.objective.jacobian(params)
        if self.observe is not None:
            self.observe(r)
        return r, J

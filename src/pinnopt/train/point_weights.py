"""Per-point loss weights: multipliers m_k,i on the collocation points of some terms.

The objective's row of point i of term k is sqrt(w_k / N_k) · m_k,i · r_k(x_i), so the
loss is L = Σ_k Σ_i ½ (w_k / N_k) m_k,i² r_k(x_i)² (:meth:`Objective.set_point_weights`).
Both methods here keep one multiplier λ_i ≥ 0 per point and set m_i = λ_i; every update
evaluates the term's residual r_i at the current θ (no graph, :meth:`Objective.residuals_at`):

    sa   self-adaptive weights (McClenny & Braga-Neto, "Self-adaptive physics-informed
         neural networks", J. Comput. Phys. 474, 2023): λ is trained by gradient *ascent*
         on the loss, so points with a large residual get a large weight. With our rows,

             ∂L/∂λ_i = (w_k / N_k) · λ_i · r_k(x_i)²,    λ_i ← λ_i + η · ∂L/∂λ_i,

         i.e. the paper's mask m(λ) = λ² on the squared residual. λ starts at 1 (the
         unweighted objective) and never decreases.
    rba  residual-based attention (Anagnostopoulos, Toscano, Stergiopulos & Karniadakis,
         "Residual-based attention in physics-informed neural networks", CMAME 421, 2024):

             λ_i ← γ λ_i + η* · |r_i| / max_j |r_j|,

         a decaying running sum of normalised residuals, bounded by η* / (1 − γ). λ starts
         at 0, as in the authors' code (``rsum = 0``, initialisation mode 1 of their
         Algorithm 1), so the first update gives λ = η* |r| / max|r|.

The multipliers live in the objective (and so in the trainer's checkpoints), not here:
an update reads λ from ``objective.point_weights``. A term with none there, or with
multipliers of another length, starts again from λ₀: that happens when adaptive sampling
replaced its points (:meth:`Objective.set_points` drops their point weights, which
belonged to the old points). Until the next update such a term is unweighted (m = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pinnopt.objective import Objective
from pinnopt.train.distributed import Sync
from pinnopt.train.sampling import _pde

POINT_METHODS = ("sa", "rba")
# λ₀ of each method (see the module docstring)
INITIAL = {"sa": 1.0, "rba": 0.0}


def sa_step(lam: Tensor, r: Tensor, scale2: float, lr: float) -> Tensor:
    """One ascent step λ + η (w_k / N_k) λ r² (``scale2`` = w_k / N_k)."""
    return lam + lr * scale2 * lam * r.square()


def rba_step(lam: Tensor, r: Tensor, gamma: float, eta: float, top: Tensor | None = None
             ) -> Tensor:  # fmt: skip
    """γ λ + η* |r| / max|r| (just γ λ where r is zero everywhere); ``top``: max|r| over all
    the points when ``r`` is one process's share of them."""
    a = r.abs()
    top = a.max() if top is None else top
    if not bool(top > 0):
        return gamma * lam
    return gamma * lam + eta * a / top


def point_terms(objective: Objective, names: tuple[str, ...]) -> list[str]:
    """The terms to weight: ``names`` (checked), or else the PDE residual terms (those
    of the highest derivative order without observations, as adaptive sampling picks)."""
    problem = objective.problem
    allowed = [t.name for t in problem.terms]
    for name in names:
        if name not in allowed:
            raise ValueError(f"terms: unknown term {name!r}; allowed: {', '.join(allowed)}")
    return list(names) if names else [t.name for t in _pde(problem)]


class PointWeighter:
    """Updates the point multipliers of ``terms`` by ``method`` (``sa`` or ``rba``).

    ``lr`` is η (sa) or η* (rba); ``gamma`` is rba's decay.
    """

    def __init__(
        self, objective: Objective, method: str, terms: list[str], lr: float, gamma: float
    ) -> None:
        if method not in POINT_METHODS:
            raise ValueError(f"method: unknown {method!r}; allowed: {', '.join(POINT_METHODS)}")
        self.objective = objective
        self.method = method
        self.terms = terms
        self.lr = lr
        self.gamma = gamma

    def current(self, name: str, n: int, like: Tensor) -> Tensor:
        """λ of term ``name`` (``n`` points): the objective's multipliers, or λ₀ when it
        has none of that length (new points: start again)."""
        m = self.objective.point_weights.get(name)
        if m is None or m.shape != (n,):
            return torch.full((n,), INITIAL[self.method], dtype=like.dtype, device=like.device)
        return m.to(dtype=like.dtype, device=like.device)

    def update(self) -> dict[str, float]:
        """New multipliers for every weighted term; their mean and max as history columns.

        On several processes each updates the multipliers of its share of the points: sa
        needs nothing more (its N_k is the global count), rba's max|r| and the statistics
        are taken over all the points."""
        objective, sync = self.objective, Sync()
        new, stats = {}, {}
        for name in self.terms:
            r = objective.residuals_at(objective.points[name], name)
            n = r.numel()
            lam = self.current(name, n, r)
            if self.method == "sa":
                scale2 = objective.weights[name] / objective.counts.get(name, n)
                lam = sa_step(lam, r, scale2, self.lr)
            else:
                lam = rba_step(lam, r, self.gamma, self.lr, sync.maximum(r.abs().max()))
            if sync.agree([not bool(torch.isfinite(lam).all())])[0]:
                return {}  # a non-finite residual: keep the old multipliers
            new[name] = lam
            total = sync.sum(torch.stack([lam.sum(), lam.new_tensor(float(n))]))
            stats[f"pw_mean_{name}"] = float(total[0] / total[1])
            stats[f"pw_max_{name}"] = float(sync.maximum(lam.max()))
        objective.set_point_weights(new)
        return stats

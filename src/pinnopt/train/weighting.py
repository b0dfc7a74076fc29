"""Loss balancing: set the term weights w_k (or point weights m_k,i) during training.

Every ``period`` steps a balancer computes new weights and hands them to
:meth:`pinnopt.objective.Objective.set_weights` (or ``set_point_weights``), which tells
the optimizer in charge (the objective-change seam), so curvature optimizers see the
weights too: they scale rows of the residual vector. L_k = ½ mean_i r_k(x_i)² is the
unweighted loss of term k. Methods:

    fixed      the weights never change
    grad_norm  learning-rate annealing (Wang, Teng & Perdikaris, SIAM J. Sci. Comput.
               2021, in the form of Wang et al. 2023, "An expert's guide to training
               PINNs"):

                   ŵ_k = Σ_j ‖∇_θ L_j‖ / ‖∇_θ L_k‖,     w_k ← α w_k + (1 − α) ŵ_k,

               so every weighted term pulls on θ with the same gradient norm.
    ntk        neural-tangent-kernel weights (Wang, Yu & Perdikaris, "When and why PINNs
               fail to train: a neural tangent kernel perspective", J. Comput. Phys. 449,
               2022), with the trace taken as a mean over points as in Wang et al. 2023:

                   t_k = tr(K_kk) / N_k = mean_i ‖∇_θ r_k(x_i)‖²,
                   ŵ_k = Σ_j t_j / t_k,                 w_k ← α w_k + (1 − α) ŵ_k.

               (The 2022 paper uses the sums tr(K_kk); the mean makes ŵ independent
               of how many points each term has, which its 1/N_k rows already handle.)
    relobralo  relative loss balancing with random lookback (Bischof & Kraus,
               "Multi-objective loss balancing for physics-informed deep learning",
               CMAME 439, 2025; arXiv:2110.09813). With K terms, t the current update,
               t − 1 the previous one and 0 the start of training,

                   λ̂_k(t, t') = K · softmax_k( L_k(t) / (T · L_k(t')) ),
                   w_k(t) = α (ρ w_k(t − 1) + (1 − ρ) λ̂_k(t, 0)) + (1 − α) λ̂_k(t, t − 1),

               ρ ~ Bernoulli(E[ρ]) drawn afresh at every update ("random lookback").
    sa, rba    per-point weights (:mod:`pinnopt.train.point_weights`): self-adaptive
               weights trained by gradient ascent, and residual-based attention.

The term methods reweight every term; sa and rba weight the points of ``terms`` (default:
the PDE residual terms). Each update leaves ``weight_<term>`` (term methods) or
``pw_mean_<term>`` and ``pw_max_<term>`` (per-point methods) in the next history row
(``trainer.log_values``). An update whose new weights are not finite (a diverging step)
is skipped; the trainer then stops or recovers on the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pinnopt.objective import Objective
from pinnopt.train.distributed import Sync
from pinnopt.train.point_weights import POINT_METHODS, PointWeighter, point_terms

TERM_METHODS = ("grad_norm", "ntk", "relobralo")
METHODS = ("fixed", *TERM_METHODS, *POINT_METHODS)
# defaults that differ by method (None in the settings picks these)
PERIOD = {"sa": 1, "rba": 1}  # both papers update every step; others: 100
ALPHA = {"relobralo": 0.999}  # Bischof & Kraus; grad_norm and ntk: 0.9 (Wang et al. 2023)
LR = {"sa": 1.0, "rba": 0.01}  # sa: η of the ascent step; rba: η* (Anagnostopoulos et al.)


@dataclass
class WeightingSettings:
    """``[weighting]``: the method and its knobs (see the module docstring).

    ``period``: steps between updates (None: 1 for sa and rba, else 100); ``alpha``: the
    moving average of grad_norm, ntk and relobralo (None: 0.999 for relobralo, else 0.9);
    ``terms``: the terms sa and rba weight (default: the PDE residual terms); ``lr``: sa's
    ascent step η or rba's η* (None: 1.0 and 0.01); ``gamma``: rba's decay γ;
    ``temperature``, ``expected_rho``: relobralo's T and E[ρ]; ``seed``: the run's seed,
    which with the update's number seeds relobralo's draw of ρ.
    """

    method: str = "fixed"
    period: int | None = None
    alpha: float | None = None
    terms: tuple[str, ...] = ()
    lr: float | None = None
    gamma: float = 0.999
    temperature: float = 0.1
    expected_rho: float = 0.999
    seed: int = 0

    def __post_init__(self) -> None:
        m = self.method
        if m not in METHODS:
            raise ValueError(f"method: unknown {m!r}; allowed: {', '.join(METHODS)}")
        if self.period is None:
            self.period = PERIOD.get(m, 100)
        if self.alpha is None:
            self.alpha = ALPHA.get(m, 0.9)
        if self.lr is None:
            self.lr = LR.get(m, 1.0)
        self.terms = tuple(self.terms)
        if self.period < 1:
            raise ValueError(f"period must be >= 1 step, got {self.period}")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha < 1):
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
        if self.terms and m not in POINT_METHODS:
            raise ValueError(f"terms: only for the per-point methods {', '.join(POINT_METHODS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (math.isfinite(self.gamma) and 0 <= self.gamma < 1):
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not (math.isfinite(self.expected_rho) and 0 <= self.expected_rho <= 1):
            raise ValueError(f"expected_rho must be in [0, 1], got {self.expected_rho}")


def gradient_norms(objective: Objective) -> dict[str, float]:
    """‖∇_θ L_k‖ for every term, L_k = ½ mean r_k² (unweighted), the mean over the global
    points: on several processes each holds its share of the sum, and the gradients are
    summed over the processes before the norm."""
    params = [p for p in objective.model.parameters() if p.requires_grad]
    sync = Sync()
    norms = {}
    with torch.enable_grad():
        for name, r in objective.residuals().items():
            loss = 0.5 * r.square().sum() / objective.counts.get(name, r.numel())
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            flat = torch.cat([
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for p, g in zip(params, grads)
            ])  # fmt: skip
            norms[name] = math.sqrt(float(sync.sum(flat).square().sum()))
    return norms


def grad_norm_weights(norms: dict[str, float]) -> dict[str, float]:
    """ŵ_k = Σ_j ‖∇L_j‖ / ‖∇L_k‖ (a term with a zero gradient keeps weight 1)."""
    total = sum(norms.values())
    return {k: (total / n if n > 0 else 1.0) for k, n in norms.items()}


def ntk_traces(objective: Objective) -> dict[str, float]:
    """t_k = tr(K_kk) / N_k = mean_i ‖∇_θ r_k(x_i)‖² of the *unweighted* residuals.

    :meth:`Objective.jacobian` scales row i of term k by sqrt(w_k / N_k) · m_k,i; dividing
    that out fails where a weight is 0, so the rows come from a copy of the objective
    (same model and points) with w_k = 1, N_k taken as 1 and no point weights, whose
    Jacobian rows are ∇_θ r_k(x_i) exactly. Costs one Jacobian (that of a Gauss–Newton step).
    """
    names = list(objective.weights)
    unit = Objective(
        objective.problem,
        objective.model,
        objective.points,
        weights=dict.fromkeys(names, 1.0),
        counts=dict.fromkeys(names, 1),
    )
    _, J = unit.jacobian()
    return global_means({k: (float(rows.square().sum()), rows.shape[0])
                         for k, rows in unit.split(J).items()})  # fmt: skip


def ntk_weights(traces: dict[str, float]) -> dict[str, float]:
    """ŵ_k = Σ_j t_j / t_k (a term with a zero trace keeps weight 1)."""
    total = sum(traces.values())
    return {k: (total / t if t > 0 else 1.0) for k, t in traces.items()}


def term_losses(objective: Objective) -> dict[str, float]:
    """L_k = ½ mean_i r_k(x_i)² for every term (unweighted, no graph)."""
    residuals = objective.residuals_at(objective.points)
    parts = {k: (float(r.double().square().sum()), r.numel()) for k, r in residuals.items()}
    return {k: 0.5 * m for k, m in global_means(parts).items()}


def global_means(parts: dict[str, tuple[float, int]]) -> dict[str, float]:
    """sum / count of every entry's (sum, count), both summed over the processes that hold
    a share of the points (:class:`~pinnopt.train.distributed.Sync`; alone: as given)."""
    values = torch.tensor([v for pair in parts.values() for v in pair], dtype=torch.float64)
    values = Sync().sum(values)
    return {k: float(values[2 * i]) / float(values[2 * i + 1]) for i, k in enumerate(parts)}


def relobralo_balance(
    losses: dict[str, float], reference: dict[str, float], temperature: float
) -> dict[str, float]:
    """λ̂_k = K · softmax_k(L_k / (T · L_k')) with L' the ``reference`` losses.

    A term whose reference loss is 0 has ratio 0 if its loss is 0 too and +∞ otherwise
    (terms with ratio +∞ then share K equally).
    """
    z = {}
    for k, loss in losses.items():
        ref = reference[k]
        z[k] = loss / (temperature * ref) if ref > 0 else (0.0 if loss == 0 else math.inf)
    top = max(z.values())
    if math.isinf(top):
        e = {k: 1.0 if math.isinf(v) else 0.0 for k, v in z.items()}
    else:
        e = {k: math.exp(v - top) for k, v in z.items()}
    total = sum(e.values())
    return {k: len(z) * v / total for k, v in e.items()}


def bernoulli(p: float, seed: int, index: int) -> float:
    """ρ ∈ {0, 1} with P(ρ = 1) = p, drawn from a generator seeded by (seed, index)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    return 1.0 if u < p else 0.0


class LossBalancer:
    """A trainer callback applying :class:`WeightingSettings` to an objective.

    ``Trainer(..., callbacks=[balancer])``; it never asks the trainer to stop. relobralo
    keeps the term losses at the start of training and at its previous update
    (:meth:`state_dict`, checkpointed by the trainer); the other methods keep their state
    in the objective (w_k, m_k,i), which the trainer checkpoints, so a resumed run
    continues as the uninterrupted one would.
    """

    def __init__(self, objective: Objective, settings: WeightingSettings) -> None:
        self.objective = objective
        self.settings = settings
        s = settings
        self.points = None
        if s.method in POINT_METHODS:
            terms = point_terms(objective, s.terms)
            self.points = PointWeighter(objective, s.method, terms, s.lr, s.gamma)
        # relobralo: L_k(0), measured now (the start of training), and L_k(t − 1)
        self.initial: dict[str, float] | None = None
        self.previous: dict[str, float] | None = None
        if s.method == "relobralo":
            self.initial = term_losses(objective)
            self.previous = dict(self.initial)

    def __call__(self, state) -> bool:
        """After a step: an update if the step crossed a multiple of ``period`` (numbered
        by that multiple, so a resumed run numbers its updates as before)."""
        s = self.settings
        index = state.step // s.period
        if s.method != "fixed" and index > (state.step - state.done) // s.period:
            state.trainer.log_values.update(self.update(index))
        return False

    def update(self, index: int = 0) -> dict[str, float]:
        """New weights from the current θ (update number ``index``); returns them as
        history columns (none when the update was skipped)."""
        s = self.settings
        if s.method == "fixed":
            return {}
        if self.points is not None:
            return self.points.update()
        if s.method == "relobralo":
            target = self._relobralo(index)
        else:
            if s.method == "grad_norm":
                target = grad_norm_weights(gradient_norms(self.objective))
            else:
                target = ntk_weights(ntk_traces(self.objective))
            old = self.objective.weights
            target = {k: s.alpha * old[k] + (1 - s.alpha) * w for k, w in target.items()}
        if not all(math.isfinite(w) for w in target.values()):
            return {}
        self.objective.set_weights(target)
        return {f"weight_{k}": w for k, w in target.items()}

    def _relobralo(self, index: int) -> dict[str, float]:
        s = self.settings
        losses = term_losses(self.objective)
        if not all(math.isfinite(v) for v in losses.values()):
            return {k: math.nan for k in losses}  # skipped by update(); previous stays
        rho = bernoulli(s.expected_rho, s.seed, index)
        lookback = relobralo_balance(losses, self.initial, s.temperature)
        recent = relobralo_balance(losses, self.previous, s.temperature)
        old = self.objective.weights
        a = s.alpha
        self.previous = losses
        return {
            k: a * (rho * old[k] + (1 - rho) * lookback[k]) + (1 - a) * recent[k] for k in losses
        }

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: relobralo's L_k(0) and L_k(t − 1) (None otherwise)."""
        return {"method": self.settings.method, "initial": self.initial, "previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the state of another method is ignored."""
        if state.get("method") != self.settings.method or state.get("initial") is None:
            return
        self.initial = {k: float(v) for k, v in state["initial"].items()}
        self.previous = {k: float(v) for k, v in state["previous"].items()}

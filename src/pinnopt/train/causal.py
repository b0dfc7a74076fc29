"""Causal training: weight the PDE residual so that later times wait for earlier ones.

Wang, Sankaran & Perdikaris, "Respecting causality for training physics-informed
neural networks", Comput. Methods Appl. Mech. Engrg. 421 (2024) 116813
(arXiv:2203.07404). A PINN fitted on the whole space-time domain at once can
minimise the residual at late times before the early times are right, and so
settle on a solution that ignores the initial condition. The paper splits the
residual by time and weights each piece by how well everything before it is
already solved.

Here the time interval [t_0, T] of the problem's domain (the input named ``t``,
:attr:`pinnopt.problems.base.Problem.time_axis`) is cut into M equal slabs
S_0 … S_{M−1}; point i of a weighted term lies in slab j(i). With

    L_j = Σ_k mean_{i ∈ S_j} r_k(x_i)²          (summed over the weighted terms k)

the slab weights are

    w_0 = 1,     w_j = exp(−ε Σ_{l<j} L_l),                                   (1)

computed without a graph (the paper's stop-gradient), so 1 = w_0 ≥ w_1 ≥ … ≥ w_{M−1}
> 0. They reach the objective as per-point multipliers m_k,i = sqrt(w_{j(i)})
(:meth:`pinnopt.objective.Objective.set_point_weights`): term k's residual rows
become sqrt(w_k / N_k) · sqrt(w_{j(i)}) · r_k(x_i), so its loss is

    ½ (w_k / N_k) Σ_i w_{j(i)} r_k(x_i)² = ½ w_k Σ_j (N_k,j / N_k) w_j L_k,j,

with N_k,j the term's points in slab j and L_k,j their mean r_k². For points spread
evenly in time N_k,j / N_k ≈ 1/M, and this is the paper's causal loss
(1/M) Σ_j w_j L_j, times ½ w_k. Every optimizer sees it: first-order ones through
the loss, Gauss–Newton, LM and K-FAC through the rescaled rows of r(θ).

The weighted terms are those whose points lie inside the domain, off its boundary
(the PDE residuals; boundary and initial conditions and observations keep m = 1).
The weights are set when the callback is built and then recomputed every ``period``
steps from the current θ (one residual evaluation without a graph), and whenever the
points of the objective change (adaptive sampling drops the point weights of the
points it replaces).

Annealing ε (the paper's Algorithm 1): ``epsilon`` may be a list ε_1, ε_2, …
(increasing in the paper). Training starts with ε_1; when an update finds
min_j w_j > δ (every slab's weight near one: the residual is small all the way to T),
it moves on to the next ε and recomputes the weights at once — at most one move per
update; the last ε stays. A larger ε insists more strongly that the earlier slabs be
solved first. The paper also uses min_j w_j > δ under the last ε as a stopping
criterion; that is not done here (the step budget ends the run). Defaults: ε = 1 and
M = 32 slabs as in the authors' JAX-PI code (``causal_tol = 1.0``,
``num_chunks = 32``), δ = 0.99 as in the paper.

Each update leaves ``causal_min_weight`` (min_j w_j over the slabs holding points) and
``causal_epsilon`` (the ε in force) in the next history row (``trainer.log_values``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pinnopt.objective import Objective
from pinnopt.problems.base import Problem, Term
from pinnopt.train.distributed import Sync

METHODS = ("none", "weights")
# points drawn from a term's sampler to tell where its points lie (interior, a time face)
PROBE_POINTS = 64


@dataclass
class CausalSettings:
    """``[causal]`` (its causal-weight part): ε (one value or a list to anneal through),
    the number of time slabs M, the steps between updates and the annealing threshold δ."""

    epsilon: Sequence[float] = (1.0,)
    slabs: int = 32
    period: int = 1
    delta: float = 0.99

    def __post_init__(self) -> None:
        if isinstance(self.epsilon, int | float):
            self.epsilon = (self.epsilon,)
        self.epsilon = tuple(float(e) for e in self.epsilon)
        if not self.epsilon:
            raise ValueError("epsilon must be a number > 0 or a non-empty list of them")
        for e in self.epsilon:
            if not (math.isfinite(e) and e > 0):
                raise ValueError(f"epsilon must be finite and > 0, got {e}")
        if self.slabs < 1:
            raise ValueError(f"slabs must be >= 1, got {self.slabs}")
        if self.period < 1:
            raise ValueError(f"period must be >= 1 step, got {self.period}")
        if not (math.isfinite(self.delta) and 0 < self.delta <= 1):
            raise ValueError(f"delta must be in (0, 1], got {self.delta}")


def parse_epsilon(text: str) -> float | list[float]:
    """``"1"`` as 1.0, ``"0.01,0.1,1"`` as a list (the command line's ``--causal``);
    ValueError for anything else. The values are checked by :class:`CausalSettings`."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"expected a number or comma-separated numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def time_axis(problem: Problem, what: str = "causal training") -> int:
    """The problem's time axis; ValueError naming the problem and its inputs when it has none."""
    axis = problem.time_axis
    if axis is None:
        raise ValueError(
            f"problem {problem.name!r} has no time axis (inputs {', '.join(problem.input_names)}); "
            f"{what} needs an input named t"
        )
    return axis


def time_interval(problem: Problem, what: str = "causal training") -> tuple[float, float]:
    """[t_0, T]: the domain's extent along the time axis."""
    axis = time_axis(problem, what)
    return float(problem.domain.lower[axis]), float(problem.domain.upper[axis])


def probe(term: Term) -> Tensor:
    """A few points from the term's own sampler (fixed seed), to see where its points lie."""
    return term.sampler(PROBE_POINTS, torch.Generator().manual_seed(0))


def interior_terms(problem: Problem) -> list[str]:
    """The terms without observations whose points lie inside the domain, off its
    boundary: the PDE residuals, which causal weights act on."""
    names = []
    for term in problem.terms:
        if term.data_columns:
            continue
        x = probe(term)[:, : problem.dim]
        if not bool(problem.domain.on_boundary(x).any()):
            names.append(term.name)
    return names


def slab_index(t: Tensor, t0: float, t1: float, slabs: int) -> Tensor:
    """Slab j = ⌊M (t − t_0) / (T − t_0)⌋ of each time, clipped to 0 … M − 1 (long)."""
    j = torch.floor((t.double() - t0) * (slabs / (t1 - t0))).long()
    return j.clamp_(0, slabs - 1)


def slab_losses(residuals: Sequence[Tensor], slabs_of: Sequence[Tensor], slabs: int,
                sync: Sync | None = None):  # fmt: skip
    """(L, occupied): L_j = Σ_k mean_{i ∈ S_j} r_k(x_i)² (0 for a slab without points of
    term k) and which slabs hold any point, from each term's residuals and slab indices.
    With ``sync`` (processes that each hold a share of the points), each slab's sums and
    point counts are summed over the processes before the mean."""
    total = torch.zeros(slabs, dtype=torch.float64)
    occupied = torch.zeros(slabs, dtype=torch.bool)
    for r, j in zip(residuals, slabs_of):
        j = j.cpu()
        square = r.detach().double().cpu().square()
        sums = torch.zeros(slabs, dtype=torch.float64).index_add_(0, j, square)
        counts = torch.bincount(j, minlength=slabs).double()
        if sync is not None:
            sums, counts = sync.sum(torch.cat([sums, counts])).split(slabs)
        total += sums / counts.clamp(min=1)
        occupied |= counts > 0
    return total, occupied


def causal_weights(losses: Tensor, epsilon: float) -> Tensor:
    """w_j = exp(−ε Σ_{l<j} L_l), w_0 = 1: equation (1) of the module docstring."""
    before = torch.cumsum(losses, 0) - losses
    return torch.exp(-epsilon * before)


class CausalWeights:
    """A trainer callback keeping the causal weights of :class:`CausalSettings` on an objective.

    ``Trainer(..., callbacks=[causal])``; it never asks the trainer to stop. Built, it
    sets the weights for the current θ at once. ValueError when the problem has no
    time axis or no term inside the domain. Its state (which ε is in force) is saved
    in checkpoints (:meth:`state_dict`).
    """

    def __init__(self, objective: Objective, settings: CausalSettings) -> None:
        self.settings = settings
        self.index = 0  # which ε of the list is in force
        self.objective: Objective | None = None
        self._unsubscribe = None
        self._attach(objective)
        self.update()

    def _attach(self, objective: Objective) -> None:
        """Act on ``objective`` (a later trainer may bring its own: multi-stage training)."""
        problem = objective.problem
        self.t0, self.t1 = time_interval(problem)
        self.axis = time_axis(problem)
        self.terms = interior_terms(problem)
        if not self.terms:
            raise ValueError(
                f"problem {problem.name!r} has no term inside the domain for causal weights "
                f"(terms: {', '.join(t.name for t in problem.terms)})"
            )
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.objective = objective
        self._unsubscribe = objective.subscribe(self._changed)

    def _changed(self, what: str) -> None:
        if what == "points":  # the new points have no weights yet
            self.update()

    @property
    def epsilon(self) -> float:
        """The ε in force."""
        return self.settings.epsilon[self.index]

    def __call__(self, state) -> bool:
        """After a step: an update if the step crossed a multiple of ``period``."""
        if state.trainer.objective is not self.objective:
            self._attach(state.trainer.objective)
        s = self.settings
        if state.step // s.period > (state.step - state.done) // s.period:
            state.trainer.log_values.update(self.update())
        return False

    def weights(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(L, occupied, slab of every point by term) at the current θ (no graph)."""
        objective = self.objective
        points = {name: objective.points[name] for name in self.terms}
        residuals = objective.residuals_at(points)
        slabs = {
            name: slab_index(x[:, self.axis], self.t0, self.t1, self.settings.slabs)
            for name, x in points.items()
        }
        losses, occupied = slab_losses(
            [residuals[n] for n in self.terms],
            [slabs[n] for n in self.terms],
            self.settings.slabs,
            Sync(),
        )
        return losses, occupied, slabs

    def update(self) -> dict[str, float]:
        """Recompute the weights (moving to the next ε if min_j w_j > δ), set the point
        multipliers m = sqrt(w_j) on the objective; returns the history columns."""
        losses, occupied, slabs = self.weights()
        w = causal_weights(losses, self.epsilon)
        low = float(w[occupied].min()) if bool(occupied.any()) else 1.0
        if low > self.settings.delta and self.index < len(self.settings.epsilon) - 1:
            self.index += 1
            w = causal_weights(losses, self.epsilon)
            low = float(w[occupied].min()) if bool(occupied.any()) else 1.0
        root = w.sqrt()
        self.objective.set_point_weights({name: root[j] for name, j in slabs.items()})
        return {"causal_min_weight": low, "causal_epsilon": self.epsilon}

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        index = int(state["index"])
        if not 0 <= index < len(self.settings.epsilon):
            raise ValueError(
                f"causal state: epsilon index {index} is outside the list of "
                f"{len(self.settings.epsilon)} value(s)"
            )
        self.index = index

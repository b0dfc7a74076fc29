"""Adaptive collocation: move the points of some terms to where the residual is large.

Every ``period`` steps, a round draws a pool of candidate points from each sampled
term's own sampler, evaluates the residual there (no graph) and changes the
term's points through :meth:`pinnopt.objective.Objective.set_points`, which tells
the optimizer in charge (the objective-change seam). The methods (Wu, Zhu, Tan,
Kartha & Lu, "A comprehensive study of non-adaptive and residual-based adaptive
sampling for PINNs", CMAME 2023; Daw et al., ICML 2023):

    fixed     the points never move (no rounds)
    resample  N fresh points from the sampler
    rad       N points drawn from the pool, without replacement, with probability
              p(x) ∝ |r(x)|^k / mean|r|^k + c                         (RAD; k = 1, c = 1)
    rar_d     the current points plus ``add`` · N new ones drawn from the pool by the same
              density, up to ``max_points``                           (RAR-D; k = 2, c = 0)
    r3        retain the current points whose |r| exceeds the mean |r| over them and
              fill up to N with fresh points                          (R3, Daw et al.)

A round is deterministic: its generator is seeded by (seed, round), so a resumed
run draws what the uninterrupted one did (the points themselves are in the
checkpoint). Each round leaves statistics for the next history row
(``trainer.log_values``): ``points_<term>``, and over the pool ``pool_mean_<term>``
(mean |r|), ``pool_max_<term>`` and ``pool_p99_<term>`` (99th percentile of |r|).
Observation terms (points that carry data) are never resampled.

On several processes (:mod:`pinnopt.train.distributed`) a round works on the global
points: every process draws the same pool, evaluates the residual on its share of it and
gathers the rest, chooses the same new global points from the same generator, and keeps
its share of them; the sizes (N, the cap) are the global counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pinnopt.objective import Objective
from pinnopt.train.distributed import Sync

METHODS = ("fixed", "resample", "rad", "rar_d", "r3")
# (k, c) of the density where the method uses one, after Wu et al. 2023
DENSITY_DEFAULTS = {"rad": (1.0, 1.0), "rar_d": (2.0, 0.0)}


def residual_density(r: Tensor, k: float, c: float) -> Tensor:
    """p ∝ |r|^k / mean|r|^k + c, normalised to sum 1 (uniform when r is zero everywhere)."""
    a = r.abs().to(torch.float64) ** k
    mean = a.mean()
    p = (a / mean if mean > 0 else torch.zeros_like(a)) + c
    if not bool(p.sum() > 0):
        p = torch.ones_like(a)
    return p / p.sum()


@dataclass
class SamplingSettings:
    """``[sampling]``: the method and its knobs (see the module docstring).

    ``terms``: the terms to sample (default: every term of the highest derivative order,
    i.e. the PDE residuals); ``pool``: candidates per point of a term; ``k``, ``c``: the
    density (None: the method's default); ``add``: RAR-D's new points per round, as a
    fraction of the term's initial count; ``max_points``: RAR-D's cap per term (0: twice
    the initial count).
    """

    method: str = "fixed"
    period: int = 100
    terms: tuple[str, ...] = ()
    pool: int = 10
    k: float | None = None
    c: float | None = None
    add: float = 0.1
    max_points: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: unknown {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.period < 1:
            raise ValueError(f"period must be >= 1 step, got {self.period}")
        if self.pool < 1:
            raise ValueError(f"pool must be >= 1 candidate per point, got {self.pool}")
        if self.k is not None and not (math.isfinite(self.k) and self.k >= 0):
            raise ValueError(f"k must be >= 0, got {self.k}")
        if self.c is not None and not (math.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"c must be >= 0, got {self.c}")
        if not (math.isfinite(self.add) and self.add > 0):
            raise ValueError(f"add must be > 0, got {self.add}")
        if self.max_points < 0:
            raise ValueError(f"max_points must be >= 0, got {self.max_points}")
        self.terms = tuple(self.terms)

    def density(self) -> tuple[float, float]:
        k0, c0 = DENSITY_DEFAULTS.get(self.method, (1.0, 1.0))
        return (k0 if self.k is None else self.k), (c0 if self.c is None else self.c)


class AdaptiveSampler:
    """A trainer callback running the rounds of :class:`SamplingSettings` on an objective.

    ``Trainer(..., callbacks=[sampler])``; it never asks the trainer to stop.
    """

    def __init__(self, objective: Objective, settings: SamplingSettings) -> None:
        self.objective = objective
        self.settings = settings
        problem = objective.problem
        names = [t.name for t in problem.terms]
        for name in settings.terms:
            if name not in names:
                raise ValueError(f"terms: unknown term {name!r}; allowed: {', '.join(names)}")
        terms = [problem.term(n) for n in settings.terms] if settings.terms else _pde(problem)
        data = [t.name for t in terms if t.data_columns]
        if data:
            raise ValueError(f"terms: {data} carry observations and cannot be resampled")
        self.terms = terms
        self.sync = Sync()
        self.initial = {
            t.name: objective.counts.get(t.name, objective.points[t.name].shape[0]) for t in terms
        }  # global counts

    def __call__(self, state) -> bool:
        """After a step: a round if the step crossed a multiple of ``period`` (the round's
        number is that multiple's, so a resumed run numbers its rounds as before)."""
        s = self.settings
        index = state.step // s.period
        if s.method != "fixed" and index > (state.step - state.done) // s.period:
            state.trainer.log_values.update(self.round(index))
        return False

    def round(self, index: int) -> dict[str, float]:
        """One round (number ``index``): new points for every sampled term; its statistics."""
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + index)
        objective = self.objective
        ref = next(iter(objective.points.values()))
        new, stats = {}, {}
        for term in self.terms:
            current = self.sync.gather_rows(objective.points[term.name])
            n = self.initial[term.name]
            pool = term.sampler(s.pool * n, generator).to(device=ref.device, dtype=ref.dtype)
            r = self._residuals(pool, term.name)
            points = self._choose(term, current, pool, r, n, generator)
            new[term.name] = points
            q = torch.quantile(r.double().cpu(), 0.99) if r.numel() > 1 else r.max()
            stats.update({f"points_{term.name}": float(points.shape[0]),
                          f"pool_mean_{term.name}": float(r.mean()),
                          f"pool_max_{term.name}": float(r.max()),
                          f"pool_p99_{term.name}": float(q)})  # fmt: skip
        objective.set_points(*self.sync.shard(new))  # this process's share of them
        return stats

    def _residuals(self, x: Tensor, term: str) -> Tensor:
        """|r| of ``term`` at all of ``x``, each process evaluating its share."""
        mine = torch.tensor_split(x, self.sync.size)[self.sync.rank]
        return self.sync.gather_rows(self.objective.residuals_at(mine, term).abs())

    def _choose(self, term, current, pool, r, n, generator) -> Tensor:
        s = self.settings
        method = s.method
        if method == "resample":
            return pool[:n]
        if method == "rad":
            p = residual_density(r, *s.density())
            return pool[torch.multinomial(p.cpu(), n, replacement=False, generator=generator)]
        if method == "rar_d":
            cap = s.max_points or 2 * n
            m = min(max(1, round(s.add * n)), cap - current.shape[0])
            if m <= 0:
                return current
            p = residual_density(r, *s.density())
            picked = torch.multinomial(p.cpu(), m, replacement=False, generator=generator)
            return torch.cat([current, pool[picked]])
        # r3: keep the points of the current set whose residual is above its mean
        rc = self._residuals(current, term.name)
        kept = current[rc > rc.mean()]
        return torch.cat([kept, pool[: max(0, n - kept.shape[0])]])


def _pde(problem) -> list:
    """The terms of the highest derivative order that carry no observations."""
    terms = [t for t in problem.terms if not t.data_columns]
    top = max(t.order for t in terms)
    return [t for t in terms if t.order == top]

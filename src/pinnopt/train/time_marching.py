"""Time marching: solve a time-dependent problem one time window after the other.

The time interval [t_0, T] of the problem (the input named ``t``,
:attr:`pinnopt.problems.base.Problem.time_axis`) is cut into K equal windows
[t_k, t_{k+1}], t_k = t_0 + k (T − t_0)/K. Window k is the problem restricted to
its window, trained by a network of its own (Wight & Zhao, "Solving Allen–Cahn and
Cahn–Hilliard equations using the adaptive physics informed neural networks",
Commun. Comput. Phys. 29 (2021); Mattey & Ghosh, "A novel sequential method to train
physics informed neural networks for Allen Cahn and Cahn Hilliard equations",
CMAME 390 (2022); the time-window scheme of Wang, Sankaran & Perdikaris, CMAME 2024):

- every term's points are drawn inside the window: each sampler draws on the whole
  domain as usual and its times are mapped affinely onto the window,
  t ↦ t_k + (t − t_0)/K (uniform points stay uniform, points on t = t_0 land on
  t = t_k, boundary points keep their place in x);
- the initial-condition terms — the terms whose points all lie on t = t_0 — are
  replaced, for k > 0, by matching the previous window's network u_prev at t = t_k.
  The rule is generic: a condition r[u](x) = 0 on t = t_0 becomes

      r[u](x) − r[u_prev](x) = 0       at t = t_k,

  i.e. the window's network must satisfy the condition operator as u_prev does. For
  conditions affine in u (all built-in ones) this is the operator applied to
  u − u_prev: ``ic`` (u − g) gives u − u_prev, a velocity condition such as
  ``wave1d``'s ``ic_t`` (u_t) gives u_t − u_prev,t through the previous network's
  jet. r[u_prev](x) is computed once, when the points are drawn, and carried as an
  extra column of each point (the mechanism of observation terms, ``data_columns``);
- each window trains with the same optimizer chain, settings and callbacks as a
  single run, with the full step and time budget (per window, not shared: a window
  is a complete PINN solve of its own, as in the authors' JAX-PI code), and the same
  point counts per term;
- window k's network is either a copy of window k − 1's trained network
  (``warm_start``, the default: it starts as the previous solution continued into the
  window, so it meets the matching conditions at t_k from the first step) or a freshly
  initialised one. All windows' networks are built for the whole domain (the same
  input scaling as a single run), so a copy continues the previous solution.

:class:`TimeWindows` stitches the trained networks into one model: each point goes
to the network of the window holding its t (a t on a window edge t_k to window k, a
t beyond the last trained window to the last network). A window that ends ``nan``,
``interrupted`` or ``stopped`` ends the march.

Refused (ValueError): a problem without a time axis, a domain that is not a box,
exact constraints (u = g + d·N imposes the initial condition at t_0 only, which does
not hold on a later window), observation terms and unknown physical parameters
(their data do not move with a window), and a problem without an
initial-condition term.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet, jet_of_input
from pinnopt.evaluation import Evaluator
from pinnopt.objective import term_residuals
from pinnopt.problems.base import Problem, Term
from pinnopt.problems.geometry import Box
from pinnopt.train.causal import probe, time_axis
from pinnopt.train.trainer import Trainer, TrainResult

# statuses after which no further window is trained
STOP_STATUSES = ("nan", "interrupted", "stopped")
WHAT = "time marching"


class TimeWindows(nn.Module):
    """u(x) = u_k(x) for x's time in [t_k, t_{k+1}): networks stitched along the time axis.

    ``networks`` are u_0 … u_{K−1} and ``boundaries`` the K − 1 inner edges
    t_1 < … < t_{K−1} (a buffer, saved in ``state_dict``); ``axis`` is the time
    input. A time t goes to window k with t_k ≤ t < t_{k+1} (window 0 below t_1,
    window K − 1 from t_{K−1} on). The forward jet routes the same way
    (:meth:`forward_jet`), so derivatives inside a window are that network's. All
    parameters are frozen (``requires_grad = False``): the model is for evaluation.
    """

    def __init__(self, networks: list[nn.Module], boundaries: list[float], axis: int) -> None:
        super().__init__()
        if not networks:
            raise ValueError("networks must hold at least one network")
        if len(boundaries) != len(networks) - 1:
            raise ValueError(
                f"boundaries must have one entry fewer than networks: {len(boundaries)} for "
                f"{len(networks)}"
            )
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase, got {list(boundaries)}")
        self.networks = nn.ModuleList(networks)
        p = next(self.networks.parameters(), torch.empty((), dtype=torch.float64))
        self.register_buffer(
            "boundaries",
            torch.tensor([float(b) for b in boundaries], dtype=p.dtype, device=p.device),
        )
        self.axis = axis
        self.requires_grad_(False)

    def window_of(self, x: Tensor) -> Tensor:
        """The window (0 … K − 1) of each point of x (N, d), as a long tensor."""
        t = x[:, self.axis].contiguous()
        return torch.bucketize(t, self.boundaries.to(t), right=True)

    def _routed(self, x: Tensor) -> list[tuple[Tensor, nn.Module]]:
        index = self.window_of(x)
        out = []
        for k, net in enumerate(self.networks):
            rows = (index == k).nonzero().squeeze(1)
            if rows.numel():
                out.append((rows, net))
        return out

    def forward(self, x: Tensor) -> Tensor:
        routed = self._routed(x)
        if not routed:  # no points
            return self.networks[0](x)
        out = None
        for rows, net in routed:
            y = net(x[rows])
            if out is None:
                out = y.new_zeros((x.shape[0], *y.shape[1:]))
            out = out.index_copy(0, rows, y)
        return out

    def forward_jet(self, z: Jet) -> Jet:
        """Each point's jet from its window's network (``z``: the jet of the raw inputs)."""
        routed = self._routed(z.value)
        if not routed:
            return jet_of_input(self.networks[0], z)
        n = z.value.shape[0]
        parts: list[Tensor | None] | None = None
        for rows, net in routed:
            sub = Jet(*(None if p is None else p[rows] for p in z.parts))
            j = jet_of_input(net, sub).parts
            if parts is None:
                parts = [None if p is None else p.new_zeros((n, *p.shape[1:])) for p in j]
            parts = [None if a is None else a.index_copy(0, rows, b) for a, b in zip(parts, j)]
        return Jet(*parts)

    def extra_repr(self) -> str:
        return (
            f"axis={self.axis}, boundaries=["
            + ", ".join(f"{float(b):.6g}" for b in self.boundaries)
            + "]"
        )


# --------------------------------------------------------------------------- windows


def _on_time_face(term: Term, axis: int, t0: float) -> bool:
    """Whether all of the term's (probed) points lie on t = t_0: an initial condition."""
    t = probe(term)[:, axis]
    return bool(((t - t0).abs() <= 1e-12 * max(1.0, abs(t0))).all())


def _mapped(sampler, axis: int, t0: float, scale: float, start: float):
    """``sampler`` with its times mapped t ↦ start + (t − t_0)·scale."""

    def sample(n: int, generator: torch.Generator) -> Tensor:
        x = sampler(n, generator).clone()
        x[:, axis] = start + (x[:, axis] - t0) * scale
        return x

    return sample


def _matching(term: Term, sampler, previous: nn.Module) -> Term:
    """``term`` as the condition r[u] − r[u_prev] = 0, r[u_prev] carried as a last column."""
    residual = term.residual

    def sample(n: int, generator: torch.Generator) -> Tensor:
        x = sampler(n, generator)
        target = term_residuals(term, previous, x).to(device="cpu", dtype=torch.float64)
        return torch.cat([x, target.unsqueeze(1)], dim=1)

    def matched(u: Jet, x: Tensor) -> Tensor:
        return residual(u, x[:, :-1]) - x[:, -1]

    return replace(term, sampler=sample, residual=matched, data_columns=term.data_columns + 1)


class TimeMarching:
    """The K windows of a problem (see the module docstring); ValueError for a problem
    that cannot be marched (the message names the reason).

    :meth:`window` is the problem of one window; :meth:`run` trains them in turn.
    """

    def __init__(self, problem: Problem, windows: int) -> None:
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ValueError(f"windows must be an integer >= 1, got {windows!r}")
        axis = time_axis(problem, WHAT)
        name = problem.name
        if not isinstance(problem.domain, Box):
            raise ValueError(
                f"problem {name!r}: {WHAT} needs a box domain, got {type(problem.domain).__name__}"
            )
        if problem.constrained:
            raise ValueError(
                f"problem {name!r}: {WHAT} does not compose with exact constraints (they impose "
                'the initial condition at t_0 only); use problem.constraints = "soft"'
            )
        data = [t.name for t in problem.terms if t.data_columns]
        if data or problem.unknowns:
            raise ValueError(
                f"problem {name!r}: {WHAT} does not support observation terms or unknown "
                f"parameters (terms {data}, unknowns {sorted(problem.unknowns)})"
            )
        self.problem = problem
        self.windows = windows
        self.axis = axis
        self.t0 = float(problem.domain.lower[axis])
        self.t1 = float(problem.domain.upper[axis])
        self.initial = [t.name for t in problem.terms if _on_time_face(t, axis, self.t0)]
        if not self.initial:
            raise ValueError(
                f"problem {name!r}: {WHAT} needs an initial-condition term (a term whose points "
                f"lie on t = {self.t0:g}); terms: {', '.join(t.name for t in problem.terms)}"
            )

    def edges(self) -> list[float]:
        """t_0, t_1, …, t_K (t_K = T exactly)."""
        h = (self.t1 - self.t0) / self.windows
        return [self.t0 + k * h for k in range(self.windows)] + [self.t1]

    def window(self, k: int, previous: nn.Module | None = None) -> Problem:
        """The problem on window k (0-based): the box cut to [t_k, t_{k+1}], every sampler
        mapped into it and, with ``previous`` (needed for k > 0), the initial-condition
        terms matching ``previous`` at t_k."""
        if not 0 <= k < self.windows:
            raise ValueError(f"window must be in 0 … {self.windows - 1}, got {k}")
        if k > 0 and previous is None:
            raise ValueError(f"window {k} needs the previous window's network")
        p = self.problem
        edges = self.edges()
        lo, hi = edges[k], edges[k + 1]
        lower, upper = list(p.domain.lower), list(p.domain.upper)
        lower[self.axis], upper[self.axis] = lo, hi
        scale = (hi - lo) / (self.t1 - self.t0)
        terms = []
        for term in p.terms:
            sampler = _mapped(term.sampler, self.axis, self.t0, scale, lo)
            if k > 0 and term.name in self.initial:
                terms.append(_matching(term, sampler, previous))
            else:
                terms.append(replace(term, sampler=sampler))
        return replace(
            p, domain=Box(lower, upper), terms=terms, constraint=None,
            description=f"{p.description} (window {k + 1}/{self.windows}: t in [{lo:g}, {hi:g}])",
        )  # fmt: skip

    def run(
        self,
        trainer: Trainer,
        next_trainer: Callable[[Problem, nn.Module], Trainer],
        network: Callable[[], nn.Module],
        warm_start: bool = True,
        on_window: Callable[[TimeWindows], None] | None = None,
    ) -> MarchResult:
        """Train window 0 with ``trainer`` (built on :meth:`window` (0)), then each further
        window k with ``next_trainer(window(k, u_prev), net)``; ``net = network()`` is a fresh
        network, given u_prev's parameters with ``warm_start``. After each window
        ``on_window`` (if given) sees the stitched model so far (to save it). Returns the
        stitched model of all windows trained."""
        edges = self.edges()
        done: list[WindowResult] = []
        networks: list[nn.Module] = []
        for k in range(self.windows):
            if k > 0:
                previous = networks[-1]
                net = network()
                if warm_start:  # a state copy, not a deepcopy: no optimizer hooks come along
                    net.load_state_dict(previous.state_dict())
                previous.requires_grad_(False)
                trainer = next_trainer(self.window(k, previous), net)
            result = trainer.fit()
            done.append(WindowResult(k + 1, edges[k], edges[k + 1], result))
            networks.append(trainer.model)
            model = TimeWindows(networks, edges[1 : len(networks)], self.axis)
            if on_window is not None:
                on_window(model)
            if result.status in STOP_STATUSES:
                break
        overall = Evaluator(self.problem)(model)
        return MarchResult(model, trainer, done, overall, joined_history(done))


@dataclass
class WindowResult:
    """One window of a march: its number (1-based), time interval and training."""

    window: int
    t_start: float
    t_end: float
    result: TrainResult

    def summary(self) -> dict[str, Any]:
        """What metrics.json says of the window (rel_l2 inside the window)."""
        r = self.result
        return {
            "window": self.window,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "status": r.status,
            "rel_l2": r.rel_l2,
            "max_abs_error": r.max_abs_error,
            "final_loss": r.final_loss,
            "steps": r.steps,
            "wall_time_s": round(r.wall_time_s, 3),
        }


@dataclass
class MarchResult:
    """The stitched model, the last window's trainer, every window's result, the
    stitched model's errors on the whole domain and the joined history."""

    model: TimeWindows
    trainer: Trainer
    windows: list[WindowResult]
    errors: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The first stopping status of a window, else the last window's."""
        for w in self.windows:
            if w.result.status in STOP_STATUSES:
                return w.result.status
        return self.windows[-1].result.status

    def result(self) -> TrainResult:
        """The whole march as one result: steps and time summed, final loss (and per-term
        losses) the sum of the windows' final losses, errors of the stitched model."""
        rs = [w.result for w in self.windows]
        terms: dict[str, float] = {}
        for r in rs:
            for k, v in r.loss_terms.items():
                terms[k] = terms.get(k, 0.0) + v
        return TrainResult(
            status=self.status,
            steps=sum(r.steps for r in rs),
            wall_time_s=sum(r.wall_time_s for r in rs),
            final_loss=sum(r.final_loss for r in rs),
            loss_terms=terms,
            rel_l2=self.errors.get("rel_l2", math.nan),
            max_abs_error=self.errors.get("max_abs_error", math.nan),
            history=self.history,
            signal=rs[-1].signal,
            errors=self.errors,
        )

    def metrics(self) -> dict[str, Any]:
        """metrics.json of the march: the trainer's fields for :meth:`result`, the
        parameters of all windows' networks, and ``windows`` (one entry per window)."""
        metrics = self.trainer.metrics(self.result())
        metrics["n_params"] = sum(p.numel() for p in self.model.parameters())
        metrics["windows"] = [w.summary() for w in self.windows]
        return metrics


def joined_history(windows: list[WindowResult]) -> list[dict[str, Any]]:
    """The windows' history rows with a ``window`` column (1, 2, …) and step and time
    running on across windows (rel_l2 in a row is inside that row's window)."""
    rows: list[dict[str, Any]] = []
    step0, time0 = 0, 0.0
    for w in windows:
        for row in w.result.history:
            rows.append(
                {**row, "step": row["step"] + step0, "time": round(row["time"] + time0, 4),
                 "window": w.window}
            )  # fmt: skip
        step0 += w.result.steps
        time0 += w.result.wall_time_s
    return rows

"""Multi-stage training: each new network fits what the previous ones left over.

Wang & Lai, "Multi-stage neural networks: Function approximator of machine
precision", J. Comput. Phys. 504 (2024) 112865. After stage 1 has trained u_1,
the remaining error e_1 = u* − u_1 is small but not zero, and an ordinary network
struggles to learn it further (its loss is tiny, its spectrum has moved to
higher frequencies than the network's spectral bias prefers). Stage 2 therefore
adds a *new* network, scaled to the size of that error and given first-layer
features at its frequency:

    u(x) = Σ_k ε_k u_k(x),        ε_1 = 1,                                    (1)

where only the last u_k is trained and the earlier ones are frozen. For a PINN
the error itself is unknown, but the PDE residual r_k = 𝒩[u] − f of the current
composite is: for a term of derivative order m whose residual has RMS ‖r‖ and
dominant frequency f_d (cycles per unit length, from an FFT of r on a uniform
grid), a correction of amplitude ε at that frequency changes the residual by
about ε (2π f_d)^m, so the paper sets

    ε_{k+1} = ‖r_k‖_RMS / (2π f_d)^m,                                         (2)

the regression rule ε = RMS of the error for m = 0. The new network's first
layer is set to that frequency too: here random Fourier features (the MLP's
:class:`~pinnopt.models.layers.FourierFeatures`) whose frequency vectors have an
RMS length f_d in the problem's box (see :func:`fourier_mlp`), where the paper
uses a sin first layer with weights scaled by κ = 2π f_d.

Two refinements of the paper's recipe, both measured on ``poisson2d``
(:func:`analyze_residual` has the details): f_d is the peak of the error
spectrum that the residual implies, |r̂(f)| / (2π|f|)^m, rather than of the
residual's own (the same when one mode dominates); and (2) is applied to every
term — a boundary residual of order 0 is an error amplitude itself — with the
largest ε kept. And as in the paper, u_k is trained on a normalized target: its
objective is the composite's residual divided by ε_k (the weights divided by
ε_k², see :func:`fit_stages`).

:class:`NetworkSum` is (1) as one ``nn.Module`` that supports the forward jet
(the jet of a sum is the sum of the jets, a scaled jet is scaled), so every
optimizer — Gauss–Newton's per-point Jacobian, K-FAC's jet hooks, first-order
methods — sees an ordinary model whose trainable parameters are the last
network's. :func:`fit_stages` runs the chain: stage 1 is a built
:class:`~pinnopt.train.trainer.Trainer`; every further stage gets the same
points, optimizer chain and step/time budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet, propagate_jet, supports_jet
from pinnopt.models.mlp import MLP
from pinnopt.objective import Objective, term_residuals
from pinnopt.problem_network import network_for
from pinnopt.problems.base import Problem, Term
from pinnopt.train.trainer import Trainer, TrainResult

# the residual grid of :func:`analyze_residual` has at most this many points by default
MAX_GRID_POINTS = 2**15
# points per axis by dimension when not given (d > 3: the largest n with n^d <= MAX_GRID_POINTS)
GRID_POINTS = {1: 2048, 2: 128, 3: 32}
MIN_GRID_POINTS = 4
# f_d of a new stage: the lowest frequency whose implied error is at least this share of the
# peak's (analyze_residual): features at too high a frequency overfit, too low ones do not
PEAK_WITHIN = 0.5
# how analyze_residual sets f_d and ε: "error" (pinnopt's), "residual" (the paper's as written)
RULES = ("error", "residual")
# statuses after which no further network is trained
STOP_STATUSES = ("nan", "interrupted", "stopped")


class NetworkSum(nn.Module):
    """u(x) = Σ_k ε_k u_k(x): a sum of scaled networks, all but the last frozen.

    The multi-stage composite of Wang & Lai (J. Comput. Phys. 2024), equation (1)
    of :mod:`pinnopt.train.multistage`. ``networks`` are the stages u_1 … u_K (each
    must support the forward jet, as every built-in model does) and ``scales``
    their ε_k (ε_1 = 1 by convention, not enforced). The parameters of u_1 … u_{K−1}
    get ``requires_grad = False`` so that optimizers built on the trainable
    parameters only move u_K. The jet is the sum of the networks' jets, each
    scaled by its ε_k (:meth:`forward_jet`), so :func:`pinnopt.derivatives.jet`
    takes the fast path. ``scales`` is a buffer: it is saved in ``state_dict``.
    """

    def __init__(self, networks: Sequence[nn.Module], scales: Sequence[float]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("networks must hold at least one network")
        if len(scales) != len(networks):
            raise ValueError(
                f"scales must have one entry per network: {len(scales)} for {len(networks)}"
            )
        for k, s in enumerate(scales):
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"scales[{k}] must be finite and > 0, got {s}")
        for k, net in enumerate(networks):
            if not supports_jet(net):
                raise ValueError(
                    f"networks[{k}] ({type(net).__name__}) does not support the forward jet "
                    "(pinnopt.derivatives.supports_jet)"
                )
        self.networks = nn.ModuleList(networks)
        p = next(self.networks.parameters(), torch.empty((), dtype=torch.float64))
        self.register_buffer(
            "scales", torch.tensor([float(s) for s in scales], dtype=p.dtype, device=p.device)
        )
        for net in self.networks[:-1]:
            net.requires_grad_(False)

    @property
    def unknowns(self) -> nn.ParameterDict | None:
        """The physical parameters of an inverse problem, held by the first network."""
        return getattr(self.networks[0], "unknowns", None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.scales[0] * self.networks[0](x)
        for k in range(1, len(self.networks)):
            out = out + self.scales[k] * self.networks[k](x)
        return out

    def forward_jet(self, z: Jet) -> Jet:
        """Σ_k ε_k · jet of u_k, part by part (value, gradient, Hessian diagonal, Laplacian)."""
        jets = [
            propagate_jet(net, z).map(lambda t, s=scale: s * t)
            for scale, net in zip(self.scales, self.networks)
        ]
        total = jets[0]
        for j in jets[1:]:
            total = Jet(*(None if a is None else a + b for a, b in zip(total.parts, j.parts)))
        return total

    def extra_repr(self) -> str:
        return "scales=[" + ", ".join(f"{float(s):.3e}" for s in self.scales) + "]"


# --------------------------------------------------------------------------- the residual


@dataclass(frozen=True)
class ResidualSummary:
    """What the next stage is built from: the residual's dominant frequency and size.

    ``term`` is the term whose residual was transformed (order ``order``, RMS
    ``rms`` on a grid of shape ``grid``); ``frequency`` is f_d in cycles per unit
    length (:func:`analyze_residual`); ``amplitudes`` maps every term to the error
    amplitude its residual implies, RMS(r_k) / (2π f_d)^{m_k}, and :attr:`epsilon`
    is the largest of them.
    """

    term: str
    order: int
    rms: float
    frequency: float
    grid: tuple[int, ...]
    amplitudes: dict[str, float]

    @property
    def epsilon(self) -> float:
        """ε = max_k RMS(r_k) / (2π f_d)^{m_k}: rule (2) on every term, the largest wins."""
        return max(self.amplitudes.values())


def stage_scale(rms: float, frequency: float, order: int) -> float:
    """ε = rms / (2π·frequency)^order: the error amplitude that explains a residual ``rms``."""
    if not (math.isfinite(rms) and rms >= 0):
        raise ValueError(f"rms must be finite and >= 0, got {rms}")
    if not (math.isfinite(frequency) and frequency > 0):
        raise ValueError(f"frequency must be finite and > 0, got {frequency}")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    return rms / (2 * math.pi * frequency) ** order


def residual_term(problem: Problem, term: str | None = None) -> Term:
    """The term whose residual sets the next stage: ``term``, or the first of highest order."""
    if term is not None:
        try:
            return problem.term(term)
        except KeyError:
            allowed = [t.name for t in problem.terms]
            raise ValueError(
                f"term {term!r} is not a term of {problem.name}; allowed: {allowed}"
            ) from None
    return max(problem.terms, key=lambda t: t.order)  # max keeps the first of equal order


def grid_points_per_dim(dim: int, n_per_dim: int | None = None) -> int:
    """Points per axis of the residual grid: ``n_per_dim``, or a default by dimension.

    d = 1, 2, 3: 2048, 128, 32 points per axis; d > 3: the largest n with
    n^d <= MAX_GRID_POINTS (2^15), at least 4 — a coarser grid, which resolves
    frequencies up to n / (2 L) cycles per unit length on a side L.
    """
    if n_per_dim is not None:
        if n_per_dim < MIN_GRID_POINTS:
            raise ValueError(f"n_per_dim must be >= {MIN_GRID_POINTS}, got {n_per_dim}")
        return n_per_dim
    if dim in GRID_POINTS:
        return GRID_POINTS[dim]
    n = int(math.floor(MAX_GRID_POINTS ** (1.0 / dim) + 1e-9))
    return max(MIN_GRID_POINTS, n)


def _residual(term: Term, model: nn.Module, x: Tensor) -> Tensor:
    """A term's residual at points x, no graph (the objective's
    :func:`~pinnopt.objective.term_residuals`), as float64 on the CPU for numpy."""
    return term_residuals(term, model, x).to(device="cpu", dtype=torch.float64)


def grid_residual(
    problem: Problem, model: nn.Module, term: str | None = None, n_per_dim: int | None = None
) -> tuple[np.ndarray, Term]:
    """The residual of ``term`` on a cell-centred uniform grid of the box, shape (n,)·d.

    Points x_j = lower + (j + ½)·L/n along each axis (j = 0 … n−1): the FFT's
    sample spacing is L/n, and every point is inside the box.
    """
    t = residual_term(problem, term)
    box = problem.domain
    n = grid_points_per_dim(box.dim, n_per_dim)
    axes = [
        torch.tensor([lo + (j + 0.5) * (hi - lo) / n for j in range(n)], dtype=torch.float64)
        for lo, hi in zip(box.lower, box.upper)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    x = torch.stack([m.reshape(-1) for m in mesh], dim=1)
    return _residual(t, model, x).numpy().reshape((n,) * box.dim), t


def spectrum_peak(
    r: np.ndarray,
    lower: Sequence[float],
    upper: Sequence[float],
    order: int = 0,
    within: float = 1.0,
) -> float:
    """|f| (cycles per unit length) of the largest nonzero mode of ``r`` sampled on a box grid.

    ``r`` holds samples on a uniform grid of the box [lower, upper] (spacing L_i/n_i);
    mode (k_1, …, k_d) of its FFT has frequency f = (k_1/L_1, …, k_d/L_d). With
    ``order`` m > 0 each mode's magnitude is first divided by (2π|f|)^m. With
    ``within`` < 1 the result is the lowest |f| among the modes whose magnitude is
    at least ``within`` times the largest (1: the largest mode itself).
    """
    if not 0 < within <= 1:
        raise ValueError(f"within must be in (0, 1], got {within}")
    spectrum = np.abs(np.fft.fftn(r - r.mean()))
    freqs = [np.fft.fftfreq(n, d=(hi - lo) / n) for n, lo, hi in zip(r.shape, lower, upper)]
    mesh = np.meshgrid(*freqs, indexing="ij")
    norm = np.sqrt(sum(m * m for m in mesh))
    norm.flat[0] = np.inf  # the zero mode never counts
    if order:
        spectrum = spectrum / (2 * np.pi * norm) ** order
    spectrum.flat[0] = -1.0
    peak = spectrum.max()
    if peak <= 0:  # a constant residual: no nonzero mode
        return math.nan
    if within == 1:
        return float(norm.flat[int(np.argmax(spectrum))])
    return float(norm[spectrum >= within * peak].min())


def dominant_frequency(
    problem: Problem,
    model: nn.Module,
    term: str | None = None,
    n_per_dim: int | None = None,
    order: int = 0,
    within: float = 1.0,
) -> float:
    """Frequency |f| (cycles per unit length) of the residual's largest nonzero Fourier mode.

    The residual of ``term`` (default: the problem's highest-order term, e.g.
    ``"pde"``) is evaluated on a uniform grid of the problem's box
    (:func:`grid_residual`; n points per axis from :func:`grid_points_per_dim`,
    coarser for d > 3), its mean removed, and transformed by a d-dimensional FFT.
    Mode (k_1, …, k_d) has frequency vector f = (k_1/L_1, …, k_d/L_d) for side
    lengths L_i; the result is |f| of the mode of largest magnitude other than the
    zero mode. ``order`` m > 0 divides each mode by (2π|f|)^m first, which turns the
    residual's spectrum into that of the error it implies (see
    :func:`analyze_residual`); ``within`` < 1 takes the lowest frequency among the
    modes within that factor of the largest (:func:`spectrum_peak`). The grid is not
    periodic, so the spectrum leaks; the lowest resolvable frequency is 1/L. NaN
    for a constant residual.
    """
    r, _ = grid_residual(problem, model, term, n_per_dim)
    return spectrum_peak(r, problem.domain.lower, problem.domain.upper, order, within)


def term_rms(problem: Problem, model: nn.Module, term: str, n: int = 4096, seed: int = 0) -> float:
    """RMS of a term's residual at ``n`` fresh points from the term's own sampler (at its
    own points if it has fewer: observations, whose sampler draws from a fixed set)."""
    t = problem.term(term)
    if t.data_columns:
        n = min(n, t.n)
    x = t.sampler(n, torch.Generator().manual_seed(seed))
    r = _residual(t, model, x)
    return float(r.square().mean().sqrt())


def analyze_residual(
    problem: Problem,
    model: nn.Module,
    term: str | None = None,
    n_per_dim: int | None = None,
    rule: str = "error",
) -> ResidualSummary:
    """Dominant frequency f_d and scale ε of the next stage, from the current residual.

    ``rule="error"`` (the default): mode by mode, a linear operator of order m maps
    an error mode of amplitude a and frequency f to a residual mode of about
    a (2π|f|)^m (Wang & Lai's rule (2) of the module docstring, applied per mode).
    So the error the residual implies has the spectrum |r̂(f)| / (2π|f|)^m, and f_d
    is its peak: ``dominant_frequency(..., order=m)`` of the highest-order term,
    except that of modes within a factor 2 of the peak (``PEAK_WITHIN``) the lowest
    frequency is taken. For a residual with one dominant mode this is the
    residual's own peak, the paper's f_d; when the residual's peak sits at a higher
    frequency than the error's (a smooth error whose residual is dominated by small
    wiggles) it follows the error. The tie rule is there because the two mistakes
    cost differently: Fourier features for too high an f_d overfit the collocation
    points, features for too low an f_d cost little (docs/training.md, "Multi-stage
    training", has the measurements). ε applies rule (2) to every term k with f_d
    and the term's order m_k — the highest-order term's RMS from the grid, the
    others' from fresh points of their samplers — and takes the largest: boundary
    and initial residuals (order 0) are error amplitudes themselves, and an error
    driven by the boundary data is invisible to the interior residual.

    ``rule="residual"``: the paper's recipe as written, f_d the peak of the
    residual's own spectrum and ε from the highest-order term alone.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    r, t = grid_residual(problem, model, term, n_per_dim)
    box = problem.domain
    if rule == "error":
        frequency = spectrum_peak(r, box.lower, box.upper, t.order, PEAK_WITHIN)
    else:
        frequency = spectrum_peak(r, box.lower, box.upper)
    if not math.isfinite(frequency):  # a constant residual: the lowest resolvable frequency
        frequency = 1.0 / max(hi - lo for lo, hi in zip(box.lower, box.upper))
    rms = float(np.sqrt(np.mean(r * r)))
    amplitudes = {t.name: stage_scale(rms, frequency, t.order)}
    if rule == "error":
        for other in problem.terms:
            if other.name != t.name:
                value = term_rms(problem, model, other.name)
                amplitudes[other.name] = stage_scale(value, frequency, other.order)
    return ResidualSummary(t.name, t.order, rms, frequency, r.shape, amplitudes)


# --------------------------------------------------------------------------- stage networks


def fourier_sigma(problem: Problem, frequency: float) -> float:
    """σ of Gaussian Fourier features whose frequencies have RMS length ``frequency`` in the box.

    The MLP maps the box onto [-1, 1]^d before its Fourier features, so a feature
    frequency b (cycles per unit of the scaled input, b_i ~ N(0, σ²)) has frequency
    2 b_i / L_i along axis i of the box. With L̄ the geometric mean of the side
    lengths, σ = f_d L̄ / (2√d) gives E|2b/L̄|² = f_d².
    """
    if not (math.isfinite(frequency) and frequency > 0):
        raise ValueError(f"frequency must be finite and > 0, got {frequency}")
    box = problem.domain
    sides = [hi - lo for lo, hi in zip(box.lower, box.upper)]
    mean_side = math.exp(sum(math.log(s) for s in sides) / len(sides))
    return frequency * mean_side / (2 * math.sqrt(box.dim))


def fourier_mlp(
    problem: Problem,
    frequency: float,
    width: int = 32,
    depth: int = 2,
    activation: str = "tanh",
    init: str = "xavier",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """A stage network: an MLP of ``width`` × ``depth`` on ``width // 2`` Fourier features.

    ``width // 2`` sin/cos pairs (at least one) make the first hidden layer's input
    as wide as a hidden layer; their σ comes from :func:`fourier_sigma`. Built for the
    problem by :func:`pinnopt.problem_network.network_for` as a correction: periodic
    where the problem is, zero where its exact constraint holds.
    """
    sigma = fourier_sigma(problem, frequency)
    return network_for(
        problem,
        lambda d, lower, upper: MLP(
            d,
            len(problem.components),
            width,
            depth,
            activation,
            init,
            lower,
            upper,
            max(1, width // 2),
            sigma,
            seed,
            dtype,
        ),  # fmt: skip
        correction=True,
    )


# --------------------------------------------------------------------------- the chain


@dataclass
class StageResult:
    """One network of a multi-stage run: its scale ε, the f_d it was built for, its training.

    ``frequency`` is None for network 1. ``result`` is what the stage's trainer
    returned: its losses are of the objective it trained, the residual divided by
    ε (see :func:`fit_stages`); :attr:`final_loss` and :attr:`loss_terms` are the
    composite's plain losses, ½ Σ_k w_k mean r_k², comparable across stages. The
    errors are the composite's after this network was trained.
    """

    network: int
    epsilon: float
    frequency: float | None
    result: TrainResult

    @property
    def loss_scale(self) -> float:
        """ε²: the stage's trainer saw the loss divided by this."""
        return self.epsilon**2

    @property
    def final_loss(self) -> float:
        return self.result.final_loss * self.loss_scale

    @property
    def loss_terms(self) -> dict[str, float]:
        return {k: v * self.loss_scale for k, v in self.result.loss_terms.items()}

    def summary(self) -> dict[str, Any]:
        r = self.result
        return {
            "network": self.network,
            "status": r.status,
            "rel_l2": r.rel_l2,
            "max_abs_error": r.max_abs_error,
            "final_loss": self.final_loss,
            "steps": r.steps,
            "wall_time_s": round(r.wall_time_s, 3),
            "epsilon": self.epsilon,
            "frequency": self.frequency,
        }


@dataclass
class MultiStageResult:
    """The final composite model, its last trainer, and every stage's result.

    ``history`` joins the stages' histories with a ``network`` column (1, 2, …);
    ``step`` and ``time`` run on across networks.
    """

    model: nn.Module
    trainer: Trainer
    stages: list[StageResult]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> TrainResult:
        return self.stages[-1].result


NetworkFactory = Callable[[int, float], nn.Module]


def fit_stages(
    trainer: Trainer,
    networks: int,
    network: NetworkFactory,
    term: str | None = None,
    n_per_dim: int | None = None,
    rule: str = "error",
) -> MultiStageResult:
    """Train ``trainer`` (stage 1), then ``networks − 1`` more stages on what it left over.

    Before stage k ≥ 2, the composite's residual gives f_d and ε_k
    (:func:`analyze_residual` with ``term``, ``n_per_dim`` and ``rule``);
    ``network(k, f_d)`` returns the untrained u_k (e.g.
    ``lambda k, f: fourier_mlp(problem, f, seed=k)``, in the model's dtype and
    device), and a new :class:`Trainer` trains the :class:`NetworkSum` of all
    networks so far over the same points, optimizer chain, settings, evaluator, run
    directory and callbacks. Its objective has the same weights divided by ε_k²,
    so the optimizer sees the residual divided by ε_k, of order one: as in the
    paper, u_k is trained on a normalized target, and learning rates, damping and
    tolerances keep the meaning they had in stage 1 (Adam's ε = 1e-8, for one,
    would swamp gradients of order ε_k²). A stage that ends ``nan``,
    ``interrupted`` or ``stopped`` ends the chain. Stage k's time limit and step
    budget are the settings' (per stage, not in total).
    """
    if networks < 1:
        raise ValueError(f"networks must be >= 1, got {networks}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    objective = trainer.objective
    problem = objective.problem
    result = trainer.fit()
    stages = [StageResult(1, 1.0, None, result)]
    parts, scales = [trainer.model], [1.0]
    for k in range(2, networks + 1):
        if result.status in STOP_STATUSES:
            break
        summary = analyze_residual(problem, trainer.model, term, n_per_dim, rule)
        eps = summary.epsilon
        if not (math.isfinite(eps) and eps > 0):  # a residual of exactly zero: nothing to fit
            break
        p = next(parts[0].parameters())
        parts.append(network(k, summary.frequency).to(device=p.device, dtype=p.dtype))
        scales.append(eps)
        model = NetworkSum(parts, scales)
        weights = {name: w / eps**2 for name, w in objective.weights.items()}
        trainer = Trainer(
            Objective(problem, model, objective.points, weights, objective.counts),
            trainer.stages,
            trainer.settings,
            trainer.evaluator,
            out_dir=trainer.out_dir,
            callbacks=trainer.callbacks,
            metadata=trainer.metadata,
        )
        result = trainer.fit()
        stages.append(StageResult(k, eps, summary.frequency, result))
    return MultiStageResult(trainer.model, trainer, stages, joined_history(stages))


def joined_history(stages: list[StageResult]) -> list[dict[str, Any]]:
    """The stages' history rows with a ``network`` column, running step and time, and the
    composite's plain losses (each stage's losses times its ε²)."""
    rows: list[dict[str, Any]] = []
    step0, time0 = 0, 0.0
    for s in stages:
        for row in s.result.history:
            losses = {k: v * s.loss_scale for k, v in row.items() if k.startswith("loss")}
            rows.append(
                {**row, **losses, "step": row["step"] + step0,
                 "time": round(row["time"] + time0, 4), "network": s.network}
            )  # fmt: skip
        step0 += s.result.steps
        time0 += s.result.wall_time_s
    return rows

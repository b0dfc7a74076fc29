"""A task family of PINN problems of several PDE kinds and networks, to meta-train an
optimizer that is meant for PINNs in general rather than one equation.

Every task of :class:`PDEMixFamily` (``pde_mix``) draws, from its seed, one PDE kind
of ``kinds``, one network of ``archs``, the kind's coefficients and a manufactured
solution on [0, 1] (steady kinds, input x) or [0, 1]² (evolution kinds, inputs
(x, t)):

    u(x) = Σ_k a_k sin(kπx),            u(x, t) = Σ_k a_k sin(kπx) e^{−c_k t},

k = 1 … ``modes``, a_k = z_k / k^``decay``, z_k ~ N(0, 1), c_k ~ U[0, 2]; the source f
is the operator applied to u, written out from the series (no automatic derivatives).
u = 0 at x = 0 and 1; evolution kinds also have u(x, 0) = Σ_k a_k sin(kπx) as data.

Kinds (L is the operator, L u = f):

* ``poisson``: −u''
* ``helmholtz``: −u'' − κ²u, κ ~ U[1.2π, 1.8π] (between the first two resonances)
* ``burgers``: u u' − ν u'', ν ~ U[0.05, 0.5] (steady viscous Burgers)
* ``heat``: u_t − α u_xx, α ~ U[0.05, 0.5]
* ``reaction``: −ν u'' + u³ − u, ν ~ U[0.02, 0.2] (steady Allen–Cahn-type)
* ``advection``: u_t + c u_x − ν u_xx, c ~ U[0.5, 2], ν = 0.01

The default ``kinds`` are the first four; ``reaction`` and ``advection`` are left out
of it so that a rule meta-trained on the default mixture can be scored on PDEs it has
never seen. The loss is the PINN objective ½‖r(θ)‖² (:mod:`pinnopt.objective`), the
metric the relative L2 error against u on the problem's evaluation points.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet
from pinnopt.evaluation import Evaluator
from pinnopt.learned.tasks import (
    Task,
    TaskFamily,
    _check_seed,
    _check_split,
    _positive_int,
    register_family,
)
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems.base import Box, Problem, Term

PI = math.pi
KINDS = ("poisson", "helmholtz", "burgers", "heat", "reaction", "advection")
EVOLUTION = ("heat", "advection")  # inputs (x, t)
MIXTURE = ("poisson", "helmholtz", "burgers", "heat")
ARCHS: tuple[dict[str, Any], ...] = (
    {"model": "mlp", "width": 16, "depth": 2},
    {"model": "mlp", "width": 32, "depth": 2},
    {"model": "mlp", "width": 16, "depth": 3},
    {"model": "chebykan", "width": 8, "depth": 1, "degree": 3},
)


@dataclass(frozen=True)
class _Series:
    """u = Σ_k a_k sin(kπx) e^{−c_k t} and the derivatives the operators need."""

    a: Tensor
    c: Tensor  # zeros for steady kinds

    def parts(self, x: Tensor) -> dict[str, Tensor]:
        k = torch.arange(1, len(self.a) + 1, dtype=x.dtype) * PI
        s, co = torch.sin(x[:, :1] * k), torch.cos(x[:, :1] * k)
        decay = torch.exp(-x[:, 1:2] * self.c.to(x)) if x.shape[1] > 1 else torch.ones_like(s)
        a = self.a.to(x) * decay  # (N, modes)
        return {
            "u": (s * a).sum(1),
            "u_x": (co * k * a).sum(1),
            "u_xx": -(s * k**2 * a).sum(1),
            "u_t": -(s * self.c.to(x) * a).sum(1),
        }


def _operator(kind: str, coef: float):
    """(L applied to a jet, L applied to the series' parts): the residual's operator."""
    if kind == "poisson":
        return (lambda u: -u.d2(0)), (lambda p: -p["u_xx"])
    if kind == "helmholtz":
        return (lambda u: -u.d2(0) - coef**2 * u.u), (lambda p: -p["u_xx"] - coef**2 * p["u"])
    if kind == "burgers":
        return ((lambda u: u.u * u.d(0) - coef * u.d2(0)),
                (lambda p: p["u"] * p["u_x"] - coef * p["u_xx"]))  # fmt: skip
    if kind == "heat":
        return (lambda u: u.d(1) - coef * u.d2(0)), (lambda p: p["u_t"] - coef * p["u_xx"])
    if kind == "reaction":
        return ((lambda u: -coef * u.d2(0) + u.u**3 - u.u),
                (lambda p: -coef * p["u_xx"] + p["u"] ** 3 - p["u"]))  # fmt: skip
    if kind == "advection":
        return ((lambda u: u.d(1) + coef * u.d(0) - 0.01 * u.d2(0)),
                (lambda p: p["u_t"] + coef * p["u_x"] - 0.01 * p["u_xx"]))  # fmt: skip
    raise ValueError(f"Invalid kind: {kind!r}; allowed: {', '.join(KINDS)}")


COEFFICIENTS = {"poisson": (0.0, 0.0), "helmholtz": (1.2 * PI, 1.8 * PI), "burgers": (0.05, 0.5),
                "heat": (0.05, 0.5), "reaction": (0.02, 0.2), "advection": (0.5, 2.0)}  # fmt: skip


@register_family("pde_mix")
@dataclass(frozen=True)
class PDEMixFamily(TaskFamily):
    """PINN tasks of several PDE kinds and networks (module docstring); ``kinds`` and
    ``archs`` (dicts of :func:`pinnopt.models.build_model` options: ``model``, ``width``,
    ``depth``, ``degree``) are drawn uniformly per task. ``n_pde`` collocation points,
    ``n_bc`` boundary and (evolution kinds) ``n_bc`` initial points, float64."""

    kinds: tuple[str, ...] = MIXTURE
    archs: tuple[dict[str, Any], ...] = ARCHS
    modes: int = 4
    decay: float = 1.0
    n_pde: int = 64
    n_bc: int = 16
    name: str = "pde_mix"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "archs", tuple(dict(a) for a in self.archs))
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"Invalid kinds: {self.kinds!r}; allowed: {', '.join(KINDS)}")
        if not self.archs or any(a.get("model", "mlp") not in ("mlp", "chebykan")
                                 for a in self.archs):  # fmt: skip
            raise ValueError(f"Invalid archs: {self.archs!r} (need dicts with model mlp or "
                             "chebykan)")  # fmt: skip
        for key in ("modes", "n_pde", "n_bc"):
            _positive_int(key, getattr(self, key))
        if not (self.decay >= 0 and math.isfinite(self.decay)):
            raise ValueError(f"Invalid decay: {self.decay!r} (need 0 <= decay < inf)")

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        g = torch.Generator().manual_seed(seed)
        kind = self.kinds[int(torch.randint(len(self.kinds), (1,), generator=g))]
        arch = self.archs[int(torch.randint(len(self.archs), (1,), generator=g))]
        coef, a = _draw_coefficient_and_amplitudes(kind, self.modes, self.decay, g)
        evolution = kind in EVOLUTION
        c = 2 * torch.rand(self.modes, generator=g, dtype=torch.float64) if evolution else 0 * a
        series = _Series(a, c)
        problem = _problem(kind, coef, series, evolution, self.n_pde, self.n_bc, seed)
        points = problem.sample(g)
        evaluator = functools.cache(lambda: Evaluator(problem))
        box = problem.domain

        def init_model() -> nn.Module:
            options = {"width": 16, "depth": 2, **arch}
            return build_model(options.pop("model", "mlp"), box.dim, box.lower, box.upper,
                               seed=seed, **options)  # fmt: skip

        def loss(model: nn.Module) -> Tensor:
            return Objective(problem, model, points).loss()

        def evaluate(model: nn.Module) -> float:
            return evaluator()(model)["rel_l2"]

        info = {"problem": problem, "points": points, "kind": kind, "coefficient": coef,
                "arch": dict(arch), "amplitudes": a, "rates": c}  # fmt: skip
        return Task(self.name, split, seed, init_model, loss, evaluate, "rel_l2", info=info)


def _draw_coefficient_and_amplitudes(kind: str, modes: int, decay: float,
                                     g: torch.Generator) -> tuple[float, Tensor]:  # fmt: skip
    """The kind's coefficient, uniform in its range, and a_k = z_k / k^decay, z_k ~ N(0, 1)."""
    lo, hi = COEFFICIENTS[kind]
    coef = lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    return coef, torch.randn(modes, generator=g, dtype=torch.float64) / k**decay


def _problem(kind: str, coef: float, series: _Series, evolution: bool, n_pde: int,
             n_bc: int, seed: int) -> Problem:  # fmt: skip
    """The PINN problem L u = f with u = the series on the boundary (and at t = 0)."""
    box = Box([0.0, 0.0], [1.0, 1.0]) if evolution else Box([0.0], [1.0])
    on_jet, on_parts = _operator(kind, coef)

    def exact(x: Tensor) -> Tensor:
        return series.parts(x)["u"]

    def pde(u: Jet, x: Tensor) -> Tensor:
        return on_jet(u) - on_parts(series.parts(x))

    def data(u: Jet, x: Tensor) -> Tensor:
        return u.u - exact(x)

    if evolution:
        terms = [Term("pde", box.interior, pde, order=2, n=n_pde),
                 Term("bc", box.boundary(dims=[0]), data, order=0, n=n_bc),
                 Term("ic", box.face(1, "lower"), data, order=0, n=n_bc)]  # fmt: skip
        names: tuple[str, ...] = ("x", "t")
    else:
        terms = [Term("pde", box.interior, pde, order=2, n=n_pde),
                 Term("bc", box.boundary(), data, order=0, n=n_bc)]  # fmt: skip
        names = ("x",)
    text = f"{kind} (coefficient {coef:.3g}), manufactured u, seed {seed}"
    return Problem(f"{kind}_random", box, terms, exact, names, text)


@register_family("pde_fit")
@dataclass(frozen=True)
class PDEFitFamily(TaskFamily):
    """Few-shot, physics-informed fits of PDE solutions: each task is a steady problem of
    :class:`PDEMixFamily` (a kind of ``kinds``, its coefficient, a manufactured u) seen
    through ``k_shot`` observations u(x_i) at random points, with the PDE known. The loss
    is the PINN objective of the PDE residual at ``n_pde`` collocation points plus the
    observation misfit; the query set is ``k_query`` fresh points of u, the metric their
    mean squared error (a few-shot regression, as the sinusoid of Finn et al. 2017, whose
    tasks are the solutions of a PDE family). The network: an MLP 1 → 1 of ``width`` and
    ``depth`` (the same for every task, so that Meta-SGD can learn θ_0 and α for it).
    """

    kinds: tuple[str, ...] = ("poisson", "helmholtz", "burgers")
    k_shot: int = 5
    k_query: int = 100
    n_pde: int = 32
    modes: int = 4
    decay: float = 1.0
    width: int = 40
    depth: int = 2
    name: str = "pde_fit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds or any(k not in KINDS or k in EVOLUTION for k in self.kinds):
            steady = [k for k in KINDS if k not in EVOLUTION]
            raise ValueError(f"Invalid kinds: {self.kinds!r}; allowed: {', '.join(steady)}")
        for key in ("k_shot", "k_query", "n_pde", "modes", "width", "depth"):
            _positive_int(key, getattr(self, key))

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        g = torch.Generator().manual_seed(seed)
        kind = self.kinds[int(torch.randint(len(self.kinds), (1,), generator=g))]
        coef, a = _draw_coefficient_and_amplitudes(kind, self.modes, self.decay, g)
        series = _Series(a, 0 * a)
        box = Box([0.0], [1.0])
        on_jet, on_parts = _operator(kind, coef)

        def pde(u: Jet, x: Tensor) -> Tensor:
            return on_jet(u) - on_parts(series.parts(x))

        def observed(u: Jet, x: Tensor) -> Tensor:
            return u.u - series.parts(x)["u"]

        terms = [Term("pde", box.interior, pde, order=2, n=self.n_pde),
                 Term("data", box.interior, observed, order=0, n=self.k_shot)]  # fmt: skip
        text = f"{kind} (coefficient {coef:.3g}) from {self.k_shot} observations, seed {seed}"
        problem = Problem(f"{kind}_fit", box, terms, lambda x: series.parts(x)["u"], ("x",),
                          text)  # fmt: skip
        points = problem.sample(g)
        xq = torch.rand(self.k_query, 1, generator=g, dtype=torch.float64)
        yq = series.parts(xq)["u"]

        def init_model() -> nn.Module:
            return build_model("mlp", 1, [0.0], [1.0], width=self.width, depth=self.depth,
                               seed=seed)  # fmt: skip

        def loss(model: nn.Module) -> Tensor:
            return Objective(problem, model, points).loss()

        def evaluate(model: nn.Module) -> float:
            with torch.no_grad():
                return float((model(xq)[:, 0] - yq).square().mean())

        info = {"problem": problem, "points": points, "kind": kind, "coefficient": coef,
                "support": (points["data"], series.parts(points["data"])["u"]),
                "query": (xq, yq)}  # fmt: skip
        return Task(self.name, split, seed, init_model, loss, evaluate, "query_mse", info=info)

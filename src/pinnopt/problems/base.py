"""Problems: a domain, named residual terms and an exact or reference solution.

A problem is data, not a class hierarchy: a :class:`Box` to sample from, a list
of :class:`Term` (each a sampler plus a residual function of the network's jet)
and a function giving the exact or reference solution. The objective
(:mod:`pinnopt.objective`) turns the terms into a least-squares problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet, jet
from pinnopt.problems.constraints import Constraint
from pinnopt.problems.geometry import Box, Geometry  # noqa: F401 (Box re-exported)
from pinnopt.problems.unknowns import Unknown

Sampler = Callable[[int, torch.Generator], Tensor]
Residual = Callable[[Jet, Tensor], Tensor]


@dataclass
class Term:
    """One residual term r_k(x; θ), evaluated at ``n`` points drawn by ``sampler``.

    ``order`` is the highest input-derivative order the residual reads from the jet
    (0: value only, 1: gradient, 2: Hessian diagonal); lower orders are cheaper.
    ``trace`` (order 2) says the residual reads only the Laplacian ``u.laplacian()``:
    the jet then carries Σ_i ∂²u/∂x_i² instead of every ∂²u/∂x_i², which is cheaper.
    """

    name: str
    sampler: Sampler
    residual: Residual
    order: int = 2
    n: int = 1000
    weight: float = 1.0
    trace: bool = False
    # observed values carried as the last columns of each point (observation data): the
    # network sees x[:, :-data_columns], the residual sees the whole row
    data_columns: int = 0
    # the problem's output names, set by Problem: the jet reads components by name
    components: tuple[str, ...] = field(default=("u",), repr=False)

    def __post_init__(self) -> None:
        if self.order not in (0, 1, 2):
            raise ValueError(f"term {self.name!r}: order must be 0, 1 or 2, got {self.order}")
        if self.trace and self.order != 2:
            raise ValueError(f"term {self.name!r}: trace needs order 2, got {self.order}")
        if self.n < 1:
            raise ValueError(f"term {self.name!r}: n must be >= 1, got {self.n}")
        if self.weight < 0:
            raise ValueError(f"term {self.name!r}: weight must be >= 0, got {self.weight}")
        if self.data_columns < 0:
            raise ValueError(
                f"term {self.name!r}: data_columns must be >= 0, got {self.data_columns}"
            )

    def evaluate(self, model: nn.Module, x: Tensor, where: str = "") -> Tensor:
        """r_k(x; θ) at points x (N, d): the residual of the model's jet, checked to be (N,).

        Any other shape (say (N, 1), which would broadcast or fail deep inside torch
        later) raises ValueError naming the term; ``where`` adds context to that
        message. The check compares shapes only (no device sync): it runs every step.

        With ``data_columns`` k > 0 the last k columns of x are observed values: the
        network sees x[:, :-k] and the residual the whole x. A model's trainable physical
        parameters (its ``unknowns``, :mod:`pinnopt.problems.unknowns`) reach the residual
        through the jet, ``u.unknown(name)``; they are read from the model here, so that
        ``torch.func.functional_call`` (the Jacobian) substitutes them like any weight.
        """
        inputs = x[:, : x.shape[1] - self.data_columns] if self.data_columns else x
        u = jet(model, inputs, self.order, self.trace)
        u.names = self.components
        u.unknowns = getattr(model, "unknowns", None) or {}
        r = self.residual(u, x)
        n = x.shape[0]
        if not isinstance(r, Tensor):
            raise ValueError(
                f"term {self.name!r}: residual must return a tensor of shape (N,) = ({n},)"
                f"{where}, got {type(r).__name__}"
            )
        if r.shape != (n,):
            raise ValueError(
                f"term {self.name!r}: residual must have shape (N,) = ({n},){where}, "
                f"got {tuple(r.shape)}"
            )
        return r


@dataclass
class Problem:
    """A PDE on a box: residual terms plus the exact (or reference) solution u*(x).

    ``exact`` maps points (N, d) float64 to values (N,) float64; :meth:`reference`
    calls it and checks that. ``input_names`` label the coordinates in plots and
    tables (e.g. ``("x", "t")``). Each term's ``sampler(n, generator)`` returns
    (n, d) float64 points and its ``residual(u, x)`` returns shape (n,).

    ``components`` names the network's outputs (one by default, ``("u",)``); a system
    such as ``("u", "v", "p")`` has a network with one output per component, a
    residual reads component c from the jet (``u.value[:, c]``, ``u.d(i, c)``), and
    ``exact`` returns one column per component, shape (N, C).
    """

    name: str
    domain: Geometry
    terms: list[Term]
    exact: Callable[[Tensor], Tensor]
    input_names: tuple[str, ...] = ()
    description: str = ""
    eval_grid: int = 0  # points per axis of the evaluation grid; 0 picks by dimension
    eval_random: int = 20000  # random evaluation points when the dimension exceeds 2
    params: dict[str, float] = field(default_factory=dict)
    components: tuple[str, ...] = ("u",)
    # input index -> period: the network sees that coordinate through cos and sin, so
    # the solution is periodic by construction (pinnopt.models.transforms.PeriodicInputs)
    periodic: dict[int, float] = field(default_factory=dict)
    # trainable physical parameters of an inverse problem, by name (problems.unknowns)
    unknowns: dict[str, Unknown] = field(default_factory=dict)
    # u = g + d·N imposing some conditions exactly (problems.constraints); ``constrained``
    # says it is in force (Problem.with_exact_constraint), its terms then left out
    constraint: Constraint | None = None
    constrained: bool = False

    def __post_init__(self) -> None:
        self.components = tuple(self.components)
        if not self.components or len(set(self.components)) != len(self.components):
            raise ValueError(
                f"problem {self.name!r}: components must be unique names, at least one, "
                f"got {self.components}"
            )
        for term in self.terms:
            term.components = self.components
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"problem {self.name!r}: term names must be unique, got {names}")
        if not self.input_names:
            self.input_names = tuple(f"x{i}" for i in range(self.dim))
        self.periodic = {int(i): float(p) for i, p in self.periodic.items()}
        for i, period in self.periodic.items():
            if not 0 <= i < self.dim:
                raise ValueError(
                    f"problem {self.name!r}: periodic input {i} does not exist; "
                    f"inputs are 0..{self.dim - 1} ({', '.join(self.input_names)})"
                )
            if not (math.isfinite(period) and period > 0):
                raise ValueError(
                    f"problem {self.name!r}: period of input {i} must be > 0, got {period}"
                )
        for name, unknown in self.unknowns.items():
            if not isinstance(unknown, Unknown):
                raise ValueError(
                    f"problem {self.name!r}: unknown {name!r} must be an Unknown(initial=...), "
                    f"got {type(unknown).__name__}"
                )
        if self.constraint is not None:
            missing = set(self.constraint.replaces) - {t.name for t in self.terms}
            if missing and not self.constrained:
                raise ValueError(
                    f"problem {self.name!r}: the exact constraint replaces term(s) "
                    f"{sorted(missing)}, which the problem does not have; terms: {names}"
                )
        elif self.constrained:
            raise ValueError(f"problem {self.name!r}: constrained without a constraint")

    def with_exact_constraint(self) -> Problem:
        """This problem with its conditions imposed exactly: the terms that the constraint
        replaces are left out, and models built for it carry u = g + d·N."""
        if self.constraint is None:
            raise ValueError(f"problem {self.name!r} declares no exact constraint")
        if self.constrained:
            return self
        kept = [t for t in self.terms if t.name not in self.constraint.replaces]
        return replace(self, terms=kept, constrained=True)

    @property
    def dim(self) -> int:
        return self.domain.dim

    @property
    def time_axis(self) -> int | None:
        """The index of the input named ``"t"`` (time), or None for a problem without one.

        Causal training and time marching (:mod:`pinnopt.train.causal`,
        :mod:`pinnopt.train.time_marching`) act along this axis.
        """
        return self.input_names.index("t") if "t" in self.input_names else None

    def term(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def sample(
        self, generator: torch.Generator, counts: dict[str, int] | None = None
    ) -> dict[str, Tensor]:
        """Collocation points of every term (float64), ``counts`` overriding the defaults."""
        counts = counts or {}
        unknown = set(counts) - {t.name for t in self.terms}
        if unknown:
            allowed = [t.name for t in self.terms]
            raise ValueError(
                f"unknown term(s) {sorted(unknown)} for {self.name}; allowed: {allowed}"
            )
        for name, n in counts.items():
            if n < 1:
                raise ValueError(f"points of term {name!r} must be >= 1, got {n}")
        return {t.name: t.sampler(counts.get(t.name, t.n), generator) for t in self.terms}

    def reference(self, x: Tensor) -> Tensor:
        """The exact (or reference) solution u*(x) at points x (N, d), checked, as float64.

        Every consumer of ``exact`` should call this instead: it refuses an output that
        is not a real tensor of shape (N,) with finite values, which would otherwise
        broadcast against (N,) predictions into a silently wrong error.
        """
        n = x.shape[0]
        values = self.exact(x)
        if not isinstance(values, Tensor):
            raise ValueError(
                f"problem {self.name!r}: exact must return a torch.Tensor of shape (N,) "
                f"for N points, got {type(values).__name__}"
            )
        shape = (n,) if len(self.components) == 1 else (n, len(self.components))
        if values.shape != shape:
            what = "(N,)" if len(shape) == 1 else f"(N, C) for C = {shape[1]} components"
            raise ValueError(
                f"problem {self.name!r}: exact must return shape {what} for N points, "
                f"here {shape}, got {tuple(values.shape)}"
            )
        if values.is_complex() or values.dtype == torch.bool:
            raise ValueError(
                f"problem {self.name!r}: exact must return real numbers (a float or integer "
                f"dtype), got {values.dtype}"
            )
        values = values.to(torch.float64)
        bad = ~torch.isfinite(values)
        if bad.any():
            first = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"problem {self.name!r}: exact returned {int(bad.sum())} non-finite value(s) "
                f"(NaN or Inf) at {n} points, the first at x = {x[first].tolist()}"
            )
        return values

    def evaluation_points(self) -> Tensor:
        """Fixed points where the error against the exact solution is measured (float64).

        Dimension 1 or 2: a tensor-product grid with ``eval_grid`` points per axis (by
        default 1001 in 1-D, 101 in 2-D) over the bounding box, restricted to the closed
        domain when it is not a box (``Geometry.grid``). Higher dimensions: ``eval_random`` uniform
        random points drawn with a fixed seed (``eval_grid`` is not used).
        """
        if self.dim <= 2:
            n = self.eval_grid or (1001 if self.dim == 1 else 101)
            return self.domain.grid(n)
        g = torch.Generator().manual_seed(12345)
        return self.domain.interior(self.eval_random, g)

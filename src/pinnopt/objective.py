"""The one contract: a PINN is a least-squares problem.

For residual terms k with weights w_k evaluated at N_k points,

    r(θ) = [ sqrt(w_k / N_k) · r_k(x_i; θ) ]_k,i        loss(θ) = ½ ‖r(θ)‖²,

so that loss = Σ_k ½ w_k · mean_i r_k(x_i; θ)². A term may also carry per-point
multipliers m_k,i ≥ 0 (:meth:`Objective.set_point_weights`: self-adaptive and
residual-based-attention weights, causal weights), which scale its rows once more,

    r(θ) = [ sqrt(w_k / N_k) · m_k,i · r_k(x_i; θ) ]_k,i,

so every optimizer, curvature ones included, sees them as rescaled residual rows.
This module is the single place
where residuals become a loss: first-order optimizers see :meth:`Objective.loss`,
curvature optimizers see :meth:`Objective.residual_vector` and its Jacobian
(:meth:`Objective.jacobian`, or JᵀJ and Jᵀr summed over blocks of points by
:meth:`Objective.normal_equations` when J is too large to hold, or these through a
:class:`ResidualClosure`); a residual
vector's loss is :meth:`Objective.loss_of` (per term :meth:`Objective.term_losses`),
and a term's residual at other points (a grid, fresh samples) is
:meth:`Objective.residuals_at` (:func:`term_residuals` for a bare model).

Things that change during training change here, through one path: loss
weighting calls :meth:`Objective.set_weights` (w_k) or
:meth:`Objective.set_point_weights` (m_k,i), adaptive sampling calls
:meth:`Objective.set_points` (which drops the point weights of the terms whose points
it replaces: they belonged to the old points); each notifies the callbacks registered with
:meth:`Objective.subscribe` with what changed (``"weights"`` or ``"points"``),
and the trainer hands that on to its optimizer's ``objective_changed(what)``
when it has one. What each optimizer keeps is decided on purpose: L-BFGS drops
its curvature pairs (s, y), which belong to the old objective, and keeps its loss
scale (:meth:`pinnopt.optim.lbfgs.LBFGS.objective_changed`); Gauss–Newton / LM
keep their damping (a fresh Jacobian is formed every step, and the damping is a
trust-region size, not a model of the old loss); K-FAC keeps its running Kronecker
factors (they are exponential averages that decay towards the new objective);
the dense quasi-Newton methods keep their inverse Hessian H (a preconditioner of a
nearby loss; :meth:`pinnopt.optim.quasi_newton.QuasiNewton.objective_changed`);
first-order optimizers keep their moments (likewise running averages).
``benchmarks/objective_change.py`` measures each choice against its opposite.

N_k is the number of points of term k held here, unless ``counts`` gives the
global number (points sharded across processes): then every shard's r is a
slice of the one global r and the shards' losses add up to the global loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from pinnopt.problems.base import Problem, Term

# per-point Jacobian rows are built in chunks of at most this many entries (points × params)
JACOBIAN_CHUNK_ENTRIES = 2**24
# ... and for the normal equations, whose peak memory is set by the chunk (the vmapped
# backward holds a few times chunk × params), in smaller ones: as fast from ~500 points up
NORMAL_EQUATIONS_CHUNK_ENTRIES = 2**20
# residuals without a graph (residuals_at) are evaluated in chunks of this many points
RESIDUAL_CHUNK = 4096
# what can change during training (the argument of the change callbacks)
CHANGES = ("points", "weights")


@torch.no_grad()
def term_residuals(term: Term, model: nn.Module, x: Tensor, chunk: int = RESIDUAL_CHUNK) -> Tensor:
    """Unweighted residual r_k of ``term`` at points ``x``, without a graph, ``chunk`` at a time.

    ``x`` is moved to the dtype and device of the model's first parameter; the
    result stays there, shape (len(x),). :meth:`Objective.residuals_at` is this
    for an objective's model; it is here too for callers that hold a model alone.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    p = next(model.parameters())
    x = x.to(device=p.device, dtype=p.dtype)
    values = [term.evaluate(model, x[i : i + chunk]).detach() for i in range(0, x.shape[0], chunk)]
    return torch.cat(values)


class Objective:
    """Weighted least-squares objective of a problem's residual terms for one model.

    ``points`` maps term names to collocation points (already in the model's dtype
    and device); ``weights`` overrides the terms' default weights w_k; ``counts``
    gives the global N_k of some terms (points sharded across processes), used in
    sqrt(w_k / N_k) instead of the number of points held here. Change points and
    weights during training with :meth:`set_points` and :meth:`set_weights`, which
    notify the callbacks registered with :meth:`subscribe`.
    """

    def __init__(
        self,
        problem: Problem,
        model: nn.Module,
        points: dict[str, Tensor],
        weights: dict[str, float] | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        names = [t.name for t in problem.terms]
        missing = set(names) - set(points)
        if missing:
            raise ValueError(f"points missing for term(s) {sorted(missing)}")
        self.problem = problem
        self.model = model
        self.points = points
        self.weights = self._checked_weights(weights or {}, defaults=True)
        self.counts = self._checked_counts(counts or {})
        self.point_weights: dict[str, Tensor] = {}
        self._listeners: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------ changes

    def _names(self) -> list[str]:
        return [t.name for t in self.problem.terms]

    def _unknown(self, given, what: str) -> None:
        unknown = set(given) - set(self._names())
        if unknown:
            raise ValueError(
                f"unknown term(s) {sorted(unknown)} in {what}; allowed: {self._names()}"
            )

    def _checked_weights(self, weights: dict[str, float], defaults: bool) -> dict[str, float]:
        """All terms' weights: ``weights`` over the terms' defaults (or the current ones)."""
        self._unknown(weights, "weights")
        base = {t.name: t.weight for t in self.problem.terms} if defaults else self.weights
        out = {k: float(weights.get(k, w)) for k, w in base.items()}
        for name, w in out.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of term {name!r} must be finite and >= 0, got {w}")
        return out

    def _checked_counts(self, counts: dict[str, int]) -> dict[str, int]:
        self._unknown(counts, "counts")
        for name, n in counts.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"count of term {name!r} must be an integer >= 1, got {n!r}")
        return dict(counts)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(what)`` after every change (``what`` in :data:`CHANGES`);
        returns a function that unsubscribes it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def _changed(self, what: str) -> None:
        for callback in list(self._listeners):
            callback(what)

    def set_points(self, points: dict[str, Tensor], counts: dict[str, int] | None = None) -> None:
        """Replace the points of the terms in ``points`` (others keep theirs), and the
        global counts of those in ``counts``; then notify the subscribers of ``"points"``.

        ``points`` must already be in the model's dtype and device. ``self.points``
        becomes a new dict, so an objective that shared the old one keeps it. The point
        weights of the terms in ``points`` are dropped (they belonged to the old points).
        """
        self._unknown(points, "points")
        counts = self._checked_counts(counts or {})
        self.points = {**self.points, **points}
        self.counts = {**self.counts, **counts}
        self.point_weights = {k: m for k, m in self.point_weights.items() if k not in points}
        self._changed("points")

    def set_weights(self, weights: dict[str, float]) -> None:
        """Set w_k of the terms in ``weights`` (others keep theirs); then notify the
        subscribers of ``"weights"``. ValueError for an unknown term or a weight that is
        not finite and >= 0 (and then nothing changes)."""
        self.weights = self._checked_weights(weights, defaults=False)
        self._changed("weights")

    def set_point_weights(self, weights: dict[str, Tensor | None]) -> None:
        """Set the per-point multipliers m_k,i of the terms in ``weights`` (None: remove
        them, i.e. all ones); then notify the subscribers of ``"weights"``.

        Each tensor has one entry per point of its term, finite and >= 0; it is stored
        detached, in the points' dtype and device. ValueError naming the term otherwise
        (and then nothing changes).
        """
        self._unknown(weights, "point weights")
        new = dict(self.point_weights)
        for name, m in weights.items():
            if m is None:
                new.pop(name, None)
                continue
            x = self.points[name]
            m = torch.as_tensor(m).detach().to(device=x.device, dtype=x.dtype)
            if m.shape != (x.shape[0],):
                raise ValueError(
                    f"point weights of term {name!r} must have shape ({x.shape[0]},), "
                    f"got {tuple(m.shape)}"
                )
            if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
                raise ValueError(f"point weights of term {name!r} must be finite and >= 0")
            new[name] = m
        self.point_weights = new
        self._changed("weights")

    # ------------------------------------------------------------------ residuals and loss

    def scale(self, term: str, n: int) -> float:
        """sqrt(w_k / N_k) of term ``term``, with N_k its global count or else ``n``."""
        return math.sqrt(self.weights[term] / self.counts.get(term, n))

    def residuals_at(
        self,
        points: dict[str, Tensor] | Tensor,
        term: str | None = None,
        chunk: int = RESIDUAL_CHUNK,
    ) -> dict[str, Tensor] | Tensor:
        """Unweighted residuals at other points, without a graph (:func:`term_residuals`).

        ``points`` a tensor: the residual of ``term`` there (shape (len(points),));
        a dict: the residual of every term it names (``term`` must then be None).
        """
        if isinstance(points, Tensor):
            if term is None:
                raise ValueError("term is needed when points is a tensor")
            return term_residuals(self._term(term), self.model, points, chunk)
        if term is not None:
            raise ValueError("term must be None when points is a dict (its keys are the terms)")
        self._unknown(points, "points")
        return {k: term_residuals(self._term(k), self.model, x, chunk) for k, x in points.items()}

    def _term(self, name: str) -> Term:
        for t in self.problem.terms:
            if t.name == name:
                return t
        raise ValueError(f"unknown term {name!r}; allowed: {self._names()}")

    def residuals(self) -> dict[str, Tensor]:
        """Unweighted residuals r_k at every term's points, each of shape (N_k,).

        A residual of any other shape raises ValueError naming its term.
        """
        out = {}
        for term in self.problem.terms:
            x = self.points[term.name]
            out[term.name] = term.evaluate(self.model, x)
        return out

    def row_scale(self, term: str, n: int) -> float | Tensor:
        """sqrt(w_k / N_k) · m_k,i of the ``n`` rows of term ``term``: a number, or a
        tensor of shape (n,) when the term has point weights."""
        scale = self.scale(term, n)
        m = self.point_weights.get(term)
        return scale if m is None else m * scale

    def weighted(self, residuals: dict[str, Tensor]) -> dict[str, Tensor]:
        """sqrt(w_k / N_k) · m_k,i · r_k for every term."""
        return {k: r * self.row_scale(k, r.numel()) for k, r in residuals.items()}

    def residual_vector(self) -> Tensor:
        """r(θ): all weighted residuals concatenated, shape (Σ N_k,)."""
        return torch.cat(list(self.weighted(self.residuals()).values()))

    def pass_sizes(self) -> list[int]:
        """Points per term, in term order: each term is one forward pass of the model with
        one residual per point, and r(θ) joins them in this order (K-FAC reads this)."""
        return [self.points[t.name].shape[0] for t in self.problem.terms]

    def split(self, r: Tensor) -> dict[str, Tensor]:
        """The slices of a residual vector (or of Jacobian rows) that belong to each term."""
        return dict(zip(self.weights, torch.split(r, self.pass_sizes())))

    @staticmethod
    def loss_of(r: Tensor) -> Tensor:
        """½ ‖r‖² of a (weighted) residual vector r, e.g. one a closure returned."""
        return 0.5 * r.dot(r)

    @staticmethod
    def _half_square(r: Tensor) -> Tensor:
        return 0.5 * r.square().sum()

    def term_losses(self, r: Tensor) -> dict[str, Tensor]:
        """Per-term losses ½ ‖r_k‖² of a residual vector r."""
        return {k: self._half_square(rk) for k, rk in self.split(r).items()}

    def loss_terms(self) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, per-term losses ½ w_k mean r_k²), with loss = ½ ‖r(θ)‖² their sum."""
        parts = {k: self._half_square(r) for k, r in self.weighted(self.residuals()).items()}
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
        The rows are built in blocks of points (:meth:`_jacobian_blocks`) and copied into
        J as they come, so J is held once (M·P entries) plus one block.
        """
        r_parts, jac, row = [], None, 0
        for r, rows in self._jacobian_blocks(params):
            if jac is None:
                jac = rows.new_empty(sum(self.pass_sizes()), rows.shape[1])
            jac[row : row + rows.shape[0]] = rows
            row += rows.shape[0]
            r_parts.append(r)
        if jac is None:
            raise ValueError("the objective has no points: no Jacobian to form")
        return torch.cat(r_parts), jac

    @torch.no_grad()
    def normal_equations(
        self, params: Sequence[Tensor] | None = None, chunk: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(r(θ), JᵀJ, Jᵀr) without forming J: summed over blocks of ``chunk`` points.

        With J split into row blocks J_c (and r into r_c), JᵀJ = Σ_c J_cᵀJ_c and
        Jᵀr = Σ_c J_cᵀr_c, so only one block is held at a time: P² + chunk·P entries
        (plus the M entries of r) instead of the M·P of :meth:`jacobian`, whose blocks
        these are (:meth:`_jacobian_blocks`, same ``params`` and order of columns).
        ``chunk`` defaults to :data:`NORMAL_EQUATIONS_CHUNK_ENTRIES` // P points.
        """
        r_parts: list[Tensor] = []
        gram = grad = None
        for r, rows in self._jacobian_blocks(params, chunk, NORMAL_EQUATIONS_CHUNK_ENTRIES):
            if gram is None:
                n = rows.shape[1]
                gram = torch.zeros(n, n, dtype=rows.dtype, device=rows.device)
                grad = torch.zeros(n, dtype=rows.dtype, device=rows.device)
            gram.addmm_(rows.t(), rows)
            grad.addmv_(rows.t(), r)
            r_parts.append(r)
        if gram is None:
            raise ValueError("the objective has no points: no normal equations to form")
        return torch.cat(r_parts), gram, grad

    def _jacobian_blocks(
        self,
        params: Sequence[Tensor] | None = None,
        chunk: int | None = None,
        entries: int | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(r_c, J_c) for consecutive blocks of at most ``chunk`` points of each term, in the
        order of r(θ): the weighted residuals and their Jacobian rows (see :meth:`jacobian`).

        ``chunk`` defaults to ``entries`` (:data:`JACOBIAN_CHUNK_ENTRIES`) // P points. The
        rows are scaled by :meth:`row_scale` (w_k, N_k and the point weights of the block).
        """
        params = self._trainable() if params is None else list(params)
        names = self._parameter_names(params)  # checked here, not at the first block
        if chunk is None:
            entries = JACOBIAN_CHUNK_ENTRIES if entries is None else entries
            chunk = max(1, entries // max(1, sum(p.numel() for p in params)))
        elif chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return self._row_blocks(params, names, chunk)

    @torch.no_grad()
    def _row_blocks(
        self, params: list[Tensor], names: list[str], chunk: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        values = {name: p.detach() for name, p in zip(names, params)}
        for term in self.problem.terms:
            x = self.points[term.name]
            scale = self.row_scale(term.name, x.shape[0])
            module = _PointResidual(self.model, term)

            def one_point(p: dict[str, Tensor], xi: Tensor, module=module) -> Tensor:
                r = functional_call(module, p, (xi.unsqueeze(0),))[0]
                return r, r

            rows_of = vmap(jacrev(one_point, has_aux=True), (None, 0))
            for start in range(0, x.shape[0], chunk):
                xc = x[start : start + chunk]
                grads, r = rows_of(values, xc)
                rows = torch.cat([grads[n].reshape(xc.shape[0], -1) for n in names], 1)
                s = scale[start : start + chunk] if isinstance(scale, Tensor) else scale
                yield r * s, rows * (s.unsqueeze(1) if isinstance(s, Tensor) else s)

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
    :meth:`Objective.jacobian`, and ``closure.normal_equations(params)`` returns
    (r(θ), JᵀJ, Jᵀr) through :meth:`Objective.normal_equations` without holding J whole;
    optimizers that need the Jacobian use them when present and fall back to autograd
    on ``closure()`` otherwise. ``observe``, when
    given, sees the (detached) residual vector of every evaluation.
    """

    def __init__(self, objective: Objective, observe: Callable[[Tensor], None] | None = None):
        self.objective = objective
        self.observe = observe

    @property
    def pass_sizes(self) -> list[int]:
        """The objective's points per term, in the order r(θ) joins them."""
        return self.objective.pass_sizes()

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

    def normal_equations(self, params: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(r, JᵀJ, Jᵀr) through :meth:`Objective.normal_equations` (J never whole)."""
        r, gram, grad = self.objective.normal_equations(params)
        if self.observe is not None:
            self.observe(r)
        return r, gram, grad

    def without_graph(self) -> Tensor:
        """r(θ) without a graph, :data:`RESIDUAL_CHUNK` points at a time
        (:meth:`Objective.residuals_at` at the objective's points): what a trial loss needs,
        in the memory of one chunk's forward pass instead of all M points'."""
        objective = self.objective
        points = {t.name: objective.points[t.name] for t in objective.problem.terms}  # r's order
        r = torch.cat(list(objective.weighted(objective.residuals_at(points)).values()))
        if self.observe is not None:
            self.observe(r)
        return r

"""Gauss–Newton with Levenberg–Marquardt damping for losses ½‖r(θ)‖².

Each step linearizes the residual, r(θ + δ) ≈ r + Jδ with J = ∂r/∂θ, and solves the
damped normal equations

    (JᵀJ + μI) δ = −Jᵀr                                            (1)

(Levenberg 1944; Marquardt 1963). The damping μ follows the gain ratio
ρ = (L(θ) − L(θ + δ)) / (L(θ) − m(δ)) of actual to predicted reduction, where
m(δ) = ½‖r + Jδ‖² and, by (1), L(θ) − m(δ) = ½ δᵀ(μδ − Jᵀr). A step with ρ > 0 is
accepted and μ ← μ · max(1/3, 1 − (2ρ − 1)³); otherwise (a non-finite loss
included) the parameters are put back, μ ← μ·ν, ν ← 2ν and (1) is solved again
(Nielsen 1999; Madsen, Nielsen & Tingleff, "Methods for non-linear least squares
problems", 2004, §3.2). This step control lives in :mod:`pinnopt.optim.least_squares`
(rule ``"nielsen"``), shared with K-FAC.

For a linear PDE the PINN residual is r(θ) = L u_θ − f with a linear operator L,
JᵀJ is the Gramian of the energy inner product on the network's tangent space,
and (1) with μ → 0 is the energy natural gradient step of Müller & Zeinhofer,
"Achieving high accuracy with PINNs via energy natural gradient descent", ICML 2023.
``line_search=True`` adds their step-size search (the best of δ, δ/2, δ/4, …).

Five ways to solve (1), all giving the same δ (up to the CG tolerance and rounding):

* ``dense``: form J (M × P), then JᵀJ (P × P), and factor it by Cholesky — cost
  M P² + P³/3, memory M P + P² entries;
* ``chunked``: the same Cholesky solve as ``dense``, but JᵀJ and Jᵀr are summed over
  blocks of rows, JᵀJ = Σ_c J_cᵀJ_c (:meth:`pinnopt.objective.Objective.normal_equations`),
  so J is never whole — cost M P² + P³/3 like ``dense``, memory P² + chunk·P entries
  (chunk = 2²⁴ / P rows by default) instead of M P: the one for 10⁵–10⁶ collocation
  points with a network small enough to factor its P × P matrix;
* ``qr``: δ minimises ‖[J; √μ I] δ + [r; 0]‖, solved by a QR factorisation of the
  stacked (M + P) × P matrix — cost 2(M + P) P², twice ``dense``, but its error
  grows with the condition number κ(J) instead of κ(J)² (Golub & Van Loan,
  *Matrix Computations*, §5.3): the one to use when the residual must go below
  √eps·‖J‖‖δ‖, as for the blow-up profiles of :mod:`pinnopt.blowup`;
* ``woodbury``: δ = −Jᵀ (JJᵀ + μI)⁻¹ r, an M × M solve in sample space — cost
  P M² + M³/3, the cheaper one when there are fewer residuals M than parameters P;
* ``cg``: conjugate gradient on (1) with products Jv and Jᵀu by automatic
  differentiation, never forming J — memory of the autograd graph of all M
  residuals plus a few gradients, for large P.

``solver="auto"`` picks by size (see :func:`choose_solver`). The trial losses that
decide the gain ratio are evaluated without a graph (``step`` runs under
``torch.no_grad``), by the closure's ``without_graph()`` when it has one (a
:class:`pinnopt.objective.ResidualClosure`: a few thousand points at a time), so
they add only the memory of a forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinnopt.optim.least_squares import (
    LevenbergMarquardt,
    MatrixFreeJacobian,
    gain_ratio,
    scan_step_sizes,
    set_params,
)
from pinnopt.optim.registry import register_optimizer

# new names go at the end: the state stores a back end by its index here
SOLVERS = ("auto", "dense", "woodbury", "cg", "qr", "chunked")
# "auto" forms J (M × P doubles) only below this many entries, and factors at most
# a MAX_FACTOR × MAX_FACTOR matrix; beyond the first it sums JᵀJ over blocks of rows,
# beyond the second it runs conjugate gradient.
MAX_JACOBIAN_ENTRIES = 2**25
MAX_FACTOR = 6000


def choose_solver(n_residuals: int, n_params: int) -> str:
    """The back end ``solver="auto"`` uses for M residuals and P parameters.

    * J fits (M·P ≤ :data:`MAX_JACOBIAN_ENTRIES`) and min(M, P) ≤ :data:`MAX_FACTOR`:
      ``dense`` when P ≤ M (P × P factor), else ``woodbury`` (M × M factor);
    * J does not fit but P ≤ :data:`MAX_FACTOR`: ``chunked``, the ``dense`` solve with
      JᵀJ summed over blocks of rows (time M P² + P³/3, memory P² + chunk·P entries);
    * otherwise ``cg`` (matrix-free; memory of the residual graph and a few gradients).
    """
    if n_residuals * n_params <= MAX_JACOBIAN_ENTRIES and min(n_residuals, n_params) <= MAX_FACTOR:
        return "dense" if n_params <= n_residuals else "woodbury"
    return "chunked" if n_params <= MAX_FACTOR else "cg"


@register_optimizer(
    "gn",
    1.0,
    closure="residuals",
    description="Gauss-Newton / Levenberg-Marquardt (dense, chunked, Woodbury, QR or CG solve)",
)
class GaussNewton(Optimizer):
    """Levenberg–Marquardt: damped Gauss–Newton on ½‖r(θ)‖² (see the module docstring).

    ``step(closure)`` takes a closure returning the residual vector r(θ) at the
    current parameters, with its autograd graph. If the closure also has
    ``jacobian(params) -> (r, J)`` (as :class:`pinnopt.objective.ResidualClosure`
    does) the dense, Woodbury and QR back ends take J from it, and if it has
    ``normal_equations(params) -> (r, JᵀJ, Jᵀr)`` the chunked back end takes those;
    otherwise J (or JᵀJ, block by block) is built by autograd from ``closure()``.

    Args:
        lr: scale of the accepted step (1 is the Gauss–Newton step).
        damping: initial μ; adapted by the gain ratio afterwards.
        damping_min, damping_max: bounds on μ.
        solver: ``auto``, ``dense``, ``chunked``, ``woodbury``, ``cg`` or ``qr``.
        max_retries: solves per step after a rejected one; then the step leaves θ as it was.
        line_search: try δ, δ/2, …, δ/2^(line_search_steps−1) and keep the best.
        cg_tol: CG stops when ‖residual of (1)‖ ≤ cg_tol · ‖Jᵀr‖.
        cg_max_iter: CG iterations per solve.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        damping: float = 1e-3,
        damping_min: float = 1e-15,
        damping_max: float = 1e12,
        solver: str = "auto",
        max_retries: int = 20,
        line_search: bool = False,
        line_search_steps: int = 8,
        cg_tol: float = 1e-10,
        cg_max_iter: int = 500,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Invalid lr: {lr}")
        if not 0 < damping_min <= damping <= damping_max:
            raise ValueError(
                f"Invalid damping: need 0 < damping_min <= damping <= damping_max, got "
                f"{damping_min}, {damping}, {damping_max}"
            )
        if solver not in SOLVERS:
            raise ValueError(f"Invalid solver: {solver!r}; allowed: {', '.join(SOLVERS)}")
        if max_retries < 0:
            raise ValueError(f"Invalid max_retries: {max_retries}")
        if line_search_steps < 1:
            raise ValueError(f"Invalid line_search_steps: {line_search_steps}")
        if not cg_tol > 0:
            raise ValueError(f"Invalid cg_tol: {cg_tol}")
        if cg_max_iter < 1:
            raise ValueError(f"Invalid cg_max_iter: {cg_max_iter}")
        defaults = dict(
            lr=lr, damping=damping, damping_min=damping_min, damping_max=damping_max,
            solver=solver, max_retries=max_retries, line_search=line_search,
            line_search_steps=line_search_steps, cg_tol=cg_tol, cg_max_iter=cg_max_iter,
        )  # fmt: skip
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("GaussNewton takes one parameter group (it solves for all at once)")

    @property
    def _params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    @property
    def solver(self) -> str:
        """The back end of the last step ("" before the first)."""
        return SOLVERS[self._state()["solver"]] if self._state()["solver"] else ""

    def _state(self) -> dict:
        """Optimizer-wide state, kept on the first parameter so that state_dict round-trips."""
        state = self.state[self._params[0]]
        if not state:
            state.update(
                step=0, **LevenbergMarquardt.init_state(self.param_groups[0]["damping"]),
                gain_ratio=math.nan, solver=0, n_residuals=0,
            )  # fmt: skip
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """One accepted (or, after ``max_retries``, abandoned) step; returns the starting loss."""
        if closure is None:
            raise ValueError("GaussNewton needs a closure that returns the residual vector")
        group, state, params = self.param_groups[0], self._state(), self._params
        system = self._linear_system(closure, group, state, params)
        loss = system.loss()
        if not torch.isfinite(loss):
            return loss
        g = system.gradient()
        start = [p.detach().clone() for p in params]
        loss0 = float(loss)
        control = LevenbergMarquardt(group["damping_min"], group["damping_max"], "nielsen")
        for _ in range(group["max_retries"] + 1):
            mu = state["damping"]
            delta = system.solve(g, mu, group)
            if delta is not None and _negligible(g, delta, mu, loss0):
                break  # stationary to working precision: no step can lower the loss
            accepted = False
            if delta is not None:
                new_loss, predicted = self._try(closure, params, start, delta, g, mu, group)
                rho = gain_ratio(loss0 - new_loss, predicted)
                state["gain_ratio"] = rho
                accepted = math.isfinite(new_loss) and rho > 0
            if accepted:
                control.accept(state, rho)
                break
            set_params(params, start)
            control.reject(state)
            if mu >= group["damping_max"]:
                break
            if isinstance(system, _MatrixFree):  # its graph saw θ change in place: rebuild
                with torch.enable_grad():
                    system = _MatrixFree(closure().reshape(-1), params, _reduce_of(closure))
        state["step"] += 1
        return loss

    def _linear_system(self, closure, group, state, params) -> _Dense | _Normal | _MatrixFree:
        """r(θ) and the operator of (1) by the chosen back end.

        ``auto`` takes M from the closure's ``pass_sizes`` when it has them (a
        :class:`pinnopt.objective.ResidualClosure`), else from the previous step, so
        that r is evaluated once per step; a plain closure's first step (or one after a
        ``cg`` step) evaluates r with its graph to learn M.
        """
        n_params = sum(p.numel() for p in params)
        solver = group["solver"]
        r = None
        if solver == "auto":
            sizes = getattr(closure, "pass_sizes", None)
            if sizes is not None:
                n_residuals = sum(sizes)
            elif SOLVERS[state["solver"]] in ("auto", "cg"):  # "auto" before the first step
                with torch.enable_grad():
                    r = closure().reshape(-1)
                n_residuals = r.numel()
            else:
                n_residuals = state["n_residuals"]
            solver = choose_solver(n_residuals, n_params)
        if solver == "cg":
            if r is None:
                with torch.enable_grad():
                    r = closure().reshape(-1)
            system = _MatrixFree(r, params, _reduce_of(closure))
        elif solver == "chunked":
            system = _normal_equations(closure, params, r)
        else:
            jacobian = getattr(closure, "jacobian", None)
            if jacobian is not None:
                r, J = jacobian(params)
            else:
                if r is None:
                    with torch.enable_grad():
                        r = closure().reshape(-1)
                J = _autograd_jacobian(r, params)
            system = _Dense(r.detach(), J, kind=solver)
        # an index, not the name: Optimizer.load_state_dict mangles strings in state
        state["solver"], state["n_residuals"] = SOLVERS.index(solver), system.r.numel()
        return system

    def _try(self, closure, params, start, delta, g, mu, group) -> tuple[float, float]:
        """Move to θ + α·lr·δ for the best α tried; (new loss, predicted reduction at that α)."""
        gd = float(g.dot(delta))
        jd2 = max(0.0, -gd - mu * float(delta.dot(delta)))  # ‖Jδ‖² from (1)
        steps = group["line_search_steps"] if group["line_search"] else 1

        evaluate = getattr(closure, "without_graph", closure)  # no graph either way

        def loss_at(a: float) -> float:
            set_params(params, start, delta, a)
            rv = evaluate().reshape(-1)
            return float(0.5 * rv.dot(rv))

        value, a = scan_step_sizes(loss_at, [0.5**k * group["lr"] for k in range(steps)])
        set_params(params, start, delta, a)
        return value, -(a * gd + 0.5 * a * a * jd2)


def _reduce_of(closure):
    """The closure's ``reduce`` (a sum over processes that each hold a share of the
    residual rows), or None for a closure over all of them."""
    return getattr(closure, "reduce", None)


def _negligible(g: Tensor, delta: Tensor, mu: float, loss: float) -> bool:
    """True when the predicted reduction ½δᵀ(μδ − g) is below rounding of the loss."""
    predicted = 0.5 * (mu * float(delta.dot(delta)) - float(g.dot(delta)))
    return predicted <= 4 * torch.finfo(g.dtype).eps * loss


def _normal_equations(closure, params: Sequence[Tensor], r: Tensor | None) -> _Normal:
    """(1) for the ``chunked`` back end: JᵀJ and Jᵀr from the closure's
    ``normal_equations`` (blocks of points), else from its ``jacobian`` (formed whole:
    a closure that only offers J, such as a projected one, is used as it is), else
    summed over blocks of rows of J by autograd on ``closure()`` (``r``, if given,
    is its value with the graph)."""
    normal = getattr(closure, "normal_equations", None)
    if normal is not None:
        r, gram, grad = normal(params)
        return _Normal(r.detach(), gram, grad)
    jacobian = getattr(closure, "jacobian", None)
    if jacobian is not None:
        r, J = jacobian(params)
        return _Normal(r.detach(), J.t() @ J, J.t() @ r)
    if r is None:
        with torch.enable_grad():
            r = closure().reshape(-1)
    n = sum(p.numel() for p in params)
    gram = torch.zeros(n, n, dtype=r.dtype, device=r.device)
    grad = torch.zeros(n, dtype=r.dtype, device=r.device)
    for start, rows in _autograd_rows(r, params):
        gram.addmm_(rows.t(), rows)
        grad.addmv_(rows.t(), r.detach()[start : start + rows.shape[0]])
    return _Normal(r.detach(), gram, grad)


def _autograd_jacobian(r: Tensor, params: Sequence[Tensor], chunk: int = 256) -> Tensor:
    """J = ∂r/∂params row by row (batched vector–Jacobian products), for plain closures."""
    return torch.cat([rows for _, rows in _autograd_rows(r, params, chunk)])


def _autograd_rows(r: Tensor, params: Sequence[Tensor], chunk: int = 256):
    """(first row, rows) of J = ∂r/∂params, ``chunk`` rows at a time, by autograd."""
    with torch.enable_grad():
        for start in range(0, r.numel(), chunk):
            n = min(chunk, r.numel() - start)
            eye = torch.zeros(n, r.numel(), dtype=r.dtype, device=r.device)
            eye[:, start : start + n].fill_diagonal_(1.0)
            grads = torch.autograd.grad(
                r, params, eye, retain_graph=True, is_grads_batched=True, allow_unused=True
            )
            yield (
                start,
                (
                    torch.cat(
                        [
                            (
                                torch.zeros(n, p.numel(), dtype=r.dtype, device=r.device)
                                if gr is None
                                else gr.reshape(n, -1)
                            )
                            for gr, p in zip(grads, params)
                        ],
                        dim=1,
                    )  # fmt: skip
                ),
            )


def _cholesky_step(gram: Tensor, g: Tensor, mu: float) -> Tensor | None:
    """δ = −(JᵀJ + μI)⁻¹ g by Cholesky of ``gram`` + μI (the ``dense``/``chunked`` solve);
    None when the factorisation fails or δ is not finite."""
    a = gram.clone()
    a.diagonal().add_(mu)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        return None
    delta = -torch.cholesky_solve(g.unsqueeze(1), chol).squeeze(1)
    return delta if bool(torch.isfinite(delta).all()) else None


class _Normal:
    """(1) from JᵀJ and Jᵀr alone (``chunked``): J itself is not kept."""

    def __init__(self, r: Tensor, gram: Tensor, grad: Tensor) -> None:
        self.r, self.gram, self.grad = r, gram, grad

    def gradient(self) -> Tensor:
        return self.grad

    def loss(self) -> Tensor:
        return 0.5 * self.r.dot(self.r)

    def solve(self, g: Tensor, mu: float, group: dict) -> Tensor | None:
        return _cholesky_step(self.gram, g, mu)


class _Dense:
    """(1) with J formed: Cholesky of JᵀJ + μI or of JJᵀ + μI (Woodbury), or QR."""

    def __init__(self, r: Tensor, J: Tensor, kind: str) -> None:
        self.r, self.J, self.woodbury, self.qr = r, J, kind == "woodbury", kind == "qr"
        if not self.qr:
            self.gram = J @ J.t() if self.woodbury else J.t() @ J

    def gradient(self) -> Tensor:
        return self.J.t() @ self.r

    def loss(self) -> Tensor:
        return 0.5 * self.r.dot(self.r)

    def solve(self, g: Tensor, mu: float, group: dict) -> Tensor | None:
        if self.qr:
            return self._solve_qr(mu)
        if not self.woodbury:
            return _cholesky_step(self.gram, g, mu)
        a = self.gram.clone()
        a.diagonal().add_(mu)
        chol, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            return None
        # (JᵀJ + μI)⁻¹ Jᵀ = Jᵀ (JJᵀ + μI)⁻¹
        y = torch.cholesky_solve(self.r.unsqueeze(1), chol).squeeze(1)
        delta = -(self.J.t() @ y)
        return delta if bool(torch.isfinite(delta).all()) else None

    def _solve_qr(self, mu: float) -> Tensor | None:
        """argmin_δ ‖[J; √μ I] δ + [r; 0]‖ = −R⁻¹ Q₁ᵀ [r; 0] with [J; √μ I] = Q₁ R."""
        n_params = self.J.shape[1]
        eye = torch.eye(n_params, dtype=self.J.dtype, device=self.J.device)
        q, rf = torch.linalg.qr(torch.cat([self.J, math.sqrt(mu) * eye]))
        qtr = q[: self.r.numel()].t() @ self.r
        delta = -torch.linalg.solve_triangular(rf, qtr.unsqueeze(1), upper=True).squeeze(1)
        return delta if bool(torch.isfinite(delta).all()) else None


class _MatrixFree:
    """(1) by conjugate gradient with Jv and Jᵀu from a :class:`MatrixFreeJacobian`.

    ``reduce``: for a residual that is one process's share of the rows, the sum over the
    processes of what sums over rows (the loss, Jᵀr, JᵀJv); None for the whole residual."""

    def __init__(self, r: Tensor, params: Sequence[Tensor], reduce=None) -> None:
        self.jacobian = MatrixFreeJacobian(r, params)
        self.r = self.jacobian.r
        self.reduce = reduce or (lambda t: t)

    def gradient(self) -> Tensor:
        return self.reduce(self.jacobian.gradient())

    def loss(self) -> Tensor:
        return self.reduce(0.5 * self.r.dot(self.r))

    def solve(self, g: Tensor, mu: float, group: dict) -> Tensor | None:
        jac = self.jacobian

        def apply(v: Tensor) -> Tensor:
            return self.reduce(jac.jt(jac.j(v))) + mu * v

        delta = conjugate_gradient(apply, -g, group["cg_tol"], group["cg_max_iter"])
        return delta if bool(torch.isfinite(delta).all()) else None


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, tol: float, max_iter: int
                       ) -> Tensor:  # fmt: skip
    """x with apply(x) ≈ b for a symmetric positive definite ``apply`` (Hestenes–Stiefel).

    Stops when ‖b − apply(x)‖ ≤ tol·‖b‖ or after ``max_iter`` iterations.
    """
    x = torch.zeros_like(b)
    res = b.clone()
    d = res.clone()
    rr = float(res.dot(res))
    stop = tol * tol * rr
    for _ in range(max_iter):
        if rr <= stop:
            break
        ad = apply(d)
        dad = float(d.dot(ad))
        if not dad > 0:
            break
        a = rr / dad
        x.add_(d, alpha=a)
        res.sub_(ad, alpha=a)
        rr_new = float(res.dot(res))
        d.mul_(rr_new / rr).add_(res)
        rr = rr_new
    return x

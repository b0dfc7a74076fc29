"""Find the order-n Burgers profile and its rate λ: Gauss–Newton on the ansatz, three ways to λ.

The unknowns are the Chebyshev coefficients of :class:`BurgersAnsatz` and λ. The
least-squares problem (the objective of :mod:`pinnopt.objective`) has two terms at
the same collocation points y > 0 (U is odd, so y < 0 adds nothing):

    d0 = R  / (1 + y²)^(β/2),        R  = −λ U + ((1 + λ) y + U) U',
    d1 = R' · (1 + y²)^((1−β)/2),    R' = U' + U'² + ((1 + λ) y + U) U'',

R' the y-derivative of R. |U| ~ |y|^β and |U'| ~ |y|^(β−1) far away, so d0 ≈ R/|U|
and d1 ≈ R'/|U'| are relative residuals: no range of y dominates. The points are
Chebyshev nodes in the compactified coordinate ζ, which reach y ~ 1e20 and so hold
the far field. Both terms are affine in λ, which the projection and funnel modes use.

λ modes (``lambda_mode``):

* ``trainable``: λ is one more unknown of the Gauss–Newton step (the Jacobian
  carries ∂r/∂λ);
* ``projection``: λ is eliminated. With r(λ) = r₀ + λ d affine in λ, the best λ
  for the current coefficients θ is the closed form λ*(θ) = −⟨r₀, d⟩ / ⟨d, d⟩
  (d = r(1) − r(0), two evaluations), and Gauss–Newton runs on the reduced
  residual r̃(θ) = r(θ, λ*(θ)) with Kaufman's Jacobian J̃ = (I − d dᵀ/dᵀd) ∂r/∂θ —
  variable projection (Golub & Pereyra, SIAM J. Numer. Anal. 10, 1973; Kaufman,
  BIT 15, 1975). Alternating a Gauss–Newton step at fixed λ with the projection
  instead converges only linearly (λ error 1e-2 after 200 steps at n = 1);
* ``funnel``: train the bare ansatz at fixed λ until the loss stops falling (at
  most ``funnel_steps`` steps) and read the signed residual s(λ) = λ*(U_λ) − λ, the
  correction the trained profile asks for. s = −⟨r, d⟩ / ⟨d, d⟩ is −dL*/dλ up to a
  positive factor (envelope theorem, L*(λ) the trained loss), so it changes sign
  at the bottom of the funnel L*(λ), and near it s ≈ 0.01 (λ_n − λ) (n = 1). The
  root is bracketed by strides of doubling length in the direction of s, then
  closed in by false position (secant steps that keep the bracket). The λ with
  the smallest |s| is polished, and ``funnel_scan`` more trainings at
  λ (1 ± 10⁻ᵏ), k = 1 … ``funnel_scan``, draw the funnel around it.

Gauss–Newton runs with the QR solver (``solver="qr"``): the residual has to go to
1e-15, below what the normal equations can resolve. (Wang, Lai, Gómez-Serrano &
Buckmaster, *Discovery of unstable singularities*, 2025, do the same with
Gauss–Newton and a funnel over λ.)

A search can be cut short before any Gauss–Newton step (of the profile or of a
fixed-λ training): once ``time_limit`` seconds have passed (status ``"time_limit"``)
or once ``should_stop()`` returns True (status ``"interrupted"``). It then ends as
a finished one does, with the profile it has: the last state of the profile's
Gauss–Newton or, in a funnel search cut short, the trained fixed-λ profile with the
smallest |s| so far; the scan is skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.burgers import burgers_lambda, burgers_profile, profile_residual
from pinnopt.blowup.stopping import Stopped, stop_check
from pinnopt.derivatives import jet
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.problems.base import Box, Problem, Term

LAMBDA_MODES = ("trainable", "projection", "funnel")
CHECK_GRID = (-100.0, 100.0, 20001)  # the dense grid of the figures: y in [-100, 100]


@dataclass
class ProfileResult:
    """What :func:`find_profile` found, and how."""

    order: int
    lambda_mode: str
    lam: float
    lam0: float
    steps: int
    seconds: float
    model: BurgersAnsatz
    history: list[dict] = field(default_factory=list)  # step, loss, lambda, seconds
    funnel: list[dict] = field(default_factory=list)  # lambda, rms, signed, kind
    status: str = "completed"  # completed | time_limit | interrupted
    stages: list[dict] = field(default_factory=list)  # degree, max_residual, lambda, steps

    @property
    def lam_exact(self) -> float:
        return burgers_lambda(self.order)

    @property
    def lam_rel_error(self) -> float:
        return abs(self.lam - self.lam_exact) / self.lam_exact

    def check(self, grid: tuple[float, float, int] = CHECK_GRID) -> dict[str, float]:
        """max |R| and max |U − U_exact| on the dense grid (R with the found λ)."""
        y, u, du = evaluate(self.model, grid)
        exact, _, _ = burgers_profile(y, self.order)
        return {
            "max_residual": float(profile_residual(y, u, du, self.lam).abs().max()),
            "profile_max_error": float((u - exact).abs().max()),
        }

    def metrics(self) -> dict:
        return {
            "order": self.order,
            "lambda_mode": self.lambda_mode,
            "status": self.status,
            "lambda": self.lam,
            "lambda0": self.lam0,
            "lambda_exact": self.lam_exact,
            "lambda_rel_error": self.lam_rel_error,
            **self.check(),
            "steps": self.steps,
            "seconds": self.seconds,
            "degree": self.model.degree,
            "stages": self.stages,
        }


def evaluate(model: BurgersAnsatz, grid: tuple[float, float, int]) -> tuple[Tensor, Tensor, Tensor]:
    """(y, U, U') of the model on ``torch.linspace(*grid)``."""
    y = torch.linspace(*grid, dtype=model.lam.dtype).unsqueeze(1)
    j = jet(model, y, 1)
    return y[:, 0], j.u.detach(), j.d(0).detach()


def chebyshev_nodes(m: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The m Chebyshev points of the first kind mapped to (0, 1), decreasing."""
    return (1 + torch.cos(math.pi * (torch.arange(m, dtype=dtype) + 0.5) / m)) / 2


def profile_problem(model: BurgersAnsatz, points: int) -> tuple[Problem, dict[str, Tensor]]:
    """The least-squares problem (terms d0, d1 of the module docstring) and its points."""
    beta, order = model.beta, model.order
    y = model.y_of_zeta(chebyshev_nodes(points, model.lam.dtype)).unsqueeze(1)

    def d0(u, x: Tensor) -> Tensor:
        lam, yy = u.value[:, 1], x[:, 0]
        return profile_residual(yy, u.u, u.d(0), lam) * (1 + yy * yy) ** (-beta / 2)

    def d1(u, x: Tensor) -> Tensor:
        lam, yy, du = u.value[:, 1], x[:, 0], u.d(0)
        slope = du + du * du + ((1 + lam) * yy + u.u) * u.d2(0)
        return slope * (1 + yy * yy) ** ((1 - beta) / 2)

    def given(n: int, g: torch.Generator) -> Tensor:
        return y

    problem = Problem(
        name=f"burgers_profile_{order}",
        domain=Box([0.0], [float(y.max())]),
        terms=[Term("d0", given, d0, order=1, n=points), Term("d1", given, d1, order=2, n=points)],
        exact=lambda x: burgers_profile(x[:, 0], order)[0],
        input_names=("y",),
        description=f"self-similar Burgers profile of order {order}",
    )
    return problem, {"d0": y, "d1": y}


class _ProjectedClosure:
    """The variable-projection closure: residual and Jacobian with λ set to λ*(θ) first."""

    def __init__(self, closure: ResidualClosure, solver: ProfileSolver) -> None:
        self.closure, self.solver = closure, solver

    def __call__(self) -> Tensor:
        self.solver.model.set_lambda(self.solver.projected_lambda())
        return self.closure()

    def jacobian(self, params) -> tuple[Tensor, Tensor]:
        r0, d = self.solver.lambda_direction()
        lam = self.solver.model.lam.item() - float(r0.dot(d) / d.dot(d))
        self.solver.model.set_lambda(lam)
        r, J = self.closure.jacobian(params)
        unit = d / d.norm()
        return r, J - torch.outer(unit, unit @ J)


class ProfileSolver:
    """Gauss–Newton on one ansatz: λ trainable, eliminated (``project``) or held."""

    def __init__(self, model: BurgersAnsatz, points: int, damping: float, project: bool = False,
                 weight: float = 1.0) -> None:  # fmt: skip
        self.model = model
        problem, pts = profile_problem(model, points)
        weights = {"d0": weight, "d1": weight}  # the same on both terms: scales the loss
        self.closure = ResidualClosure(Objective(problem, model, pts, weights))
        self.step_closure = _ProjectedClosure(self.closure, self) if project else self.closure
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = GaussNewton(self.params, solver="qr", damping=damping)
        self.loss = math.inf
        self.stalled = False  # True once a step no longer lowers the loss

    def step(self) -> float:
        """One Gauss–Newton step; returns the loss after it."""
        before = self.loss
        self.optimizer.step(self.step_closure)
        self.loss = self.current_loss()
        self.stalled = not self.loss < before
        return self.loss

    @torch.no_grad()
    def current_loss(self) -> float:
        return float(self.closure.objective.loss_of(self.closure()))

    @torch.no_grad()
    def lambda_direction(self) -> tuple[Tensor, Tensor]:
        """(r at the current λ, d = ∂r/∂λ), exact because r is affine in λ."""
        lam = self.model.lam.item()
        r = self.closure()
        self.model.set_lambda(lam + 1.0)
        d = self.closure() - r
        self.model.set_lambda(lam)
        return r, d

    def projected_lambda(self) -> float:
        """argmin over λ of ‖r(λ)‖ for the current profile: λ − ⟨r, d⟩ / ⟨d, d⟩."""
        r, d = self.lambda_direction()
        return self.model.lam.item() - float(r.dot(d) / d.dot(d))


def find_profile(
    order: int,
    lam0: float,
    lambda_mode: str = "trainable",
    degree: int = 100,
    points: int = 400,
    max_steps: int = 200,
    tol: float = 1e-28,
    funnel_steps: int = 30,
    funnel_scan: int | None = None,
    damping: float = 1e-3,
    callback: Callable[[dict], None] | None = None,
    time_limit: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: Callable[[BurgersAnsatz], None] | None = None,
    checkpoint_every: int = 10,
    initial: BurgersAnsatz | None = None,
) -> ProfileResult:
    """The order-``order`` profile and λ, starting from λ = ``lam0`` and U = the bare ansatz
    (or ``initial``'s coefficients, padded with zeros up to ``degree``).

    Stops after ``max_steps`` Gauss–Newton steps, when the loss is below ``tol``, or
    when no step lowers it any more; in ``funnel`` mode the trainings at fixed λ share
    ``max_steps`` and the profile at the λ found gets ``max_steps`` more. Then
    ``funnel_scan`` (default 3 in ``funnel`` mode, 0 otherwise) draws the funnel: trainings
    of the bare ansatz at λ (1 ± 10⁻ᵏ), k = 1 … ``funnel_scan``, in any mode.
    ``callback`` sees each history record.

    Before each Gauss–Newton step the search ends early, with ``status`` "time_limit"
    once ``time_limit`` seconds have passed, or "interrupted" once ``should_stop()``
    returns True (the scan is then skipped). ``checkpoint(model)`` is called with the
    profile at the start, after every ``checkpoint_every``-th step of its Gauss–Newton
    and once a funnel search has picked its λ.
    """
    if lambda_mode not in LAMBDA_MODES:
        raise ValueError(
            f"lambda_mode must be one of {', '.join(LAMBDA_MODES)}, got {lambda_mode!r}"
        )
    counts = {"degree": degree, "points": points, "max_steps": max_steps,
              "funnel_steps": funnel_steps, "checkpoint_every": checkpoint_every}  # fmt: skip
    for name, value in counts.items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if funnel_scan is not None and not (isinstance(funnel_scan, int) and funnel_scan >= 0):
        raise ValueError(f"funnel_scan must be an integer >= 0, got {funnel_scan!r}")
    if points <= degree:
        raise ValueError(
            f"points ({points}) must exceed degree ({degree}): fewer residuals than unknowns"
        )
    if not (math.isfinite(lam0) and lam0 > 0):
        raise ValueError(f"lambda0 must be > 0, got {lam0}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
    model = BurgersAnsatz(order, lam0, degree=degree, trainable_lambda=lambda_mode == "trainable")
    if initial is not None:
        if initial.degree > degree:
            raise ValueError(f"initial degree {initial.degree} exceeds degree {degree}")
        with torch.no_grad():
            model.network.coeffs[..., : initial.degree + 1] = initial.network.coeffs
    solver = ProfileSolver(model, points, damping, project=lambda_mode == "projection")
    result = ProfileResult(order, lambda_mode, lam0, lam0, 0, 0.0, model)
    start = time.perf_counter()

    def record(kind: str = "step", loss: float | None = None, lam: float | None = None) -> None:
        entry = {
            "step": result.steps,
            "loss": solver.loss if loss is None else loss,
            "lambda": model.lam.item() if lam is None else lam,
            "seconds": time.perf_counter() - start,
            "kind": kind,
        }
        result.history.append(entry)
        if callback is not None:
            callback(entry)

    tick = stop_check(should_stop, time_limit, start)  # before each Gauss–Newton step

    def save() -> None:
        """Hand the profile to ``checkpoint``, if there is one."""
        if checkpoint is not None:
            checkpoint(model)

    profile_steps = 0  # Gauss–Newton steps of the profile itself (not of fixed-λ trainings)

    def train(until: int) -> None:
        """Gauss–Newton steps on the solver until ``until`` steps in all, tol, or a stall."""
        nonlocal profile_steps
        while result.steps < until and not solver.loss < tol:
            tick()
            solver.step()
            result.steps += 1
            profile_steps += 1
            record()
            if profile_steps % checkpoint_every == 0:
                save()
            if solver.stalled:
                return

    solver.loss = solver.current_loss()
    record("start")
    save()

    def at(lam: float, kind: str) -> tuple[float, dict]:
        """Train the bare ansatz at fixed λ until its loss stops falling (at most
        ``funnel_steps`` steps); the signed residual s(λ) and the trained state."""
        bare = BurgersAnsatz(order, lam, degree=degree, trainable_lambda=False)
        probe = ProfileSolver(bare, points, damping)
        probe.loss = probe.current_loss()
        for _ in range(funnel_steps):
            tick()
            probe.step()
            result.steps += 1
            if probe.stalled:
                break
        signed = probe.projected_lambda() - lam
        entry = {"lambda": lam, "rms": math.sqrt(2 * probe.loss), "signed": signed, "kind": kind}
        result.funnel.append(entry)
        record(kind, probe.loss, lam)
        return signed, probe.model.state_dict()

    try:
        if lambda_mode == "funnel":
            _funnel(solver, at, lambda: result.steps + funnel_steps <= max_steps)
            save()
            train(result.steps + max_steps)  # polish the profile at the λ found
        else:
            train(max_steps)
    except Stopped as stop:
        result.status = stop.status
    found = model.lam.item()
    signed = solver.projected_lambda() - found
    rms = math.sqrt(2 * solver.loss)
    result.funnel.append({"lambda": found, "rms": rms, "signed": signed, "kind": "found"})
    scan = (3 if lambda_mode == "funnel" else 0) if funnel_scan is None else funnel_scan
    if result.status == "completed":
        try:
            for k in range(1, scan + 1):  # the funnel around λ
                for sign in (-1, 1):
                    at(found * (1 + sign * 10.0 ** (-k)), "scan")
        except Stopped as stop:
            result.status = stop.status
    model.set_lambda(found)
    result.lam = found
    result.seconds = time.perf_counter() - start
    return result


def _funnel(solver: ProfileSolver, at: Callable, budget_left: Callable[[], bool]) -> None:
    """Bracket the root of the signed residual s(λ), close in by false position, and leave
    the solver at the λ with the smallest |s| and its trained profile; also when ``at``
    raises to end the search early, once the first fixed-λ training is done."""
    model = solver.model
    eps = 4 * torch.finfo(torch.float64).eps
    lam_a = model.lam.item()
    s_a, state_a = at(lam_a, "funnel")
    best = (abs(s_a), lam_a, state_a)
    try:
        # bracket: walk in the direction s points, doubling the stride, until s changes sign
        stride = max(abs(s_a), 1e-2 * lam_a)
        lam_b, s_b = lam_a, s_a
        while s_b * s_a > 0 and budget_left():
            lam_b = lam_b + math.copysign(stride, s_a)
            if lam_b <= 0:
                break
            stride *= 2
            s_new, state = at(lam_b, "funnel")
            if s_new * s_a > 0:
                lam_a, s_a = lam_b, s_new
            s_b = s_new
            best = min(best, (abs(s_new), lam_b, state), key=lambda b: b[0])
        # false position with the Illinois modification (Dowell & Jarratt, BIT 11, 1971)
        side = 0
        while s_a * s_b < 0 and abs(lam_b - lam_a) > eps * abs(lam_b) and budget_left():
            lam_c = (lam_a * s_b - lam_b * s_a) / (s_b - s_a)
            s_c, state = at(lam_c, "funnel")
            best = min(best, (abs(s_c), lam_c, state), key=lambda b: b[0])
            if s_c == 0:
                break
            if s_c * s_b < 0:
                lam_a, s_a = lam_b, s_b
                side = 0
            else:
                s_a = s_a / 2 if side == 1 else s_a
                side = 1
            lam_b, s_b = lam_c, s_c
    finally:
        model.load_state_dict(best[2])
        solver.optimizer.state.clear()
        solver.loss = solver.current_loss()


DEGREES = (100, 200, 300)  # resolution refinement: the degrees tried in turn
TARGET = 1e-13  # … until max |R| on the check grid is below this


def refine_profile(
    order: int,
    lam0: float,
    lambda_mode: str = "trainable",
    degrees: tuple[int, ...] = DEGREES,
    target: float = TARGET,
    points_per_degree: int = 4,
    **options,
) -> ProfileResult:
    """:func:`find_profile` at ``degrees[0]``, then at each next degree (warm-started from
    the last profile, points = ``points_per_degree`` × degree) while max |R| on the check
    grid is above ``target`` and the last degree lowered it at least tenfold. A ``funnel``
    search runs once; the later degrees polish its profile with λ trainable. ``options``
    go to :func:`find_profile` (``time_limit`` counts for the whole refinement; ``callback``
    sees step numbers that run on across the degrees, as the merged history has them)."""
    if not degrees or any(not (isinstance(d, int) and d >= 1) for d in degrees):
        raise ValueError(f"degrees must be integers >= 1, got {degrees!r}")
    limit = options.pop("time_limit", None)
    callback = options.pop("callback", None)
    start = time.perf_counter()
    result, previous = None, math.inf

    def show(entry: dict) -> None:  # steps count on across the degrees
        if callback is not None:
            callback({**entry, "step": entry["step"] + (0 if result is None else result.steps)})

    for degree in degrees:
        left = None if limit is None else max(limit - (time.perf_counter() - start), 1e-9)
        mode = lambda_mode if result is None or lambda_mode != "funnel" else "trainable"
        scan = options.get("funnel_scan") if result is None else 0
        step = find_profile(
            order, lam0 if result is None else result.lam, mode, degree=degree,
            points=points_per_degree * degree, time_limit=left, callback=show,
            initial=None if result is None else result.model, **{**options, "funnel_scan": scan},
        )  # fmt: skip
        worst = step.check()["max_residual"]
        stage = {"degree": degree, "max_residual": worst, "lambda": step.lam, "steps": step.steps}
        if result is not None:  # one record of the whole search: history, funnel, steps
            step.lam0, step.lambda_mode = result.lam0, result.lambda_mode
            step.history = result.history + [{**h, "step": h["step"] + result.steps}
                                             for h in step.history]  # fmt: skip
            step.funnel = [f for f in result.funnel if f["kind"] != "found"] + step.funnel
            step.steps += result.steps
            step.stages = result.stages
        step.stages.append(stage)
        step.seconds = time.perf_counter() - start
        result = step
        if worst <= target or worst > previous / 10 or step.status != "completed":
            break
        previous = worst
    return result

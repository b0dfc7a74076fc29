"""Find a self-similar profile and λ of an equation with the Hilbert-exact analytic series.

The unknowns are the coefficients of :class:`~pinnopt.blowup.analytic_series.AnalyticSeries`
and λ. The least-squares problem has, at M collocation points y > 0 (the profile is odd),

    r_i = E(f, λ)(y_i) / (1 + y_i²)^(−a/2) / √M,         (the equation, relative far away)
    r_{M+1} = f'(0) − slope,                              (the normalisation)
    r_{M+2} = λ − rule(f at 0)        (when λ is trainable and the equation has a λ rule)

and Gauss–Newton solves it with the QR back end (as for Burgers, docs/blowup.md). The
points are Chebyshev nodes in |ρ| = (1 + y²)^(−a/2) ∈ (0, 1), which reach y ~ 10¹⁰.

**Resolution refinement.** The degree starts small and grows by ``degree_step`` per stage,
each stage warm-started from the last (new coefficients zero); from degree 23 on the
w-block of the series joins and grows too (:func:`stage_plan`): until the largest
relative residual at the points is below ``target``, or two stages in a row lower it by
less than a factor 1/0.8 (it stopped improving), or the plan ends. Starting large from a
cold start lands in other minima of the loss (seen for CCF); growing keeps the iterate in
the basin of the profile.

**λ modes.**

* ``trainable``: λ starts at ``lam0`` and is one more unknown (with the rule row);
* ``funnel``: no λ is given, only a ``bracket``. λ is scanned on a grid in the bracket;
  at each λ the profile is fitted at fixed λ and the signed residual
  s(λ) = rule(f) − λ is read (it vanishes at a profile). The sign changes where the fits
  resolve a profile (both RMS residuals within a factor ``RESOLVED`` = 10 of the best fit
  of the scan: a sign change between two poor fits is noise) are the profiles in the bracket,
  ordered by decreasing λ: order 0 is the one with the largest λ (for Burgers λ_n falls
  with n). False position closes in on the chosen one, and the trainable mode polishes
  it. A bracket with too few sign changes raises :class:`BracketError`.

``funnel_scan`` K then fits at λ (1 ± 10⁻ᵏ), k = 1 … K: the residual there against the
residual at λ says how many digits of λ the solve justifies (:func:`justified_digits`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pinnopt.blowup.analytic_series import AnalyticSeries
from pinnopt.blowup.equation import ProfileEquation
from pinnopt.blowup.stopping import Stopped, stop_check
from pinnopt.optim.gauss_newton import GaussNewton

LAMBDA_MODES = ("trainable", "funnel")
CHECK_Y = (100.0, 20000, 12.0, 400)  # dense y in (0, 100], then 10^2 … 10^12, log-spaced
RESOLVED = 10.0  # a sign change counts when its fits are within this factor of the best fit


class BracketError(ValueError):
    """The bracket holds fewer resolved sign changes of s(λ) than the order asks for."""


def check_points(dtype: torch.dtype = torch.float64) -> Tensor:
    """The check grid of y ≥ 0 (the profile is odd, so this is the whole line)."""
    top, n, far, n_far = CHECK_Y
    dense = torch.linspace(0, top, n + 1, dtype=dtype)[1:]
    return torch.cat([dense, torch.logspace(2, far, n_far, dtype=dtype)[1:]])


def collocation_points(m: int, a: float, scale: float = 1.0) -> Tensor:
    """m points y > 0 at the Chebyshev nodes of |ρ| = (1 + (y/L)²)^(−a/2) in (0, 1)."""
    s = (1 + torch.cos(math.pi * (torch.arange(m, dtype=torch.float64) + 0.5) / m)) / 2
    return scale * torch.sqrt(s ** (-2 / a) - 1)


def justified_digits(funnel: list[dict], lam: float, rms: float) -> int:
    """The largest k such that the fits at λ (1 ± 10⁻ᵏ) both have an RMS residual above
    twice the found profile's ``rms``: λ is resolved to about k significant digits (0 when
    even 10 % off fits as well)."""
    digits = 0
    for k in range(1, 17):
        near = [f["rms"] for f in funnel if f["kind"] == "scan"
                and math.isclose(abs(f["lambda"] / lam - 1), 10.0**-k, rel_tol=1e-6)]  # fmt: skip
        if len(near) < 2 or min(near) <= 2 * rms:
            break
        digits = k
    return digits


class _Fit:
    """Gauss–Newton on one series at M points: λ trainable (with the rule row) or held."""

    def __init__(self, equation: ProfileEquation, model: AnalyticSeries, points: int,
                 damping: float) -> None:  # fmt: skip
        self.equation, self.model = equation, model
        self.trainable = isinstance(model.lam, torch.nn.Parameter)
        self.y = collocation_points(points, float(equation.decay(model.lam.detach())), model.scale)
        self.zero = torch.zeros(1, dtype=self.y.dtype)
        self.params = [model.coeffs] + ([model.wcoeffs] if model.wcoeffs.numel() else [])
        self.params += [model.lam] if self.trainable else []
        self.optimizer = GaussNewton(self.params, solver="qr", damping=damping)
        self.loss = self.current_loss()
        self.stalled = False

    def residual(self, coeffs: Tensor, wcoeffs: Tensor, lam: Tensor) -> Tensor:
        eq, y = self.equation, self.y
        f = self.model.fields(y, coeffs, lam, wcoeffs)
        at0 = self.model.fields(self.zero, coeffs, lam, wcoeffs)
        rows = [eq.residual(f, y, lam) / eq.weight(y, lam) / math.sqrt(len(y)),
                (at0["df"] - eq.slope).reshape(1)]  # fmt: skip
        if self.trainable and eq.lambda_rule is not None:
            rows.append((lam - eq.lambda_rule(at0)).reshape(1))
        return torch.cat(rows)

    def flat_residual(self, theta: Tensor) -> Tensor:
        """The residual of θ = (coefficients, w-block coefficients, λ if trainable)."""
        n, m = self.model.coeffs.numel(), self.model.wcoeffs.numel()
        lam = theta[n + m] if self.trainable else self.model.lam.detach()
        return self.residual(theta[:n], theta[n : n + m], lam)

    def __call__(self) -> Tensor:
        return self.residual(self.model.coeffs, self.model.wcoeffs, self.model.lam)

    def jacobian(self, params) -> tuple[Tensor, Tensor]:
        theta = torch.cat([p.detach().reshape(-1) for p in self.params])
        with torch.no_grad():
            r = self.flat_residual(theta)
        return r, torch.func.jacfwd(self.flat_residual)(theta)

    @torch.no_grad()
    def current_loss(self) -> float:
        r = self()
        return float(0.5 * r.dot(r))

    def step(self) -> float:
        before = self.loss
        self.optimizer.step(self)
        self.loss = self.current_loss()
        self.stalled = not self.loss < before
        return self.loss

    @torch.no_grad()
    def max_relative_residual(self) -> float:
        f = self.model.fields(self.y)
        eq = self.equation
        return float((eq.residual(f, self.y, self.model.lam) / eq.weight(self.y, self.model.lam))
                     .abs().max())  # fmt: skip

    @torch.no_grad()
    def signed(self) -> float:
        """rule(f) − λ: the correction of λ the fitted profile asks for."""
        at0 = self.model.fields(self.zero)
        return float(self.equation.lambda_rule(at0) - self.model.lam)


def terms(model: AnalyticSeries) -> int:
    """The number of coefficients of the series: Chebyshev terms and w-block."""
    return model.degree + 1 + model.wcoeffs.numel()


def bare_series(equation: ProfileEquation, lam: float, degree: int, scale: float,
                trainable: bool) -> AnalyticSeries:  # fmt: skip
    """The series B = c q^b with c set so that f'(0) = slope: the start of every search."""
    model = AnalyticSeries(degree, lam, equation.decay, scale, trainable_lambda=trainable)
    b = 1 - float(equation.decay(torch.tensor(lam, dtype=torch.float64)))
    with torch.no_grad():
        model.coeffs[0] = -equation.slope * scale**2 / (b * (b - 1))
    return model


@dataclass
class SeriesResult:
    """What :func:`find_series_profile` found, and how."""

    equation: ProfileEquation
    order: int
    lambda_mode: str
    lam: float
    lam0: float | None
    model: AnalyticSeries
    steps: int = 0
    seconds: float = 0.0
    status: str = "completed"  # completed | time_limit | interrupted
    history: list[dict] = field(default_factory=list)  # step, loss, lambda, degree, kind
    stages: list[dict] = field(default_factory=list)  # degree, points, loss, max residual
    funnel: list[dict] = field(default_factory=list)  # lambda, rms, signed, kind
    roots: list[tuple[float, float]] = field(default_factory=list)  # sign-change brackets

    @torch.no_grad()
    def check(self) -> dict[str, float]:
        """On :func:`check_points`: max |E|, max |E|/(1+y²)^(−a/2), the λ rule's mismatch
        and the drift of the first integral, max |I(y) − I(0)| / (1 + |λ F(y)|)."""
        eq, model = self.equation, self.model
        y = check_points()
        f = model.fields(y)
        lam = model.lam.detach()
        e = eq.residual(f, y, lam)
        out = {
            "max_residual": float(e.abs().max()),
            "max_relative_residual": float((e / eq.weight(y, lam)).abs().max()),
        }
        zero = torch.zeros(1, dtype=y.dtype)
        at0 = model.fields(zero)
        if eq.lambda_rule is not None:
            out["lambda_rule_error"] = float((eq.lambda_rule(at0) - lam).abs().max())
        if eq.first_integral is not None:
            drift = eq.first_integral(f, y, lam) - eq.first_integral(at0, zero, lam)
            out["first_integral_error"] = float((drift / (1 + (lam * f["F"]).abs())).abs().max())
        return out

    def metrics(self) -> dict:
        found = [f for f in self.funnel if f["kind"] == "found"]
        scanned = any(f["kind"] == "scan" for f in self.funnel)
        digits = justified_digits(self.funnel, self.lam, found[-1]["rms"]) if scanned else None
        return {
            "equation": self.equation.name,
            "order": self.order,
            "lambda_mode": self.lambda_mode,
            "status": self.status,
            "lambda": self.lam,
            "lambda0": self.lam0,
            "lambda_digits": digits,
            **self.check(),
            "rms_residual": found[-1]["rms"] if found else math.nan,
            "degree": self.model.degree,
            "stages": self.stages,
            "sign_changes": [list(r) for r in self.roots],
            "steps": self.steps,
            "seconds": self.seconds,
        }


def find_series_profile(
    equation: ProfileEquation,
    order: int = 0,
    lambda_mode: str = "funnel",
    lam0: float | None = None,
    bracket: tuple[float, float] | None = None,
    start_degree: int = 3,
    degree_step: int = 4,
    max_degree: int = 39,
    points_per_term: int = 4,
    stage_steps: int = 30,
    target: float = 1e-12,
    scan_points: int = 13,
    scan_degree: int = 11,
    scan_steps: int = 10,
    funnel_scan: int = 0,
    scale: float = 1.0,
    damping: float = 1e-3,
    callback: Callable[[dict], None] | None = None,
    time_limit: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: Callable[[AnalyticSeries], None] | None = None,
) -> SeriesResult:
    """The order-``order`` profile of ``equation`` and its λ (module docstring).

    ``trainable`` starts at ``lam0``; ``funnel`` searches ``bracket`` (default: the
    equation's). Before each Gauss–Newton step the search ends early with status
    "time_limit" once ``time_limit`` seconds have passed, or "interrupted" once
    ``should_stop()`` is True; ``checkpoint(model)`` sees the profile after each stage.
    """
    equation.check_order(order)
    if equation.ansatz != "analytic":
        raise ValueError(f"{equation.name} uses the {equation.ansatz} ansatz, not the series")
    if lambda_mode not in LAMBDA_MODES:
        raise ValueError(
            f"lambda_mode must be one of {', '.join(LAMBDA_MODES)}, got {lambda_mode!r}"
        )
    if lambda_mode == "trainable" and not (lam0 is not None and math.isfinite(lam0) and lam0 > 0):
        raise ValueError(f"lambda0 must be a number > 0 in trainable mode, got {lam0}")
    if lambda_mode == "funnel" and equation.lambda_rule is None:
        raise ValueError(f"the funnel needs a λ rule, which {equation.name} does not have")
    bracket = equation.bracket if bracket is None else tuple(bracket)
    if not (len(bracket) == 2 and 0 < bracket[0] < bracket[1]):
        raise ValueError(f"bracket must be two numbers 0 < lo < hi, got {bracket}")
    if not (0 <= start_degree <= max_degree and degree_step >= 1):
        raise ValueError("need 0 <= start_degree <= max_degree and degree_step >= 1")
    start = time.perf_counter()
    model = bare_series(equation, lam0 if lam0 is not None else sum(bracket) / 2,
                        start_degree, scale, trainable=True)  # fmt: skip
    result = SeriesResult(equation, order, lambda_mode, float(model.lam.detach()), lam0, model)

    def record(kind: str, loss: float, lam: float, degree: int) -> None:
        entry = {"step": result.steps, "loss": loss, "lambda": lam, "degree": degree,
                 "seconds": time.perf_counter() - start, "kind": kind}  # fmt: skip
        result.history.append(entry)
        if callback is not None:
            callback(entry)

    tick = stop_check(should_stop, time_limit, start)  # before each Gauss–Newton step

    def train(fit: _Fit, steps: int, kind: str) -> None:
        for _ in range(steps):
            tick()
            fit.step()
            result.steps += 1
            if kind == "step":
                record(kind, fit.loss, float(fit.model.lam.detach()), fit.model.degree)
            if fit.stalled or fit.loss < 1e-32:
                return

    def fixed(lam: float, degree: int, state: Tensor | None = None) -> _Fit:
        """Fit at fixed λ, growing the degree from ``start_degree`` (or from ``state``),
        ``scan_steps`` Gauss–Newton steps a stage."""
        probe = bare_series(equation, lam, start_degree, scale, trainable=False)
        if state is not None:
            probe.grow(state.numel() - 1)
            with torch.no_grad():
                probe.coeffs.copy_(state)
        while True:
            fit = _Fit(equation, probe, points_per_term * terms(probe), damping)
            train(fit, scan_steps, "fixed")
            if probe.degree >= degree:
                return fit
            probe.grow(min(probe.degree + degree_step, degree))

    def probe_at(lam: float, kind: str, degree: int, state: Tensor | None = None) -> _Fit:
        fit = fixed(lam, degree, state)
        rms = math.sqrt(2 * fit.loss)
        result.funnel.append({"lambda": lam, "rms": rms, "signed": fit.signed(), "kind": kind})
        record(kind, fit.loss, lam, fit.model.degree)
        return fit

    def scan_at(lam: float) -> None:
        """Fit the found series (w-block included) at fixed λ: a point of the funnel scan."""
        probe = AnalyticSeries(model.degree, lam, equation.decay, scale, trainable_lambda=False,
                               blocks=model.blocks, modes=model.modes)  # fmt: skip
        with torch.no_grad():
            probe.coeffs.copy_(model.coeffs)
            probe.wcoeffs.copy_(model.wcoeffs)
        fit = _Fit(equation, probe, points_per_term * terms(probe), damping)
        train(fit, stage_steps, "fixed")
        entry = {"lambda": lam, "rms": math.sqrt(2 * fit.loss), "signed": fit.signed(),
                 "kind": "scan"}  # fmt: skip
        result.funnel.append(entry)
        record("scan", fit.loss, lam, probe.degree)

    try:
        if lambda_mode == "funnel":
            lam_star, state = _search_bracket(result, probe_at, bracket, order, scan_points,
                                              scan_degree)  # fmt: skip
            model.set_lambda(lam_star)
            state = state[: max_degree + 1]  # the scan's degree may exceed max_degree
            model.grow(state.numel() - 1)
            with torch.no_grad():
                model.coeffs.copy_(state)
        _refine(result, model, equation, train, record, points_per_term, stage_steps,
                degree_step, max_degree, target, damping, checkpoint)  # fmt: skip
    except Stopped as stop:
        result.status = stop.status
    result.lam = float(model.lam.detach())
    final = _Fit(equation, model, points_per_term * terms(model), damping)
    result.funnel.append({"lambda": result.lam, "rms": math.sqrt(2 * final.loss),
                          "signed": final.signed() if equation.lambda_rule else math.nan,
                          "kind": "found"})  # fmt: skip
    if result.status == "completed":
        try:
            for k in range(1, funnel_scan + 1):
                for sign in (-1, 1):
                    scan_at(result.lam * (1 + sign * 10.0**-k))
        except Stopped as stop:
            result.status = stop.status
    result.seconds = time.perf_counter() - start
    return result


def _search_bracket(result: SeriesResult, probe_at: Callable, bracket: tuple[float, float],
                    order: int, scan_points: int, degree: int) -> tuple[float, Tensor]:  # fmt: skip
    """Scan the bracket, pick the order-th resolved sign change (largest λ first), close in by
    false position (Illinois); the λ with the smallest |s| and its fitted coefficients."""
    lo, hi = bracket
    grid = [lo + (hi - lo) * i / (scan_points - 1) for i in range(scan_points)]
    fits = [(lam, probe_at(lam, "funnel", degree)) for lam in grid]
    values = [(lam, fit.signed(), math.sqrt(2 * fit.loss), fit) for lam, fit in fits]
    best_rms = min(v[2] for v in values)
    for (la, sa, ra, _), (lb, sb, rb, _) in zip(values, values[1:]):
        if sa * sb < 0 and max(ra, rb) <= RESOLVED * best_rms:
            result.roots.append((la, lb))
    result.roots.sort(reverse=True)
    if len(result.roots) <= order:
        raise BracketError(
            f"the bracket [{lo:g}, {hi:g}] holds {len(result.roots)} resolved sign change(s) of "
            f"the signed residual; order {order} needs {order + 1}"
        )
    (la, lb) = result.roots[order]
    by_lam = {lam: (s, fit) for lam, s, _, fit in values}
    (sa, fa), (sb, fb) = by_lam[la], by_lam[lb]
    best = min([(abs(sa), la, fa), (abs(sb), lb, fb)], key=lambda t: t[0])
    side = 0
    for _ in range(12):
        if abs(lb - la) <= 1e-12 * abs(lb):
            break
        lc = (la * sb - lb * sa) / (sb - sa)
        fc = probe_at(lc, "funnel", degree, best[2].model.coeffs.detach().clone())
        sc = fc.signed()
        best = min(best, (abs(sc), lc, fc), key=lambda t: t[0])
        if sc == 0:
            break
        if sc * sb < 0:
            la, sa, side = lb, sb, 0
        else:
            sa, side = (sa / 2 if side == 1 else sa), 1
        lb, sb = lc, sc
    return best[1], best[2].model.coeffs.detach().clone()


W_STAGES = ((0, 1, 4), (8, 1, 8), (8, 2, 12), (16, 2, 16), (16, 3, 24))  # (degree offset, K, N)
W_START = 23  # the w-block joins once the ρ-series has reached this degree


def stage_plan(start_degree: int, degree_step: int, max_degree: int) -> list[tuple[int, int, int]]:
    """The (degree, blocks, modes) of each refinement stage: the ρ-series alone, its degree
    growing by ``degree_step`` up to min(W_START, max_degree); then, if max_degree ≥ W_START,
    the w-block of :data:`W_STAGES` with the degree growing to max_degree."""
    top = min(W_START, max_degree)
    plan = [(d, 0, 0) for d in range(start_degree, top, degree_step)] + [(top, 0, 0)]
    if max_degree >= W_START:
        plan += [(min(W_START + off, max_degree), k, n) for off, k, n in W_STAGES]
    return list(dict.fromkeys(plan))


def _refine(result, model, equation, train, record, points_per_term, stage_steps, degree_step,
            max_degree, target, damping, checkpoint) -> None:  # fmt: skip
    """Resolution refinement with λ trainable over :func:`stage_plan`, until the largest
    relative residual at the points is below ``target``, stops improving (two stages in a
    row lower it by less than 1/0.8), or the plan ends."""
    worse = 0
    best = math.inf
    plan = [st for st in stage_plan(model.degree, degree_step, max_degree)
            if st >= (model.degree, model.blocks, model.modes)]  # fmt: skip
    for degree, blocks, modes in plan:
        model.grow(degree, blocks, modes)
        fit = _Fit(equation, model, points_per_term * terms(model), damping)
        record("start", fit.loss, float(model.lam.detach()), model.degree)
        train(fit, stage_steps, "step")
        # the next stage starts from the damping this one ended with: near the solution
        # already, it need not spend steps lowering it from the initial value again
        damping = min(damping, fit.optimizer.state[fit.params[0]].get("damping", damping))
        worst = fit.max_relative_residual()
        stage = {"degree": model.degree, "blocks": blocks, "modes": modes, "points": len(fit.y),
                 "loss": fit.loss, "max_relative_residual": worst,
                 "lambda": float(model.lam.detach())}  # fmt: skip
        result.stages.append(stage)
        if checkpoint is not None:
            checkpoint(model)
        worse = worse + 1 if worst > 0.8 * best else 0
        best = min(best, worst)
        if worst <= target or worse >= 2:
            return

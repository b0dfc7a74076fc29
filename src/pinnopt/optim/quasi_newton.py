"""Dense quasi-Newton optimizers: BFGS and the self-scaled Broyden family (SSBFGS, SSBroyden).

One class, :class:`QuasiNewton`, keeps a dense approximation H ≈ ∇²f(θ)⁻¹ of the
inverse Hessian over the flat parameter vector θ (P entries), in float64 whatever the
parameters' dtype, and iterates

    d_k = −H_k g_k,   θ_{k+1} = θ_k + α_k d_k,   s_k = θ_{k+1} − θ_k,   y_k = g_{k+1} − g_k,

with α_k from torch's strong-Wolfe line search (``torch.optim.lbfgs._strong_wolfe``).
H is then updated by a member of the self-scaled Broyden family (ρ_k = 1/(y_kᵀs_k)):

    H_{k+1} = (1/τ_k) [ H_k − H_k y_k y_kᵀ H_k / (y_kᵀ H_k y_k) + φ_k v_k v_kᵀ ] + ρ_k s_k s_kᵀ,
    v_k     = sqrt(y_kᵀ H_k y_k) · ( ρ_k s_k − H_k y_k / (y_kᵀ H_k y_k) ),

which is Broyden's update with parameter φ_k (φ = 1: BFGS, φ = 0: DFP) applied to the
scaled matrix H_k/τ_k; every member satisfies the secant equation H_{k+1} y_k = s_k. With
(Al-Baali's notation; B_k = H_k⁻¹, so B_k s_k = −α_k g_k)

    h_k = y_kᵀ H_k y_k / y_kᵀ s_k,   b_k = s_kᵀ B_k s_k / y_kᵀ s_k = −α_k s_kᵀ g_k / y_kᵀ s_k,
    a_k = b_k h_k − 1 ≥ 0,

the three methods are:

``bfgs``
    τ_k = 1, φ_k = 1: H_{k+1} = (I − ρ s yᵀ) H_k (I − ρ y sᵀ) + ρ s sᵀ (Nocedal & Wright,
    *Numerical Optimization*, 2nd ed., eq. 6.17). Before the first update the identity
    is scaled, H₀ = (yᵀs / yᵀy) I (ibid. eq. 6.20); in the formula above that is τ₀ = h₀.
``ssbfgs``
    φ_k = 1 and Al-Baali's self-scaling τ_k = min(1, 1/b_k) (M. Al-Baali, "Numerical
    experience with a class of self-scaling quasi-Newton algorithms", J. Optim. Theory
    Appl., 1998; eq. (11) of Urbán et al. below, "SSBFGS_AB" in their code); the first
    update uses τ₀ = h₀, which is again the scaling of eq. 6.20.
``ssbroyden``
    θ_k, τ_k and φ_k from Al-Baali's "wide interval" (M. Al-Baali, "A wide interval for
    efficient self-scaling quasi-Newton algorithms", Optimization Online, 2003), as in
    eqs. (13)–(23) of Urbán et al. ("SSBroyden2" in their code, the variant their
    examples use; the first-update τ is their ``initial_scale`` option)::

        c_k  = sqrt(a_k / (1 + a_k)),          ρ_k⁻ = min(1, h_k (1 − c_k)),
        θ_k⁻ = (ρ_k⁻ − 1) / a_k,               θ_k⁺ = 1 / ρ_k⁻,
        θ_k  = max(θ_k⁻, min(θ_k⁺, (1 − b_k) / b_k)),
        σ_k  = 1 + θ_k a_k,                    φ_k = (1 − θ_k) / σ_k,
        τ_k  = h_k / σ_k                                      (first update)
        τ_k  = min(ρ̂_k σ_k^{1/(1−P)}, σ_k)       if θ_k ≤ 0   (later updates)
        τ_k  = ρ̂_k min(σ_k^{1/(1−P)}, 1/θ_k)     if θ_k > 0,   ρ̂_k = min(1, 1/b_k).

    θ_k ∈ [θ_k⁻, θ_k⁺] keeps H positive definite (σ_k ≥ ρ_k⁻ > 0). When a_k = 0
    (H_k y_k ∥ s_k, so v_k = 0 and θ_k does not change H) θ_k⁻ is taken as −∞.
    ``ssbfgs`` is this family with θ_k = 0 (σ_k = 1, φ_k = 1).

Papers: J. F. Urbán, P. Stefanou, J. A. Pons, "Unveiling the optimization process of
physics informed neural networks: how accurate and competitive can PINNs be?",
J. Comput. Phys. (2025), arXiv:2405.04230; E. Kiyani, K. Shukla, J. F. Urbán,
J. Darbon, G. E. Karniadakis, "Which optimizer works best for physics-informed neural
networks and Kolmogorov–Arnold networks?" (published as "Optimizing the optimizer for
physics-informed neural networks and Kolmogorov–Arnold networks", Comput. Methods Appl.
Mech. Eng. 446, 2025), arXiv:2501.16371. The formulas above were read from the authors'
public code (github.com/jorgeurban/self_scaled_algorithms_pinns, ``modified_optimize.py``),
whose README gives the equation numbers quoted here.

As in :mod:`pinnopt.optim.lbfgs`, the iteration runs on the loss times a scale c chosen
so that c·loss ≈ 1 at the start and multiplied by a = 1/(c·loss) whenever c·loss falls
below 1e-2 (exactly: g ← a g, H ← H/a, loss ← a loss; s and d are unchanged), so that
``tolerance_grad`` and ``tolerance_change`` act relative to the loss and the method keeps
converging to losses of 1e-12 and below. An update is skipped when
yᵀs ≤ ε ‖s‖ ‖y‖ with ε = ``curvature_eps`` (1e-10: well above the rounding of yᵀs in
float64, and below the smallest cosine of s and y = As, 2√κ/(1 + κ), of any positive
definite A with condition number κ < 1e20).

The dense H costs 8 P² bytes and O(P²) work per iteration, so P is limited to
``max_params`` (10,000: an 800 MB matrix); past it the factories raise, or with
``fallback="lbfgs"`` return :class:`pinnopt.optim.lbfgs.LBFGS` instead.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lbfgs import _strong_wolfe

from pinnopt.optim.lbfgs import LBFGS, LBFGS_DEFAULTS, RESCALE_BELOW
from pinnopt.optim.registry import register_optimizer

METHODS = ("bfgs", "ssbfgs", "ssbroyden")
FALLBACKS = (None, "lbfgs")
MAX_PARAMS = 10_000
CURVATURE_EPS = 1e-10  # skip the update when yᵀs <= CURVATURE_EPS ‖s‖ ‖y‖
EVALS_PER_ITERATION = 25  # room for the line search: it is never the reason to stop


def dense_limit_error(
    name: str, n_params: int, max_params: int = MAX_PARAMS, fallback: str | None = None
) -> str | None:
    """The one-line error for a dense quasi-Newton optimizer ``name`` on ``n_params``
    parameters, or None when it may run (within ``max_params``, or ``fallback="lbfgs"``).

    The config layer can call this before a run starts to refuse early."""
    if n_params <= max_params or fallback == "lbfgs":
        return None
    gigabytes = 8 * n_params**2 / 1e9
    return (
        f"{name}: {n_params:,} parameters exceed max_params={max_params} (a dense "
        f"{n_params}×{n_params} inverse Hessian, {gigabytes:.1f} GB in float64); raise "
        "max_params or use fallback='lbfgs'"
    )


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_options(
    lr, max_iter, max_eval, tolerance_grad, tolerance_change, curvature_eps, max_params
) -> None:
    """ValueError naming the first invalid hyperparameter."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ValueError(f"Invalid lr: {lr!r} (need 0 < lr < inf)")
    if not _is_int(max_iter) or max_iter < 1:
        raise ValueError(f"Invalid max_iter: {max_iter!r} (need an integer >= 1)")
    if max_eval is not None and (not _is_int(max_eval) or max_eval < 1):
        raise ValueError(f"Invalid max_eval: {max_eval!r} (need an integer >= 1, or None)")
    for name, value in (("tolerance_grad", tolerance_grad), ("tolerance_change", tolerance_change)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (need 0 <= {name} < 1)")
    if (
        isinstance(curvature_eps, bool)
        or not isinstance(curvature_eps, numbers.Real)
        or not 0 <= curvature_eps < 1
    ):
        raise ValueError(f"Invalid curvature_eps: {curvature_eps!r} (need 0 <= curvature_eps < 1)")
    if not _is_int(max_params) or max_params < 1:
        raise ValueError(f"Invalid max_params: {max_params!r} (need an integer >= 1)")


def ssbroyden_parameters(h: float, b: float, n: int, first: bool) -> tuple[float, float, float]:
    """(θ_k, τ_k, φ_k) of the self-scaled Broyden update from h_k, b_k and the dimension
    ``n`` (see the module docstring); ``first``: the first update (H_k = I)."""
    a = max(b * h - 1.0, 0.0)  # ≥ 0 by Cauchy–Schwarz; clip rounding below 0
    c = math.sqrt(a / (1.0 + a))
    rho_minus = min(1.0, h * (1.0 - c))
    if not rho_minus > 0:
        return math.nan, math.nan, math.nan
    theta_minus = (rho_minus - 1.0) / a if a > 0 else -math.inf
    theta = max(theta_minus, min(1.0 / rho_minus, (1.0 - b) / b))
    sigma = 1.0 + theta * a
    phi = (1.0 - theta) / sigma
    if first:
        return theta, h / sigma, phi
    rho_hat = min(1.0, 1.0 / b)
    sigma_n = sigma ** (1.0 / (1.0 - n)) if n > 1 else 1.0
    if theta <= 0:
        tau = min(rho_hat * sigma_n, sigma)
    else:
        tau = rho_hat * min(sigma_n, 1.0 / theta)
    return theta, tau, phi


class QuasiNewton(Optimizer):
    """Dense BFGS, self-scaled BFGS or self-scaled Broyden with a strong-Wolfe line search.

    ``method`` is ``"bfgs"``, ``"ssbfgs"`` or ``"ssbroyden"``; the math and the papers are
    in the module docstring. ``step(closure, max_iter=k)`` runs at most k iterations in
    this call (``max_iter`` of the constructor when not given), each with room for 25
    loss evaluations; ``iterations`` is how many the last call did, and fewer than asked
    means the optimizer met its tolerances: ``max|g| <= tolerance_grad``, or a step or a
    loss change (of the rescaled loss) below ``tolerance_change``. ``step`` returns the
    unscaled loss at the starting point (the closure's first evaluation).

    State (in ``self.state`` of the first parameter, so that ``state_dict`` round-trips
    it and a resumed run repeats bit for bit): ``H`` (P×P, float64), ``loss_scale``,
    ``n_iter``, ``func_evals``, ``n_updates``, ``n_skipped`` and the last update's ``tau``
    and ``phi``. Each (s, y) pair is formed and used within one ``step`` call.
    """

    iterations: int = 0

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1.0,
        method: str = "bfgs",
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-12,
        tolerance_change: float = 1e-14,
        curvature_eps: float = CURVATURE_EPS,
        max_params: int = MAX_PARAMS,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"Invalid method: {method!r}; allowed: {', '.join(METHODS)}")
        _check_options(
            lr, max_iter, max_eval, tolerance_grad, tolerance_change, curvature_eps, max_params
        )
        defaults = {
            "lr": lr,
            "method": method,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "curvature_eps": curvature_eps,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{method} takes one parameter group (it updates all at once)")
        self._params: list[torch.Tensor] = self.param_groups[0]["params"]
        for p in self._params:
            if not p.is_floating_point():
                raise ValueError(f"{method} needs real floating-point parameters, got {p.dtype}")
        self.n_params = sum(p.numel() for p in self._params)
        self.max_params = max_params
        error = dense_limit_error(method, self.n_params, max_params)
        if error is not None:
            raise ValueError(error)

    # ------------------------------------------------------------------ flat vectors

    def _flat_grad(self) -> torch.Tensor:
        """The gradient as one float64 vector (zeros where a parameter has none)."""
        parts = [
            torch.zeros(p.numel(), dtype=torch.float64, device=p.device)
            if p.grad is None
            else p.grad.reshape(-1).to(torch.float64)
            for p in self._params
        ]
        return torch.cat(parts)

    def _add_step(self, t: float, d: torch.Tensor) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(d[offset : offset + n].view_as(p).to(p.dtype), alpha=t)
            offset += n

    def _set_params(self, values: list[torch.Tensor]) -> None:
        for p, v in zip(self._params, values):
            p.copy_(v)

    # ------------------------------------------------------------------ the iteration

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor], max_iter: int | None = None
    ) -> torch.Tensor:
        group = self.param_groups[0]
        method = group["method"]
        if closure is None:
            raise ValueError(f"{method} needs a closure that re-evaluates the loss")
        if max_iter is None:
            max_iter = group["max_iter"]
            max_eval = group["max_eval"] or max_iter * EVALS_PER_ITERATION
        else:
            if not _is_int(max_iter) or max_iter < 1:
                raise ValueError(f"Invalid max_iter: {max_iter!r} (need an integer >= 1)")
            max_eval = max_iter * EVALS_PER_ITERATION
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        self.iterations = 0

        with torch.enable_grad():
            start = closure()
        start = start.detach()
        start_loss = float(start)
        if not math.isfinite(start_loss):
            return start  # the caller sees the non-finite loss; nothing is changed
        state = self.state[self._params[0]]
        if "loss_scale" not in state:
            state["loss_scale"] = 1.0 / start_loss if start_loss > 0 else 1.0
        if "H" not in state:
            state["H"] = self._identity()
        for key in ("n_iter", "func_evals", "n_updates", "n_skipped"):
            state.setdefault(key, 0)
        state["func_evals"] += 1
        evals = 1

        def evaluate() -> tuple[float, torch.Tensor]:
            with torch.enable_grad():
                loss = float(closure().detach())
            scale = state["loss_scale"]
            return loss * scale, self._flat_grad().mul_(scale)

        def along(x: list[torch.Tensor], t: float, d: torch.Tensor) -> tuple[float, torch.Tensor]:
            self._add_step(t, d)
            value = evaluate()
            self._set_params(x)
            return value

        f = start_loss * state["loss_scale"]
        g = self._flat_grad().mul_(state["loss_scale"])
        if g.abs().max() <= tolerance_grad:
            return start
        H = state["H"]
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if 0 < f < RESCALE_BELOW:
                f, g = self._rescale(state, 1.0 / f, f, g)
            d = torch.mv(H, g).neg_()
            gtd = g.dot(d)
            if not gtd < 0:  # H lost positive definiteness to rounding: start again from I
                H.copy_(self._identity())
                state["n_updates"] = 0
                d = g.neg()
                gtd = g.dot(d)
            if gtd > -tolerance_change:
                break
            t = group["lr"]
            if state["n_updates"] == 0:  # H = I: a cautious first step, as torch's L-BFGS
                t = min(1.0, 1.0 / float(g.abs().sum())) * t
            x = [p.clone(memory_format=torch.contiguous_format) for p in self._params]
            f_new, g_new, t, ls_evals = _strong_wolfe(
                along, x, t, d, f, g, gtd, max_ls=max_eval - evals
            )
            t = float(t)
            self._add_step(t, d)
            evals += ls_evals
            state["func_evals"] += ls_evals
            self._update(state, d.mul(t), g_new - g, t, float(gtd))
            f_prev, f, g = f, float(f_new), g_new
            if evals >= max_eval or g.abs().max() <= tolerance_grad:
                break
            if d.abs().max() * abs(t) <= tolerance_change or abs(f - f_prev) < tolerance_change:
                break
        self.iterations = n_iter
        return start

    def _identity(self) -> torch.Tensor:
        device = self._params[0].device
        return torch.eye(self.n_params, dtype=torch.float64, device=device)

    def _rescale(
        self, state: dict, a: float, f: float, g: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """Multiply the loss by ``a``: the iteration on the new scaled loss is the same one."""
        if not math.isfinite(state["loss_scale"] * a):
            return f, g
        state["loss_scale"] *= a
        state["H"].div_(a)
        return f * a, g.mul_(a)

    def _update(self, state: dict, s: torch.Tensor, y: torch.Tensor, t: float, gtd: float) -> None:
        """The self-scaled Broyden update of H from the pair (s, y) (module docstring).

        ``t`` and ``gtd`` = g_kᵀd_k give b_k = −t² gtd / yᵀs without a solve with H."""
        ys = float(y.dot(s))
        if not ys > self.param_groups[0]["curvature_eps"] * float(s.norm() * y.norm()):
            state["n_skipped"] += 1
            return
        H = state["H"]
        Hy = torch.mv(H, y)
        yHy = float(y.dot(Hy))
        rho = 1.0 / ys
        h, b = yHy * rho, -t * t * gtd * rho
        if not (yHy > 0 and math.isfinite(h) and b > 0 and math.isfinite(b)):
            state["n_skipped"] += 1
            return
        method, first = self.param_groups[0]["method"], state["n_updates"] == 0
        if method == "bfgs":
            tau, phi = (h if first else 1.0), 1.0
        elif method == "ssbfgs":
            tau, phi = (h if first else min(1.0, 1.0 / b)), 1.0
        else:
            _, tau, phi = ssbroyden_parameters(h, b, self.n_params, first)
        if not (tau > 0 and math.isfinite(tau) and math.isfinite(phi)):
            state["n_skipped"] += 1
            return
        root = math.sqrt(yHy)
        v = s.mul(rho * root).sub_(Hy, alpha=1.0 / root)  # v_k of the module docstring
        # H += ±w wᵀ only: w_i w_j = w_j w_i exactly, so H stays exactly symmetric
        w = Hy.div(root)
        H.addr_(w, w, alpha=-1.0)
        w = v.mul_(math.sqrt(abs(phi)))
        H.addr_(w, w, alpha=1.0 if phi >= 0 else -1.0)
        if tau != 1.0:
            H.div_(tau)
        w = s.mul(math.sqrt(rho))
        H.addr_(w, w)
        state["n_updates"] += 1
        state["tau"], state["phi"] = tau, phi

    # ------------------------------------------------------------------ state

    def objective_changed(self, what: str) -> None:
        """The objective changed (``what``: ``"points"`` or ``"weights"``): keep H and the
        loss scale.

        H is an inverse-Hessian model of the old loss, and the old loss is close to the
        new one (a few points or weights changed), so H remains a good preconditioner, as
        K-FAC keeps its factors; the line search and the next updates correct what
        changed. ``loss_scale`` is kept too: the new loss is usually of the same size.
        What must go is anything that would pair the old objective with the new one:
        the previous gradient, loss and direction. This optimizer forms each (s, y) pair
        within one ``step`` call, from gradients it has just evaluated, and keeps none of
        them between calls, so the next call's first pair is made of gradients of the new
        objective only and nothing needs dropping here.
        """

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, keeping H in float64 (torch casts floating-point
        state to the parameters' dtype)."""
        saved = state_dict.get("state", {})
        H = next((s["H"] for s in saved.values() if "H" in s), None)
        if H is not None and tuple(H.shape) != (self.n_params, self.n_params):
            raise ValueError(
                f"not a state of this optimizer: its inverse Hessian is "
                f"{'×'.join(map(str, H.shape))}, this one has {self.n_params} parameters"
            )
        super().load_state_dict(state_dict)
        if H is not None:
            p = self._params[0]
            self.state[p]["H"] = H.detach().to(device=p.device, dtype=torch.float64).clone()


def quasi_newton(
    method: str,
    params: Iterable[torch.Tensor] | Iterable[dict],
    lr: float = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-12,
    tolerance_change: float = 1e-14,
    curvature_eps: float = CURVATURE_EPS,
    max_params: int = MAX_PARAMS,
    fallback: str | None = None,
) -> QuasiNewton | LBFGS:
    """:class:`QuasiNewton` with ``method``; past ``max_params`` parameters it raises, or
    with ``fallback="lbfgs"`` warns and returns :class:`~pinnopt.optim.lbfgs.LBFGS` (with
    ``LBFGS_DEFAULTS``, the same lr, iteration limits and tolerances)."""
    if method not in METHODS:
        raise ValueError(f"Invalid method: {method!r}; allowed: {', '.join(METHODS)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"Invalid fallback: {fallback!r}; allowed: None, 'lbfgs'")
    _check_options(
        lr, max_iter, max_eval, tolerance_grad, tolerance_change, curvature_eps, max_params
    )
    params = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in params]
    n_params = sum(
        sum(p.numel() for p in g["params"]) if isinstance(g, dict) else g.numel() for g in params
    )
    if fallback == "lbfgs" and n_params > max_params:
        warnings.warn(
            f"{method}: {n_params:,} parameters exceed max_params={max_params}; using lbfgs "
            "instead (fallback='lbfgs')",
            stacklevel=3,
        )
        options = {
            **LBFGS_DEFAULTS,
            "max_iter": max_iter,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
        }
        if max_eval is not None:
            options["max_eval"] = max_eval
        return LBFGS(params, lr=lr, **options)
    return QuasiNewton(
        params, lr=lr, method=method, max_iter=max_iter, max_eval=max_eval,
        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
        curvature_eps=curvature_eps, max_params=max_params,
    )  # fmt: skip


def _factory(method: str, description: str):
    def factory(
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-12,
        tolerance_change: float = 1e-14,
        curvature_eps: float = CURVATURE_EPS,
        max_params: int = MAX_PARAMS,
        fallback: str | None = None,
    ) -> QuasiNewton | LBFGS:
        return quasi_newton(
            method, params, lr, max_iter, max_eval, tolerance_grad, tolerance_change,
            curvature_eps, max_params, fallback,
        )  # fmt: skip

    factory.__name__ = factory.__qualname__ = method
    factory.__doc__ = f"{description}: :func:`quasi_newton` with method={method!r}."
    return register_optimizer(method, 1.0, closure="loss", description=description)(factory)


bfgs = _factory("bfgs", "dense BFGS, strong Wolfe, loss rescaled for precision")
ssbfgs = _factory("ssbfgs", "dense self-scaled BFGS (Al-Baali), strong Wolfe, loss rescaled")
ssbroyden = _factory(
    "ssbroyden", "dense self-scaled Broyden (Al-Baali, Urbán et al.), strong Wolfe, loss rescaled"
)

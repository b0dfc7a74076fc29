"""The K-FAC optimizer: preconditioned direction, then an ``auto`` step, a line search or a base.

Damping and step acceptance follow :mod:`pinnopt.optim.least_squares` (rule
``"marquardt"``), the step-size scan is its :func:`scan_step_sizes`, and parameters
outside linear layers get Jacobian products from its :class:`MatrixFreeJacobian`.
With the ``auto`` update, such parameters that are few (at most
:data:`DENSE_BLOCK_LIMIT` entries in all: the unknown physical parameters of an
inverse problem, say ν) get one dense Gauss–Newton block: their direction is
−(J_oᵀJ_o + λI)⁻¹ J_oᵀr, J_o their columns of the Jacobian, formed by one Jacobian
product per entry. More of them keep their plain gradient direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from pinnopt.derivatives import supports_jet
from pinnopt.optim.kfac.preconditioner import KFACPreconditioner, check_hyperparameters
from pinnopt.optim.least_squares import (
    LevenbergMarquardt,
    MatrixFreeJacobian,
    gain_ratio,
    scan_step_sizes,
    set_params,
)
from pinnopt.optim.registry import build_optimizer, get_optimizer_spec, register_optimizer

UPDATES = ("auto", "line_search")
DENSE_BLOCK_LIMIT = 64  # parameters outside linear layers preconditioned by one dense block


@register_optimizer(
    "kfac",
    1.0,
    closure="residuals",
    needs_model=True,
    description="K-FAC for PINNs (Kronecker factors over jets), auto step and momentum",
)
class KFAC(Optimizer):
    """K-FAC for least squares ½‖r(θ)‖², PINN-aware (see the module docstring).

    ``step(closure)`` takes a closure returning the residual vector r(θ) with its
    graph (:class:`pinnopt.objective.ResidualClosure`); one residual per point and
    model pass, in the order of the passes (what ``Objective`` does). A closure with
    ``pass_sizes`` (the objective's points per term) has them checked against the
    passes the layers saw. Hooks are on the model only during ``step``. A closure with
    ``reduce`` holds a share of the points (one of several processes): every number
    that sums over the points (the loss, the gradient, the Kronecker factors, the
    quadratic model's ‖Jv‖²) goes through ``reduce``, a sum over the shares, so every
    process takes the step of the whole problem (:attr:`sums_over_processes`).

    Args:
        model: the network whose ``nn.Linear`` layers are preconditioned.
        lr: ``auto``: scale of the model-optimal step (1); ``line_search``: largest step tried.
        damping: initial λ (preconditioner Tikhonov damping and quadratic-model damping).
        decay, factor_period, inverse_period, inverse, damping_split: see
            :class:`KFACPreconditioner`.
        update: ``"auto"`` (α, μ from the 2 × 2 quadratic model) or ``"line_search"``.
        momentum: μ of ``line_search`` (d = Δ + μ d_prev).
        line_search_steps: grid size of ``line_search`` (lr·2⁻ᵏ, k < line_search_steps).
        adapt_damping: ``auto`` only: adapt λ by the reduction ratio ρ (λ·ω if ρ > 3/4,
            λ/ω if ρ < 1/4) and retry rejected steps with λ/ω.
        damping_factor: ω of the adaptation, 0 < ω < 1.
        damping_min, damping_max: bounds on λ.
        max_retries: ``auto``: retries with more damping after a rejected step.
        base: name of a registered first-order optimizer (``"adam"``, ``"sgd"``, …) that
            takes the preconditioned gradient instead of the built-in update.
        base_options: options of ``base`` (its ``lr`` defaults to the registry's).
    """

    def __init__(
        self,
        params,
        model: nn.Module,
        lr: float = 1.0,
        damping: float = 1e-3,
        decay: float = 0.95,
        factor_period: int = 1,
        inverse_period: int = 1,
        inverse: str = "eigen",
        damping_split: str = "pi",
        update: str = "auto",
        momentum: float = 0.0,
        line_search_steps: int = 31,
        adapt_damping: bool = True,
        damping_factor: float = 2 / 3,
        damping_min: float = 1e-12,
        damping_max: float = 1e6,
        max_retries: int = 10,
        base: str | None = None,
        base_options: dict[str, Any] | None = None,
    ) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"Invalid lr: {lr}")
        check_hyperparameters(damping, decay, factor_period, inverse_period, inverse, damping_split)
        if update not in UPDATES:
            raise ValueError(f"Invalid update: {update!r}; allowed: {', '.join(UPDATES)}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum: {momentum} (need 0 <= momentum < 1)")
        if not (isinstance(line_search_steps, int) and line_search_steps >= 1):
            raise ValueError(f"Invalid line_search_steps: {line_search_steps}")
        if not 0 < damping_factor < 1:
            raise ValueError(f"Invalid damping_factor: {damping_factor} (need 0 < ω < 1)")
        if not 0 < damping_min <= damping <= damping_max:
            raise ValueError(
                f"Invalid damping_min/damping_max: need 0 < damping_min <= damping <= "
                f"damping_max, got {damping_min}, {damping}, {damping_max}"
            )
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise ValueError(f"Invalid max_retries: {max_retries}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"Invalid model: {type(model).__name__} is not an nn.Module")
        if not supports_jet(model):
            raise ValueError(
                "Invalid model: K-FAC reads jets layer by layer, and this model does not "
                "support them (pinnopt.derivatives.supports_jet)"
            )
        defaults = dict(
            lr=lr, damping=damping, decay=decay, factor_period=factor_period,
            inverse_period=inverse_period, inverse=inverse, damping_split=damping_split,
            update=update, momentum=momentum, line_search_steps=line_search_steps,
            adapt_damping=adapt_damping, damping_factor=damping_factor, damping_min=damping_min,
            damping_max=damping_max, max_retries=max_retries, base=base,
        )  # fmt: skip
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("KFAC takes one parameter group")
        params = self.param_groups[0]["params"]
        model_ids = {id(p) for p in model.parameters()}
        if any(id(p) not in model_ids for p in params):
            raise ValueError("Invalid params: KFAC's parameters must be parameters of model")
        self.preconditioner = KFACPreconditioner(
            model, params, damping, decay, factor_period, inverse_period, inverse,
            damping_split, hooks=False, store=lambda w: self.state[w],
        )  # fmt: skip
        if not self.preconditioner.layers:
            raise ValueError("Invalid model: no nn.Linear layer with trained weight")
        self.base: Optimizer | None = None
        if base is not None:
            try:
                spec = get_optimizer_spec(base)
            except ValueError as e:
                raise ValueError(f"Invalid base: {e}") from None
            if spec.closure is not None:
                raise ValueError(f"Invalid base: {base!r} is not a first-order optimizer")
            options = dict(base_options or {})
            self.base = build_optimizer(base, params, options.pop("lr", None), **options)
        elif base_options:
            raise ValueError("Invalid base_options: given without base")
        self._sum = _unchanged  # the closure's ``reduce`` during a step

    # the trainer hands a closure with ``reduce`` to this optimizer on several processes
    sums_over_processes = True

    # ------------------------------------------------------------------ state

    @property
    def _params(self) -> list[Tensor]:
        """The parameters in the preconditioner's order (linear layers first)."""
        return self.preconditioner.params

    def _state(self) -> dict[str, Any]:
        """Optimizer-wide counters, kept on the first parameter so that state_dict round-trips."""
        state = self.state[self.param_groups[0]["params"][0]]
        if "step" not in state:
            group = self.param_groups[0]
            state.update(
                step=0, **LevenbergMarquardt.init_state(group["damping"]), rho=math.nan,
                alpha=math.nan, mu=math.nan,
            )  # fmt: skip
        return state

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        if self.base is not None:
            out["base"] = self.base.state_dict()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        base = state_dict.pop("base", None)
        super().load_state_dict(state_dict)
        if self.base is not None and base is not None:
            self.base.load_state_dict(base)

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """One step; returns the loss ½‖r‖² at the starting point.

        A closure whose loss is not finite leaves the parameters as they were.
        """
        if closure is None:
            raise ValueError("KFAC needs a closure that returns the residual vector")
        group, state, pre = self.param_groups[0], self._state(), self.preconditioner
        params = self._params
        # a closure over a share of the points (one of several processes) sums over them
        self._sum = getattr(closure, "reduce", None) or _unchanged
        pre.clear()
        with pre.recording(), torch.enable_grad():
            r = closure().reshape(-1)
        loss = self._sum(0.5 * r.detach().dot(r.detach()))
        if not torch.isfinite(loss):
            pre.clear()
            return loss.detach()
        others = block = None
        with torch.enable_grad():
            if pre.other_params and self.base is None and group["update"] == "auto":
                others = MatrixFreeJacobian(r, pre.other_params)
                block = _dense_block(others)
                block = None if block is None else self._sum(block)
            grads = self._summed(pre.residual_gradients(r, getattr(closure, "pass_sizes", None)))
        step = state["step"]
        if step % group["factor_period"] == 0:
            pre.update_factors(group["decay"], None if self._sum is _unchanged else self._sum)
        damping = state["damping"]
        if step % group["inverse_period"] == 0 or not pre.curvature(pre.layers[0]).inverted:
            pre.update_inverses(damping)
        if self.base is not None:
            for p, d in zip(params, pre.precondition(grads)):
                p.grad = d.clone()
            self.base.step()
        elif group["update"] == "auto":
            self._auto(closure, grads, float(loss), others, block, group, state)
        else:
            self._line_search(closure, grads, float(loss), group, state)
        pre.clear()
        state["step"] += 1
        return loss.detach()

    def _loss(self, closure: Callable[[], Tensor]) -> float:
        r = closure().reshape(-1)
        return float(self._sum(0.5 * r.dot(r)))

    def _summed(self, tensors: list[Tensor]) -> list[Tensor]:
        """``tensors`` summed over the processes (one reduction of their concatenation)."""
        if self._sum is _unchanged:
            return tensors
        flat = self._sum(torch.cat([t.reshape(-1) for t in tensors]))
        parts = flat.split([t.numel() for t in tensors])
        return [part.view_as(t) for part, t in zip(parts, tensors)]

    def _auto(self, closure, grads, loss, others, block, group, state) -> None:
        """δ = αΔ + μδ_prev minimizing the damped quadratic model (Martens & Grosse §6.5, §7).

        ``block``: J_oᵀJ_o of the parameters outside linear layers, or None.
        """
        pre, params = self.preconditioner, self._params
        prev = [self.state[p].get("update") for p in params]
        has_prev = all(t is not None for t in prev)
        start = [p.detach().clone() for p in params]
        control = LevenbergMarquardt(
            group["damping_min"], group["damping_max"], "marquardt", group["damping_factor"]
        )
        for attempt in range(group["max_retries"] + 1):
            lam = state["damping"]
            if attempt > 0:
                pre.update_inverses(lam)
            delta = [-d for d in pre.precondition(grads)]
            if block is not None:
                delta = _with_dense_block(delta, grads, block, lam, len(pre.other_params))
            vectors = [delta] + ([prev] if has_prev else [])
            jv = [self._jvp(v, others) for v in vectors]
            k = len(vectors)
            quad = torch.empty(k, k, dtype=torch.float64)
            lin = torch.empty(k, dtype=torch.float64)
            for i in range(k):
                lin[i] = _dot(grads, vectors[i])
                for j in range(i, k):
                    jj = self._sum(jv[i].dot(jv[j]))  # Jv has one row per point: summed
                    quad[i, j] = quad[j, i] = jj + lam * _dot(vectors[i], vectors[j])
            coef = _solve_small(quad, lin)
            coef = coef * group["lr"]
            predicted = float(coef.dot(lin) + 0.5 * coef.dot(quad @ coef))
            update = [
                sum(float(c) * v[i] for c, v in zip(coef, vectors)) for i in range(len(params))
            ]
            set_params(params, start, update, 1.0)
            new_loss = self._loss(closure)
            rho = gain_ratio(loss - new_loss, -predicted)  # predicted: the model's change
            state["rho"], state["alpha"] = rho, float(coef[0])
            state["mu"] = float(coef[1]) if k > 1 else 0.0
            if math.isfinite(new_loss) and new_loss < loss:
                if group["adapt_damping"]:
                    control.accept(state, rho)
                state["nu"] = 2.0
                for p, u in zip(params, update):
                    self.state[p]["update"] = u
                return
            set_params(params, start)
            if not group["adapt_damping"]:
                state["rejected"] += 1
                return
            if control.reject(state) >= group["damping_max"]:
                return

    def _jvp(self, v: Sequence[Tensor], others: MatrixFreeJacobian | None) -> Tensor:
        pre = self.preconditioner
        n = len(pre.params) - len(pre.other_params)
        jv = pre.jvp(v[:n])
        if others is not None:
            jv = jv + others.j(torch.cat([t.reshape(-1) for t in v[n:]]))
        return jv

    def _line_search(self, closure, grads, loss, group, state) -> None:
        """θ ← θ + α d, α the best of lr·2⁻ᵏ, d = Δ + μ d_prev (scan stops once past the best)."""
        params = self._params
        delta = [-t for t in self.preconditioner.precondition(grads)]
        d = delta
        if group["momentum"] > 0:
            prev = [self.state[p].get("direction") for p in params]
            if all(t is not None for t in prev):
                d = [t.add(q, alpha=group["momentum"]) for t, q in zip(delta, prev)]
                if not _dot(grads, d) < 0:  # momentum turned it uphill: restart from Δ
                    d = delta
        start = [p.detach().clone() for p in params]

        def loss_at(alpha: float) -> float:
            set_params(params, start, d, alpha)
            return self._loss(closure)

        alphas = [group["lr"] * 0.5**k for k in range(group["line_search_steps"])]
        best = scan_step_sizes(loss_at, alphas, baseline=loss, stop_past_best=True)
        set_params(params, start, d, best[1])
        state["alpha"], state["rho"] = best[1], math.nan
        if best[1] == 0.0:
            state["rejected"] += 1
        if group["momentum"] > 0:
            for p, t in zip(params, d):
                if best[1] > 0:
                    self.state[p]["direction"] = t
                else:
                    self.state[p].pop("direction", None)


def _unchanged(t: Tensor) -> Tensor:
    """The reduction of a closure over all the points: none."""
    return t


def _dense_block(others: MatrixFreeJacobian) -> Tensor | None:
    """J_oᵀJ_o for the parameters of ``others`` if they have at most DENSE_BLOCK_LIMIT
    entries (J_o column by column, one Jacobian product each), else None."""
    n = sum(p.numel() for p in others.params)
    if n > DENSE_BLOCK_LIMIT:
        return None
    eye = torch.eye(n, dtype=others.r.dtype, device=others.r.device)
    jo = torch.stack([others.j(eye[i]) for i in range(n)], dim=1)
    return jo.t() @ jo


def _with_dense_block(
    delta: list[Tensor], grads: Sequence[Tensor], block: Tensor, lam: float, count: int
) -> list[Tensor]:
    """``delta`` with its last ``count`` tensors replaced by −(block + λI)⁻¹ g_o."""
    g = torch.cat([t.reshape(-1) for t in grads[-count:]])
    eye = torch.eye(len(g), dtype=block.dtype, device=block.device)
    d = -torch.linalg.solve(block + lam * eye, g)
    out, offset = list(delta[:-count]), 0
    for t in grads[-count:]:
        out.append(d[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _solve_small(quad: Tensor, lin: Tensor) -> Tensor:
    """argmin ½ cᵀQc + lᵀc for the 1 × 1 or 2 × 2 model; drops μ if Q is singular."""
    if quad.shape[0] == 2:
        det = quad[0, 0] * quad[1, 1] - quad[0, 1] ** 2
        if det > 1e-14 * quad[0, 0] * quad[1, 1]:
            return -torch.linalg.solve(quad, lin)
    alpha = -lin[0] / quad[0, 0]
    return torch.cat([alpha.reshape(1), torch.zeros(quad.shape[0] - 1, dtype=quad.dtype)])

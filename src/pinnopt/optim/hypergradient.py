"""Hypergradient descent: each parameter group's learning rate adapted online.

Baydin, Cornish, Martínez Rubio, Schmidt & Wood, "Online learning rate adaptation
with hypergradient descent", ICLR 2018.

A first-order method moves θ_t = θ_{t−1} − α_t u_t, with u_t its update direction
(SGD: u = g; Adam: u = m̂/(√v̂ + eps)). Since θ_{t−1} depends on α through the previous
step, ∂f(θ_{t−1})/∂α = −g_t · u_{t−1} =: h_t, the hypergradient, with g_t = ∇f(θ_{t−1}).
One gradient step on α per optimizer step, before the base step, gives

* additive (the paper's main form):   α_t = α_{t−1} − β h_t = α_{t−1} + β g_t · u_{t−1};
* multiplicative (the paper's scale-free variant):
  α_t = α_{t−1} (1 − β h_t / (‖g_t‖ ‖u_{t−1}‖)) = α_{t−1} (1 + β cos(g_t, u_{t−1})),

then α_t is clamped to [lr_min, lr_max]. When successive gradients agree (the step
was too short) α grows; when they alternate (it overshot) α shrinks. The additive β
has the units of α² × loss⁻¹ and depends on the gradient scale; the multiplicative β
is a relative rate: α changes by at most a factor 1 ± β per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinnopt.optim.registry import OPTIMIZERS, register_optimizer

VARIANTS = ("additive", "multiplicative")
HYPERGRADIENT = "hypergradient"  # its config name (``meta`` before; renamed from the package)


def _base_factory(base: str | type[Optimizer]) -> Callable[..., Optimizer]:
    """``factory(params, lr, **options)`` of a first-order base optimizer."""
    if isinstance(base, type) and issubclass(base, Optimizer):
        return base
    if not isinstance(base, str):
        raise ValueError(f"Invalid base: {base!r}; give an optimizer name or Optimizer subclass")
    allowed = sorted(n for n, s in OPTIMIZERS.items() if s.closure is None and n != HYPERGRADIENT)
    if base not in allowed:
        raise ValueError(
            f"Invalid base: {base!r}; allowed (first-order, no closure): {', '.join(allowed)}"
        )
    return OPTIMIZERS[base].factory


def _check_group(group: dict) -> None:
    lr, lo, hi = group["lr"], group["lr_min"], group["lr_max"]
    if not (isinstance(lr, float | int) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"Invalid learning rate: {lr} (need 0 < lr < inf)")
    if not (math.isfinite(hi) and hi > 0):
        raise ValueError(f"Invalid lr_max: {hi} (need 0 < lr_max < inf)")
    if not (lo > 0 and lo <= hi):
        raise ValueError(f"Invalid lr_min: {lo} (need 0 < lr_min <= lr_max = {hi})")
    beta = group["hyper_lr"]
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"Invalid hyper_lr: {beta} (need hyper_lr >= 0)")
    if group["variant"] not in VARIANTS:
        raise ValueError(f"Invalid variant: {group['variant']!r}; allowed: {', '.join(VARIANTS)}")


@register_optimizer(
    HYPERGRADIENT,
    1e-3,
    description="Hypergradient lr adaptation (Baydin et al. 2018) around Adam or another base",
)
class HypergradientOptimizer(Optimizer):
    """A first-order optimizer whose per-group learning rate follows hypergradient descent.

    With g_t the gradient at θ_{t−1} and u_{t−1} the previous update direction
    (θ_{t−1} = θ_{t−2} − α_{t−1} u_{t−1}), each group's learning rate becomes, before the
    base step (Baydin et al., "Online learning rate adaptation with hypergradient
    descent", ICLR 2018),

        additive:        α_t = α_{t−1} + β g_t · u_{t−1}
        multiplicative:  α_t = α_{t−1} (1 + β g_t · u_{t−1} / (‖g_t‖ ‖u_{t−1}‖))

    clamped to [lr_min, lr_max]; dot products and norms run over all the group's
    parameters. The first step has no u_{t−1} and keeps α. u is measured, not derived:
    u_t = (θ_{t−1} − θ_t)/α_t, the base step's actual parameter change over its learning
    rate, so any base whose step is lr × a direction works (weight decay that scales
    with lr, as AdamW's, is part of that direction); in float arithmetic u carries the
    rounding of θ_{t−1} − θ_t, a relative error of about eps·|θ|/|θ_t − θ_{t−1}|.

    ``base`` is the name of a first-order optimizer of the registry (``"adam"``,
    ``"sgd"``, ``"ladam"``, …) or an ``Optimizer`` subclass; ``base_options`` go to it.
    The base shares this optimizer's param-group dicts, so ``param_groups[i]["lr"]`` is
    the current α that schedulers and logs see. A schedule that rescales the current
    lr (exponential, cosine, multistep, plateau) composes with the adaptation; the
    bounds are applied at every step, also to the initial and to a scheduled lr.
    ``hyper_lr = 0`` is the base optimizer exactly (for an lr within the bounds).
    ``lr_min``/``lr_max`` default to lr/1000 and 1000·lr.
    """

    def __init__(
        self,
        params,
        base: str | type[Optimizer] = "adam",
        lr: float = 1e-3,
        hyper_lr: float = 0.01,
        variant: str = "multiplicative",
        lr_min: float | None = None,
        lr_max: float | None = None,
        **base_options,
    ) -> None:
        if not (isinstance(lr, float | int) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"Invalid learning rate: {lr} (need 0 < lr < inf)")
        factory = _base_factory(base)
        defaults = dict(
            lr=float(lr),
            hyper_lr=float(hyper_lr),
            variant=variant,
            lr_min=float(lr / 1000 if lr_min is None else lr_min),
            lr_max=float(lr * 1000 if lr_max is None else lr_max),
        )
        super().__init__(params, defaults)
        # the base adds its own defaults to the same group dicts and keeps its own state
        self.base = factory(self.param_groups, lr=float(lr), **base_options)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _check_group(self.param_groups[-1])
        base = self.__dict__.get("base")
        if base is not None:
            base.add_param_group(self.param_groups[-1])

    def _adapt(self, group: dict, params: list[Tensor]) -> None:
        """Set group["lr"] to α_t from the current gradients and the previous updates."""
        lr = group["lr"]
        pairs = [
            (p.grad, self.state[p]["prev_update"]) for p in params if "prev_update" in self.state[p]
        ]
        beta = group["hyper_lr"]
        if pairs and beta > 0:
            dot = float(sum(torch.dot(g.flatten(), u.flatten()) for g, u in pairs))
            if group["variant"] == "additive":
                new = lr + beta * dot
            else:
                norm_g = math.sqrt(sum(float(g.square().sum()) for g, _ in pairs))
                norm_u = math.sqrt(sum(float(u.square().sum()) for _, u in pairs))
                scale = norm_g * norm_u
                new = lr * (1 + beta * dot / scale) if scale > 0 else lr
            if math.isfinite(new):
                lr = new
        group["lr"] = min(max(lr, group["lr_min"]), group["lr_max"])

    @torch.no_grad()
    def step(self, closure=None):
        """One step: adapt each group's lr, take the base step, record u_t."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stepped = []
        for group in self.param_groups:
            params = []
            for p in group["params"]:
                if p.grad is None:
                    self.state[p].pop("prev_update", None)  # the base does not move it
                    continue
                if p.grad.is_sparse:
                    raise ValueError("HypergradientOptimizer needs dense gradients")
                params.append(p)
            self._adapt(group, params)
            for p in params:
                state = self.state[p]
                if "prev_update" not in state:
                    state["prev_update"] = torch.empty_like(p, memory_format=torch.preserve_format)
                state["prev_update"].copy_(p)  # θ_{t−1}, turned into u_t below
            stepped.append((group["lr"], params))
        self.base.step()
        for lr, params in stepped:
            for p in params:
                self.state[p]["prev_update"].sub_(p).div_(lr)
        return loss

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["base_state"] = self.base.state_dict()["state"]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        if "base_state" not in state_dict:
            raise ValueError("not a HypergradientOptimizer state_dict: no 'base_state'")
        base_state = state_dict.pop("base_state")
        super().load_state_dict(state_dict)
        self.base.load_state_dict({"state": base_state, "param_groups": state_dict["param_groups"]})
        self.base.param_groups = list(self.param_groups)  # share the group dicts again

"""Laplacian-smoothed adaptive optimizers: LAdam, LAdaGrad, LRMSProp.

Adam, AdaGrad and RMSProp keep one second-moment estimate s per weight. These
variants treat each weight tensor as a periodic field and smooth s with a discrete
Laplacian before it scales the step:

    s_smooth = s + c2 · ∇²s,

clamped at eps (LAdam) or at 0 (LAdaGrad, LRMSProp), so that neighbouring
weights share curvature information. ∇² is

* for a 2-D tensor (tensors with more dims are viewed as (shape[0], −1)): a
  convolution with circular padding by the 9-point stencil
  [[1, 4, 1], [4, −20, 4], [1, 4, 1]] / 6 (default) or the 5-point stencil
  [[0, 1, 0], [1, −4, 1], [0, 1, 0]]; zero when a side is shorter than 3;
* for a 1-D tensor: [1, −2, 1] with circular padding; zero below 4 elements.

A tensor is smoothed only when c2 > 0 and it has at least ``min_spatial_size``
elements, decided once, at its first step; every other tensor follows the plain
method exactly, so c2 = 0 gives torch.optim.Adam / Adagrad / RMSprop.

Speed: tensors of the same shape are stacked and smoothed by one batched
convolution per shape, and the elementwise updates use foreach ops.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer

STENCILS = {
    "9point": [[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]],
    "5point": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}
STENCIL_SCALE = {"9point": 1.0 / 6.0, "5point": 1.0}
LADAM_MODES = ("variance_lap", "update_lap", "weight_lap")
SUGGESTED_C2 = {"pinn": 1e-5, "transformer": 1e-4, "mlp": 1e-5, "cnn": 0.0, "auto": 1e-4}


def suggest_c2(architecture: str) -> float:
    """A starting coupling c2 for an architecture (``pinn``, ``mlp``, ``transformer``, ``cnn``,
    ``auto``)."""
    if architecture not in SUGGESTED_C2:
        raise ValueError(
            f"Invalid architecture: {architecture!r}; allowed: {', '.join(SUGGESTED_C2)}"
        )
    return SUGGESTED_C2[architecture]


def field_shape(shape: torch.Size) -> tuple[int, ...]:
    """The periodic field a tensor of ``shape`` is smoothed as: (n,) or (rows, cols)."""
    if len(shape) <= 1:
        return (math.prod(shape),)
    return (shape[0], math.prod(shape[1:]))


def _has_laplacian(field: tuple[int, ...]) -> bool:
    return field[0] >= 4 if len(field) == 1 else min(field) >= 3


def laplacian(tensors: Sequence[Tensor], stencil: str = "9point") -> list[Tensor]:
    """∇² of each tensor (see the module docstring), one batched call per field shape."""
    if stencil not in STENCILS:
        raise ValueError(f"Invalid stencil: {stencil!r}; allowed: {', '.join(STENCILS)}")
    out: list[Tensor | None] = [None] * len(tensors)
    by_field: dict[tuple, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        field = field_shape(t.shape)
        if _has_laplacian(field):
            by_field[(field, t.dtype, t.device)].append(i)
        else:
            out[i] = torch.zeros_like(t)
    for (field, dtype, device), idx in by_field.items():
        x = torch.stack([tensors[i].reshape(field) for i in idx])  # (B, *field)
        if len(field) == 1:
            lap = x.roll(1, -1) + x.roll(-1, -1) - 2 * x
        else:
            kernel = torch.tensor(STENCILS[stencil], dtype=dtype, device=device)
            kernel = (kernel * STENCIL_SCALE[stencil]).view(1, 1, 3, 3)
            padded = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="circular")
            lap = F.conv2d(padded, kernel).squeeze(1)
        for k, i in enumerate(idx):
            out[i] = lap[k].view_as(tensors[i])
    return out  # type: ignore[return-value]


def smooth(tensors: Sequence[Tensor], c2: float, stencil: str, floor: float) -> list[Tensor]:
    """max(s + c2 ∇²s, floor) for each s (new tensors)."""
    laps = laplacian(tensors, stencil)
    out = list(torch._foreach_add(list(tensors), laps, alpha=c2))
    torch._foreach_clamp_min_(out, floor)
    return out


def _check_common(lr: float, eps: float, weight_decay: float, c2: float, stencil: str,
                  min_spatial_size: int) -> None:  # fmt: skip
    if not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not (c2 >= 0 and math.isfinite(c2)):
        raise ValueError(f"Invalid c2 value: {c2} (need c2 >= 0)")
    if stencil not in STENCILS:
        raise ValueError(f"Invalid stencil: {stencil!r}; allowed: {', '.join(STENCILS)}")
    if not (isinstance(min_spatial_size, int) and min_spatial_size >= 0):
        raise ValueError(f"Invalid min_spatial_size: {min_spatial_size}")


class _LaplacianSmoothed(Optimizer):
    """Shared bookkeeping: which tensors are smoothed, decided once per tensor."""

    def _smoothed(self, p: Tensor, group: dict) -> bool:
        state = self.state[p]
        if "smoothed" not in state:
            state["smoothed"] = bool(group["c2"] > 0 and p.numel() >= group["min_spatial_size"])
        return state["smoothed"]

    def _grads(self, group: dict) -> tuple[list[Tensor], list[Tensor]]:
        """The parameters with gradients, and their gradients (plus L2 weight decay)."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse:
                raise ValueError("Laplacian-smoothed optimizers do not support sparse gradients")
        grads = [p.grad for p in params]
        if group["weight_decay"] != 0 and not group.get("decoupled_weight_decay", False):
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        return params, grads

    def _smoothed_indices(self, params: list[Tensor], group: dict) -> list[int]:
        return [i for i, p in enumerate(params) if self._smoothed(p, group)]

    def _denominator(self, acc: list[Tensor], params: list[Tensor], group: dict, floor: float
                     ) -> list[Tensor]:  # fmt: skip
        """√s + eps for each accumulator s, with s ← max(s + c2 ∇²s, floor) where smoothed."""
        acc = list(acc)
        idx = self._smoothed_indices(params, group)
        if idx:
            sm = smooth([acc[i] for i in idx], group["c2"], group["stencil"], floor)
            for k, i in enumerate(idx):
                acc[i] = sm[k]
        denom = list(torch._foreach_sqrt(acc))
        torch._foreach_add_(denom, group["eps"])
        return denom

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads = self._grads(group)
            if params:
                self._update(group, params, grads)
        return loss

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError


class LAdam(_LaplacianSmoothed):
    """Adam whose second moment (or update, or weights) is smoothed by a discrete Laplacian.

    With m, v Adam's moments and m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ):

    * ``variance_lap`` (default): v_s = max(v̂ + c2 ∇²v̂, eps), θ ← θ − lr m̂/(√v_s + eps);
    * ``update_lap``: u = m̂/(√v̂ + eps), θ ← θ − lr (u + c2 ∇²u);
    * ``weight_lap``: the Adam step, then θ ← θ + c2 ∇²θ.

    Weight decay is added to the gradient (L2, as torch.optim.Adam), or with
    ``decoupled_weight_decay=True`` applied as θ ← θ(1 − lr·wd) (AdamW).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        c2: float = 1e-5,
        stencil: str = "9point",
        min_spatial_size: int = 16,
        mode: str = "variance_lap",
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if mode not in LADAM_MODES:
            raise ValueError(f"Invalid mode: {mode!r}; allowed: {', '.join(LADAM_MODES)}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, c2=c2,
                        stencil=stencil, min_spatial_size=min_spatial_size, mode=mode,
                        decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        ms, vs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
        if group["decoupled_weight_decay"] and group["weight_decay"] != 0:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        bc1 = [1 - beta1**t for t in steps]
        bc2 = [1 - beta2**t for t in steps]
        v_hat = list(torch._foreach_div(vs, bc2))
        mode = group["mode"]
        smoothed = self._smoothed_indices(params, group)
        if mode == "variance_lap":
            denom = self._denominator(v_hat, params, group, eps)
        else:
            denom = list(torch._foreach_sqrt(v_hat))
            torch._foreach_add_(denom, eps)
        if mode == "update_lap" and smoothed:
            updates = torch._foreach_div(ms, bc1)
            torch._foreach_div_(updates, denom)
            sel = [updates[i] for i in smoothed]
            laps = laplacian(sel, group["stencil"])
            torch._foreach_add_(sel, laps, alpha=group["c2"])
            torch._foreach_add_(params, updates, alpha=-lr)
        else:
            step_sizes = [-lr / b for b in bc1]
            torch._foreach_addcdiv_(params, ms, denom, step_sizes)
        if mode == "weight_lap" and smoothed:
            sel = [params[i] for i in smoothed]
            torch._foreach_add_(sel, laplacian(sel, group["stencil"]), alpha=group["c2"])


class LAdaGrad(_LaplacianSmoothed):
    """AdaGrad whose accumulated sum of squared gradients is Laplacian-smoothed.

    s ← s + g², s_s = max(s + c2 ∇²s, 0), θ ← θ − lr_t g/(√s_s + eps) with
    lr_t = lr / (1 + (t − 1)·lr_decay), as torch.optim.Adagrad.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        c2: float = 1e-5,
        stencil: str = "9point",
        min_spatial_size: int = 16,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size)
        if not lr_decay >= 0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not initial_accumulator_value >= 0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, c2=c2,
                        initial_accumulator_value=initial_accumulator_value, stencil=stencil,
                        min_spatial_size=min_spatial_size)  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        sums, lrs = [], []
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["sum"] = torch.full_like(
                    p, group["initial_accumulator_value"], memory_format=torch.preserve_format
                )
            state["step"] += 1
            sums.append(state["sum"])
            lrs.append(-group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"]))
        torch._foreach_addcmul_(sums, grads, grads, 1.0)
        denom = self._denominator(sums, params, group, 0.0)
        torch._foreach_addcdiv_(params, grads, denom, lrs)


class LRMSProp(_LaplacianSmoothed):
    """RMSProp whose running average of squared gradients is Laplacian-smoothed.

    a ← α a + (1 − α) g², a_s = max(a + c2 ∇²a, 0), d = g/(√a_s + eps);
    θ ← θ − lr d, or with momentum μ: b ← μ b + d, θ ← θ − lr b (torch.optim.RMSprop).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        c2: float = 1e-5,
        stencil: str = "9point",
        min_spatial_size: int = 16,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        if not momentum >= 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        c2=c2, stencil=stencil, min_spatial_size=min_spatial_size)  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        avgs, bufs = [], []
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
            state["step"] += 1
            avgs.append(state["square_avg"])
            if group["momentum"] > 0:
                bufs.append(state["momentum_buffer"])
        alpha = group["alpha"]
        torch._foreach_mul_(avgs, alpha)
        torch._foreach_addcmul_(avgs, grads, grads, 1 - alpha)
        denom = self._denominator(avgs, params, group, 0.0)
        if group["momentum"] > 0:
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_addcdiv_(bufs, grads, denom)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        else:
            torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])

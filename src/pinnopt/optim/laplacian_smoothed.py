"""Laplacian-smoothed adaptive optimizers: LAdam, LAdaGrad, LRMSProp.

Adam, AdaGrad and RMSProp keep one second-moment estimate s per weight. These
variants treat each weight tensor as a periodic field and smooth s with a discrete
Laplacian before it scales the step:

    s_smooth = s + c2 · ∇²s,

clamped at eps (LAdam) or at 0 (LAdaGrad, LRMSProp), so that neighbouring
weights share curvature information. ∇² is

* for a 2-D tensor (tensors with more dims are viewed as (shape[0], −1)): the
  9-point stencil [[1, 4, 1], [4, −20, 4], [1, 4, 1]] / 6 (default) or the 5-point
  stencil [[0, 1, 0], [1, −4, 1], [0, 1, 0]] with circular padding; zero when a
  side is shorter than 3;
* for a 1-D tensor: [1, −2, 1] with circular padding; zero below 4 elements.

A tensor is smoothed only when c2 > 0 and it has at least ``min_spatial_size``
elements, decided once, at its first step; every other tensor follows the plain
method exactly, so c2 = 0 gives torch.optim.Adam / Adagrad / RMSprop.

Speed: each update is one loop over the tensors of a parameter group, written so
that it can be handed to ``torch.compile``, which fuses the moment updates, the
stencil and the step per tensor: one compiled call for the group's small tensors (no
per-tensor Python overhead) and one per large tensor (so that the compiled code's
temporaries stay small; see ``_fused_update``); docs/laplacian_smoothed.md, "Speed",
times it against torch's foreach and fused Adam. ``fused=None``
(the default) compiles when the compiler torch.compile needs for the parameters'
device is there (a C++ compiler on the CPU, Triton on CUDA) and otherwise runs the
same loop eagerly, with one :class:`FusedFallbackWarning`; ``fused=False`` always
runs it eagerly; ``fused=True`` asks for the compiled update and falls back, with
the notice, only where it cannot have it. An update that fails to compile (any step,
any group) is run eagerly instead, with the notice, and so is every later step of that
optimizer (see ``_try_fused`` for why the eager update then sees unmodified state).
The stencils are sums of shifted slices of a circularly padded copy (the 9-point
one factored as S ⊗ S − 36 δ with S = [1, 4, 1]), never a convolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinnopt.optim.compiler import (
    FusedFallbackWarning,  # noqa: F401 (re-exported)
    compile_failed,
    compiled_step_wanted,
    compiling,
)
from pinnopt.optim.compiler import compile_errors as _compile_errors
from pinnopt.optim.registry import register_optimizer

STENCILS = ("9point", "5point")
LADAM_MODES = ("variance_lap", "update_lap", "weight_lap")
SUGGESTED_C2 = {"pinn": 1e-5, "transformer": 1e-4, "mlp": 1e-5, "cnn": 0.0, "auto": 1e-4}
Scalar = float | Tensor  # a Python float when eager, a 0-d tensor when compiled


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


def _neighbours(x: Tensor, stencil: str) -> tuple[Tensor, float, float] | None:
    """(n, k, w) with ∇²x = w (n − k x), n the weighted sum of x's periodic neighbours (in
    x's field shape); None where the field is too small for a Laplacian."""
    field = field_shape(x.shape)
    if not _has_laplacian(field):
        return None
    f = x.reshape(field)
    if len(field) == 1:
        fp = torch.cat([f[-1:], f, f[:1]])
        return fp[:-2] + fp[2:], 2.0, 1.0
    fp = torch.cat([f[-1:], f, f[:1]], 0)
    fp = torch.cat([fp[:, -1:], fp, fp[:, :1]], 1)
    if stencil == "5point":
        n = fp[:-2, 1:-1] + fp[2:, 1:-1]
        n = n + fp[1:-1, :-2]
        return n + fp[1:-1, 2:], 4.0, 1.0
    # [[1,4,1],[4,-20,4],[1,4,1]]/6 = (S ⊗ S − 36 δ)/6 with S = [1, 4, 1]: two 1-D passes
    y = torch.add(fp[:, :-2], fp[:, 2:])
    y.add_(fp[:, 1:-1], alpha=4.0)
    n = torch.add(y[:-2], y[2:])
    n.add_(y[1:-1], alpha=4.0)
    return n, 36.0, 1.0 / 6.0


def laplacian(x: Tensor, stencil: str = "9point") -> Tensor:
    """∇²x of one tensor, treated as a periodic field (see the module docstring)."""
    if stencil not in STENCILS:
        raise ValueError(f"Invalid stencil: {stencil!r}; allowed: {', '.join(STENCILS)}")
    nb = _neighbours(x, stencil)
    if nb is None:
        return torch.zeros_like(x)
    n, k, w = nb
    return ((n - k * x.reshape(n.shape)) * w).view_as(x)


def smooth(x: Tensor, c2: float, stencil: str, floor: Scalar | None = None) -> Tensor:
    """x + c2 ∇²x as a new tensor, clamped below at ``floor`` when one is given."""
    nb = _neighbours(x, stencil)
    if nb is None:
        s = x.clone()
    else:
        # x + c2 w (n − k x) = (1 − c2 w k) x + c2 w n
        n, k, w = nb
        s = n.mul_(c2 * w).add_(x.reshape(n.shape), alpha=1.0 - c2 * w * k).view_as(x)
    return s if floor is None else s.clamp_min_(floor)


def _addcdiv_(x: Tensor, a: Tensor, b: Tensor, value: Scalar) -> None:
    """x += value · a / b."""
    if isinstance(value, Tensor):
        x.add_(a / b * value)
    else:
        x.addcdiv_(a, b, value=value)


def _add_(x: Tensor, a: Tensor, value: Scalar) -> None:
    """x += value · a."""
    if isinstance(value, Tensor):
        x.add_(a * value)
    else:
        x.add_(a, alpha=value)


def _check_common(lr: float, eps: float, weight_decay: float, c2: float, stencil: str,
                  min_spatial_size: int, fused: bool | None) -> None:  # fmt: skip
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
    if not (fused is None or isinstance(fused, bool)):
        raise ValueError(f"Invalid fused value: {fused!r}; allowed: None (automatic), True, False")


def _pick(xs: list, part: list[int]) -> list:
    return [xs[i] for i in part] if xs else xs  # LRMSProp without momentum: no buffers


# Fused, a tensor with at least this many elements gets its own compiled call (one
# shape-generic kernel for all such tensors); the smaller ones share one call per group.
FUSED_OWN_CALL_NUMEL = 2**17
_COMPILED: dict[tuple[Callable, bool], Callable] = {}


def _compiled(update: Callable, dynamic: bool) -> Callable:
    if (update, dynamic) not in _COMPILED:
        _COMPILED[update, dynamic] = torch.compile(update, fullgraph=True, dynamic=dynamic)
    return _COMPILED[update, dynamic]


class _LaplacianSmoothed(Optimizer):
    """The step loop shared by the three: state, the once-per-tensor smoothing decision,
    per-tensor scalars, and the eager or compiled (``fused``) update of each group.

    A subclass names its state buffers (``_buffers``), creates them
    (:meth:`_init_state`), computes each tensor's step-dependent scalars
    (:meth:`_scalars`; compiled, they are passed as one tensor, so nothing recompiles
    when lr or the step count changes) and gives the update itself as a function of
    lists of tensors (``_update``), which sees only tensors, those scalars and the
    group's fixed hyperparameters named in ``_hyper``.
    """

    _update: Callable
    _buffers: tuple[str, ...]  # state keys of the per-tensor buffers, in _update's order
    _hyper: tuple[str, ...]  # group keys _update takes as keywords

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("fused", None)  # state_dicts saved before ``fused`` existed

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError

    def _scalars(self, group: dict, step: int) -> tuple[float, ...]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            buffers: list[list[Tensor]] = [[] for _ in self._buffers]
            smoothed, rows = [], []
            for p in params:
                if p.grad.is_sparse:
                    raise ValueError("Laplacian-smoothed optimizers need dense gradients")
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["smoothed"] = bool(
                        group["c2"] > 0 and p.numel() >= group["min_spatial_size"]
                    )
                    self._init_state(p, group, state)
                state["step"] += 1
                for buffer, key in zip(buffers, self._buffers):
                    if key in state:  # LRMSProp has a momentum buffer only with momentum
                        buffer.append(state[key])
                smoothed.append(state["smoothed"])
                rows.append(self._scalars(group, state["step"]))
            grads = [p.grad for p in params]
            hyper = {key: group[key] for key in self._hyper}
            if not compiled_step_wanted(self, group["fused"], params[0].device.type):
                type(self)._update(params, grads, *buffers, tuple(smoothed), rows, **hyper)
                continue
            scalars = torch.tensor(rows, dtype=torch.float64, device=params[0].device)
            args = (params, grads, buffers, smoothed, scalars, hyper)
            large = [i for i, p in enumerate(params) if p.numel() >= FUSED_OWN_CALL_NUMEL]
            small = [i for i, p in enumerate(params) if p.numel() < FUSED_OWN_CALL_NUMEL]
            for part, own_call in [([i], True) for i in large] + [(small, False)] * bool(small):
                if not self._try_fused(part, own_call, *args):
                    type(self)._update(_pick(params, part), _pick(grads, part),
                                       *[_pick(b, part) for b in buffers],
                                       tuple(_pick(smoothed, part)), _pick(rows, part),
                                       **hyper)  # fmt: skip
        return loss

    def _try_fused(self, part, own_call, *args) -> bool:
        """Runs the compiled update of ``part``, or returns False if it cannot be compiled;
        then nothing of ``part`` has changed and the caller runs the eager update.

        A failed compilation raises before any compiled code runs (``_compile_errors``).
        The parts run one after another, so an earlier part that compiled has been
        updated once, and only this part and the later ones are left to the eager update.
        """
        try:
            update = _compiled(type(self)._update, dynamic=own_call)
        except Exception as error:  # torch.compile refused (this Python, say): nothing ran
            compile_failed(self, "the fused update", error)
            return False
        try:
            self._fused_update(update, part, *args)
        except _compile_errors() as error:
            compile_failed(self, "the fused update", error)
            return False
        return True

    def _fused_update(self, update, part, params, grads, buffers, smoothed, scalars, hyper):
        """The compiled update of the tensors ``part`` (indices into ``params``).

        One graph over many large tensors allocates all its full-size temporaries at
        once, and glibc returns that memory to the OS after the step, so every step
        page-faults it back in (twice Adam's step time on the 10M benchmark); one call
        per large tensor keeps the temporaries small enough to be reused.
        """
        with compiling():  # a higher recompile limit: each group's shapes are a variant
            update(_pick(params, part), _pick(grads, part), *[_pick(b, part) for b in buffers],
                   tuple(_pick(smoothed, part)), scalars[part], **hyper)  # fmt: skip


def _ladam_update(params, grads, exp_avgs, exp_avg_sqs, smoothed, scalars, *, betas,
                  weight_decay, decoupled_weight_decay, c2, stencil, mode) -> None:  # fmt: skip
    # With bias corrections b1, b2 folded into the scalars (as torch.optim.Adam):
    # m̂/(√v_s + eps) = (√b2/b1) · m/(√(v + c2∇²v) + eps√b2), v_s clamped at eps ⇔ v at eps·b2.
    beta1, beta2 = betas
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
        step_size, eps_sqrt_b2, floor, decay = scalars[i]
        lap = smoothed[i]
        if weight_decay != 0:
            if decoupled_weight_decay:
                p.mul_(decay)
            else:
                g = g.add(p, alpha=weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if lap and mode == "variance_lap":
            denom = smooth(v, c2, stencil, floor).sqrt_().add_(eps_sqrt_b2)
        else:
            denom = v.sqrt().add_(eps_sqrt_b2)
        if lap and mode == "update_lap":
            _add_(p, smooth(m / denom, c2, stencil), step_size)
        else:
            _addcdiv_(p, m, denom, step_size)
        if lap and mode == "weight_lap":
            p.add_(laplacian(p, stencil), alpha=c2)


class LAdam(_LaplacianSmoothed):
    """Adam whose second moment (or update, or weights) is smoothed by a discrete Laplacian.

    With m, v Adam's moments and m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ):

    * ``variance_lap`` (default): v_s = max(v̂ + c2 ∇²v̂, eps), θ ← θ − lr m̂/(√v_s + eps);
    * ``update_lap``: u = m̂/(√v̂ + eps), θ ← θ − lr (u + c2 ∇²u);
    * ``weight_lap``: the Adam step, then θ ← θ + c2 ∇²θ.

    Weight decay is added to the gradient (L2, as torch.optim.Adam), or with
    ``decoupled_weight_decay=True`` applied as θ ← θ(1 − lr·wd) (AdamW).
    ``fused`` (default None: automatic) compiles each group's update with
    ``torch.compile`` where its compiler is found (a C++ compiler on CPU, Triton on
    CUDA; the first step pays the compilation), else runs it eagerly with one
    :class:`FusedFallbackWarning`; ``fused=False``: always eager, no notice.
    """

    _update = staticmethod(_ladam_update)
    _buffers = ("exp_avg", "exp_avg_sq")
    _hyper = ("betas", "weight_decay", "decoupled_weight_decay", "c2", "stencil", "mode")

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
        fused: bool | None = None,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size, fused)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if mode not in LADAM_MODES:
            raise ValueError(f"Invalid mode: {mode!r}; allowed: {', '.join(LADAM_MODES)}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, c2=c2,
                        stencil=stencil, min_spatial_size=min_spatial_size, mode=mode,
                        decoupled_weight_decay=decoupled_weight_decay, fused=fused)  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group: dict, step: int) -> tuple[float, ...]:
        beta1, beta2 = group["betas"]
        b1, b2 = 1 - beta1**step, 1 - beta2**step
        lr, eps = group["lr"], group["eps"]
        decay = 1 - lr * group["weight_decay"] if group["decoupled_weight_decay"] else 1.0
        return (-lr * math.sqrt(b2) / b1, eps * math.sqrt(b2), eps * b2, decay)


def _ladagrad_update(params, grads, sums, smoothed, scalars, *, weight_decay, eps, c2, stencil
                     ) -> None:  # fmt: skip
    for i, (p, g, s) in enumerate(zip(params, grads, sums)):
        (step_size,) = scalars[i]
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        s.addcmul_(g, g, value=1.0)
        std = smooth(s, c2, stencil, 0.0).sqrt_() if smoothed[i] else s.sqrt()
        _addcdiv_(p, g, std.add_(eps), step_size)


class LAdaGrad(_LaplacianSmoothed):
    """AdaGrad whose accumulated sum of squared gradients is Laplacian-smoothed.

    s ← s + g², s_s = max(s + c2 ∇²s, 0), θ ← θ − lr_t g/(√s_s + eps) with
    lr_t = lr / (1 + (t − 1)·lr_decay), as torch.optim.Adagrad. ``fused`` as in LAdam.
    """

    _update = staticmethod(_ladagrad_update)
    _buffers = ("sum",)
    _hyper = ("weight_decay", "eps", "c2", "stencil")

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
        fused: bool | None = None,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size, fused)
        if not lr_decay >= 0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not initial_accumulator_value >= 0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, c2=c2,
                        initial_accumulator_value=initial_accumulator_value, stencil=stencil,
                        min_spatial_size=min_spatial_size, fused=fused)  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        state["sum"] = torch.full_like(
            p, group["initial_accumulator_value"], memory_format=torch.preserve_format
        )

    def _scalars(self, group: dict, step: int) -> tuple[float, ...]:
        return (-group["lr"] / (1 + (step - 1) * group["lr_decay"]),)


def _lrmsprop_update(params, grads, square_avgs, momentum_buffers, smoothed, scalars, *,
                     weight_decay, alpha, eps, momentum, c2, stencil) -> None:  # fmt: skip
    for i, (p, g, a) in enumerate(zip(params, grads, square_avgs)):
        (step_size,) = scalars[i]
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        a.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        avg = smooth(a, c2, stencil, 0.0).sqrt_() if smoothed[i] else a.sqrt()
        avg.add_(eps)
        if momentum > 0:
            buf = momentum_buffers[i]
            buf.mul_(momentum).addcdiv_(g, avg)
            _add_(p, buf, step_size)
        else:
            _addcdiv_(p, g, avg, step_size)


class LRMSProp(_LaplacianSmoothed):
    """RMSProp whose running average of squared gradients is Laplacian-smoothed.

    a ← α a + (1 − α) g², a_s = max(a + c2 ∇²a, 0), d = g/(√a_s + eps);
    θ ← θ − lr d, or with momentum μ: b ← μ b + d, θ ← θ − lr b (torch.optim.RMSprop).
    ``fused`` as in LAdam.
    """

    _update = staticmethod(_lrmsprop_update)
    _buffers = ("square_avg", "momentum_buffer")
    _hyper = ("weight_decay", "alpha", "eps", "momentum", "c2", "stencil")

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
        fused: bool | None = None,
    ) -> None:
        _check_common(lr, eps, weight_decay, c2, stencil, min_spatial_size, fused)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        if not momentum >= 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        c2=c2, stencil=stencil, min_spatial_size=min_spatial_size,
                        fused=fused)  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group: dict, step: int) -> tuple[float, ...]:
        return (-group["lr"],)


register_optimizer("ladam", 1e-3, description="Adam with a Laplacian-smoothed second moment")(LAdam)
register_optimizer("ladagrad", 1e-2, description="AdaGrad with a Laplacian-smoothed accumulator")(
    LAdaGrad
)
register_optimizer(
    "lrmsprop", 1e-2, description="RMSProp with a Laplacian-smoothed running average"
)(LRMSProp)

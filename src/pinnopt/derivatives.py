"""Derivatives of a network's output with respect to its inputs.

A PINN residual needs u, the gradient ∇u and a few second derivatives
(u_xx, u_tt, the Laplacian). All of them are on the diagonal of the Hessian, so
a *jet* holds exactly what the residuals need:

    value       u(x)                  shape (N, m)
    grad        ∂u/∂x_i               shape (N, d, m)
    hess_diag   ∂²u/∂x_i²             shape (N, d, m)
    lap         Σ_i ∂²u/∂x_i²         shape (N, m)    (trace mode, instead of hess_diag)

Fast path (built-in models): the jet is pushed forward through the network
together with the value, in one pass (the "forward Laplacian", Li et al.,
Nature Machine Intelligence 2024). Value, gradient and second derivatives are
kept as separate tensors:

  * a linear layer maps every part with the same weight, the bias only enters
    the value: v ↦ vWᵀ + b, ∇z ↦ ∇z Wᵀ, ∂²z ↦ ∂²z Wᵀ — a weight-shared extra
    dimension, which is what K-FAC for PINNs builds on (Dangel, Müller &
    Zeinhofer, NeurIPS 2024);
  * an elementwise σ maps (z, ∇z, ∂²z) to (σ(z), σ'(z)∇z, σ''(z)(∇z)² + σ'(z)∂²z),
    and in trace mode Δz to σ''(z) Σ_i (∂_i z)² + σ'(z) Δz.

Trace mode carries 2 + d slots instead of 1 + 2d; use it when a residual reads
only the Laplacian. Any other ``nn.Module`` falls back to ``torch.func``
(jacfwd over vmap), and :func:`jet_autograd` is the plain nested
``torch.autograd.grad`` reference.

Jet hooks: jets do not pass through ``nn.Linear.__call__``, so torch's forward
hooks never see the derivative slots. ``register_jet_hook(linear, fn)`` adds
``fn(module, input_jet, output_jet)``, called by :func:`propagate_jet` right after
that layer (a returned :class:`Jet` replaces the output, as with torch's forward
hooks); it returns a ``RemovableHandle``. Hooks live in a dict on the module
itself, and a layer without hooks costs one attribute lookup. K-FAC for PINNs
(:mod:`pinnopt.optim.kfac`) reads each layer's input and output jets this way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "Jet",
    "jet",
    "jet_of_input",
    "jet_autograd",
    "jet_torch_func",
    "supports_jet",
    "propagate_jet",
    "register_jet_hook",
]

JetHook = Callable[[nn.Module, "Jet", "Jet"], "Jet | None"]


@dataclass
class Jet:
    """Value and input derivatives of a network (or of a hidden layer) at N points.

    ``value`` is (N, m); ``grad`` and ``hess_diag`` are (N, d, m) and ``lap`` is
    (N, m), each ``None`` when not computed. A component is read by index or, when
    ``names`` holds the problem's component names (``Term.evaluate`` sets them), by
    name: ``u.d(0, "v")``. ``u.unknown("nu")`` is a trainable physical parameter of an
    inverse problem (``Term.evaluate`` sets ``unknowns`` from the model).
    """

    value: Tensor
    grad: Tensor | None = None
    hess_diag: Tensor | None = None
    lap: Tensor | None = None
    names: tuple[str, ...] = ()
    # a model's trainable physical parameters by name (set by Term.evaluate)
    unknowns: dict[str, Tensor] = field(default_factory=dict)

    def unknown(self, name: str) -> Tensor:
        """The trainable physical parameter ``name`` of an inverse problem (a tensor)."""
        if name not in self.unknowns:
            allowed = ", ".join(self.unknowns) or "none declared"
            raise ValueError(f"unknown parameter {name!r}; allowed: {allowed}")
        return self.unknowns[name]

    def index(self, component: int | str) -> int:
        """The column of ``component``, given by index or by name."""
        if not isinstance(component, str):
            return component
        if component not in self.names:
            raise ValueError(
                f"unknown component {component!r}; allowed: {', '.join(self.names) or 'none named'}"
            )
        return self.names.index(component)

    @property
    def u(self) -> Tensor:
        """The first output component, shape (N,)."""
        return self.value[:, 0]

    def of(self, component: int | str) -> Tensor:
        """The value of one output component, shape (N,)."""
        return self.value[:, self.index(component)]

    def d(self, i: int, component: int | str = 0) -> Tensor:
        """∂u/∂x_i of one output component, shape (N,)."""
        if self.grad is None:
            raise ValueError("this jet has no first derivatives: request order >= 1")
        return self.grad[:, i, self.index(component)]

    def d2(self, i: int, component: int | str = 0) -> Tensor:
        """∂²u/∂x_i² of one output component, shape (N,)."""
        if self.hess_diag is None:
            raise ValueError(
                "this jet has no second derivatives: request order 2 (without trace for d2)"
            )
        return self.hess_diag[:, i, self.index(component)]

    def laplacian(self, dims: tuple[int, ...] | None = None, component: int | str = 0) -> Tensor:
        """Σ_i ∂²u/∂x_i² over ``dims`` (all inputs by default), shape (N,)."""
        component = self.index(component)
        if self.hess_diag is None:
            if self.lap is not None and dims is None:
                return self.lap[:, component]
            if self.lap is not None:
                raise ValueError("a partial Laplacian (dims=...) needs a jet without trace")
            raise ValueError("this jet has no second derivatives: request order 2")
        h = self.hess_diag[:, :, component]
        return h.sum(dim=1) if dims is None else h[:, list(dims)].sum(dim=1)

    @property
    def parts(self) -> tuple[Tensor | None, ...]:
        """(value, grad, hess_diag, lap), in the order of the constructor."""
        return self.value, self.grad, self.hess_diag, self.lap  # not the names nor unknowns

    def map(self, fn) -> Jet:
        """Apply the same linear map to every part (value included)."""
        return Jet(*(None if t is None else fn(t) for t in self.parts))


# --------------------------------------------------------------------------- fast path


def input_jet(x: Tensor, order: int, trace: bool = False) -> Jet:
    """Jet of the inputs themselves: value x, gradient I, second derivatives 0."""
    n, d = x.shape
    grad = hess = lap = None
    if order >= 1:
        grad = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    if order >= 2:
        if trace:
            lap = x.new_zeros(n, d)
        else:
            hess = x.new_zeros(n, d, d)
    return Jet(x, grad, hess, lap)


def linear_jet(z: Jet, weight: Tensor, bias: Tensor | None) -> Jet:
    """v ↦ vWᵀ + b and ∇z, ∂²z, Δz ↦ (·)Wᵀ: the bias only enters the value."""
    wt = weight.t()
    return Jet(
        torch.nn.functional.linear(z.value, weight, bias),
        None if z.grad is None else torch.matmul(z.grad, wt),
        None if z.hess_diag is None else torch.matmul(z.hess_diag, wt),
        None if z.lap is None else torch.matmul(z.lap, wt),
    )


def elementwise_jet(z: Jet, f0: Tensor, f1: Tensor, f2: Tensor | None) -> Jet:
    """Chain rule of an elementwise map with σ, σ', σ'' already evaluated at ``z.value``.

    (z, ∇z, ∂²z, Δz) ↦ (σ(z), σ'(z)∇z, σ''(z)(∇z)² + σ'(z)∂²z, σ''(z)|∇z|² + σ'(z)Δz).
    """
    g = z.grad
    grad = hess = lap = None
    if g is not None:
        f1u = f1.unsqueeze(1)
        grad = f1u * g
    if z.hess_diag is not None:
        hess = torch.addcmul(f1u * z.hess_diag, f2.unsqueeze(1), g.square())
    if z.lap is not None:
        lap = torch.addcmul(f1 * z.lap, f2, g.square().sum(dim=1))
    return Jet(f0, grad, hess, lap)


def supports_jet(module: nn.Module) -> bool:
    """True when every layer of ``module`` knows how to push a jet forward.

    A subclass of ``nn.Sequential`` or ``nn.Linear`` that overrides ``forward`` is
    not trusted: its jet would silently ignore the override.
    """
    kind = type(module)
    if isinstance(module, nn.Sequential):
        return kind.forward is nn.Sequential.forward and all(supports_jet(m) for m in module)
    if isinstance(module, nn.Linear | nn.Identity):
        return kind.forward in (nn.Linear.forward, nn.Identity.forward)
    return hasattr(module, "forward_jet")


def propagate_jet(module: nn.Module, z: Jet) -> Jet:
    """Push a jet through ``module``."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            z = propagate_jet(layer, z)
        return z
    if isinstance(module, nn.Linear):
        out = linear_jet(z, module.weight, module.bias)
        hooks = getattr(module, "_jet_hooks", None)
        if hooks:
            for hook in list(hooks.values()):
                result = hook(module, z, out)
                if result is not None:
                    out = result
        return out
    if isinstance(module, nn.Identity):
        return z
    return module.forward_jet(z)


def register_jet_hook(module: nn.Linear, hook: JetHook) -> RemovableHandle:
    """Call ``hook(module, input_jet, output_jet)`` each time a jet passes through ``module``.

    The hooks of a layer are kept in an ordered dict on the layer (``_jet_hooks``)
    and run in registration order; ``handle.remove()`` takes one off again.
    """
    if not isinstance(module, nn.Linear):
        raise ValueError(f"jet hooks are for nn.Linear layers, got {type(module).__name__}")
    hooks = module.__dict__.get("_jet_hooks")
    if hooks is None:
        hooks = module._jet_hooks = OrderedDict()
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


# --------------------------------------------------------------------------- fallbacks


def jet_torch_func(model: nn.Module, x: Tensor, order: int = 2, trace: bool = False) -> Jet:
    """Jet of any module through ``torch.func`` (vmap of forward-mode Jacobians)."""
    from torch.func import jacfwd, vmap

    def f(xi: Tensor) -> Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    value = model(x)
    grad = hess = None
    if order >= 1:
        grad = vmap(jacfwd(f))(x).transpose(1, 2)  # (N, m, d) -> (N, d, m)
    if order >= 2:
        h = vmap(jacfwd(jacfwd(f)))(x)  # (N, m, d, d)
        hess = torch.diagonal(h, dim1=2, dim2=3).transpose(1, 2)
    return _traced(Jet(value, grad, hess), trace)


def _traced(j: Jet, trace: bool) -> Jet:
    if trace and j.hess_diag is not None:
        return Jet(j.value, j.grad, None, j.hess_diag.sum(dim=1))
    return j


def jet_autograd(model: nn.Module, x: Tensor, order: int = 2, trace: bool = False) -> Jet:
    """Jet by nested ``torch.autograd.grad`` calls — the slow reference path."""
    x = x.detach().requires_grad_(True)
    value = model(x)
    if order == 0:
        return Jet(value)
    n, d = x.shape
    grads, hessians = [], []
    for c in range(value.shape[1]):
        (g,) = torch.autograd.grad(value[:, c].sum(), x, create_graph=True)
        grads.append(g)
        if order >= 2:
            cols = []
            for i in range(d):
                (gi,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)
                cols.append(gi[:, i])
            hessians.append(torch.stack(cols, dim=1))
    grad = torch.stack(grads, dim=2)
    hess = torch.stack(hessians, dim=2) if order >= 2 else None
    return _traced(Jet(value, grad, hess), trace)


# --------------------------------------------------------------------------- entry point


def jet_of_input(module: nn.Module, z: Jet) -> Jet:
    """Jet of ``module`` at the points ``z.value``, where ``z`` is the jet of the raw
    inputs themselves (:func:`input_jet`): propagated when the module supports jets,
    by ``torch.func`` otherwise (order and trace read off the parts ``z`` carries).

    A wrapper taking the raw coordinates (an output transform, a holder of physical
    parameters) calls this in its ``forward_jet``.
    """
    if z.grad is None:
        return Jet(module(z.value))
    if supports_jet(module):
        return propagate_jet(module, z)
    order = 2 if z.hess_diag is not None or z.lap is not None else 1
    return jet_torch_func(module, z.value, order, z.lap is not None)


def jet(model: nn.Module, x: Tensor, order: int = 2, trace: bool = False) -> Jet:
    """Value and input derivatives (to ``order`` 0, 1 or 2) of ``model`` at points ``x`` (N, d).

    With ``trace`` (order 2), the jet carries the Laplacian instead of the Hessian
    diagonal, which is cheaper. Uses forward jet propagation when the model supports
    it, ``torch.func`` otherwise.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order}")
    if x.ndim != 2:
        raise ValueError(f"points must have shape (N, d), got {tuple(x.shape)}")
    if order == 0:
        return Jet(model(x))
    if supports_jet(model):
        return propagate_jet(model, input_jet(x, order, trace))
    return jet_torch_func(model, x, order, trace)

"""Derivatives of a network's output with respect to its inputs.

A PINN residual needs u, the gradient ∇u and a few second derivatives
(u_xx, u_tt, the Laplacian). All of them are on the diagonal of the Hessian, so
a *jet* holds exactly what the residuals need:

    value       u(x)                  shape (N, m)
    grad        ∂u/∂x_i               shape (N, d, m)
    hess_diag   ∂²u/∂x_i²             shape (N, d, m)

Fast path (built-in models): the jet is pushed forward through the network
together with the value (the "forward Laplacian" idea, Li et al. 2023). The jet
is stored stacked as one tensor Z of shape (N, S, k) with S = 1 + d (order 1) or
S = 1 + 2d (order 2): slot 0 the value, slots 1..d the first derivatives,
slots d+1..2d the second derivatives. Then

  * a linear layer maps every slot with the same weight (the bias only enters
    slot 0): Z ↦ Z Wᵀ + e₀ bᵀ — an ordinary linear map with a weight-shared
    extra dimension, which is what K-FAC for PINNs builds on
    (Dangel, Müller & Zeinhofer, NeurIPS 2024);
  * an elementwise σ maps (z, ∇z, ∂²z) to (σ(z), σ'(z)∇z, σ''(z)(∇z)² + σ'(z)∂²z).

Any other ``nn.Module`` falls back to ``torch.func`` (jacfwd over vmap), and
:func:`jet_autograd` is the plain nested ``torch.autograd.grad`` reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Jet", "jet", "jet_autograd", "jet_torch_func", "supports_jet", "propagate_jet"]


@dataclass
class Jet:
    """Value and input derivatives of a network at N points.

    ``value`` is (N, m); ``grad`` and ``hess_diag`` are (N, d, m) or ``None``
    when the jet was computed to a lower order.
    """

    value: Tensor
    grad: Tensor | None = None
    hess_diag: Tensor | None = None

    @property
    def u(self) -> Tensor:
        """The first output component, shape (N,)."""
        return self.value[:, 0]

    def d(self, i: int, component: int = 0) -> Tensor:
        """∂u/∂x_i of one output component, shape (N,)."""
        if self.grad is None:
            raise ValueError("this jet has no first derivatives: request order >= 1")
        return self.grad[:, i, component]

    def d2(self, i: int, component: int = 0) -> Tensor:
        """∂²u/∂x_i² of one output component, shape (N,)."""
        if self.hess_diag is None:
            raise ValueError("this jet has no second derivatives: request order 2")
        return self.hess_diag[:, i, component]

    def laplacian(self, dims: tuple[int, ...] | None = None, component: int = 0) -> Tensor:
        """Σ_i ∂²u/∂x_i² over ``dims`` (all inputs by default), shape (N,)."""
        if self.hess_diag is None:
            raise ValueError("this jet has no second derivatives: request order 2")
        h = self.hess_diag[:, :, component]
        return h.sum(dim=1) if dims is None else h[:, list(dims)].sum(dim=1)


# --------------------------------------------------------------------------- fast path


def input_jet(x: Tensor, order: int) -> Tensor:
    """Stacked jet of the inputs themselves: value x, gradient I, second derivative 0."""
    n, d = x.shape
    slots = [x.unsqueeze(1)]
    if order >= 1:
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        slots.append(eye.expand(n, d, d))
    if order >= 2:
        slots.append(x.new_zeros(n, d, d))
    return torch.cat(slots, dim=1)


def linear_jet(z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Z Wᵀ + e₀ bᵀ on a stacked jet: the bias only enters the value slot."""
    out = torch.matmul(z, weight.t())
    if bias is None:
        return out
    if z.shape[1] == 1:
        return out + bias
    mask = torch.zeros(z.shape[1], 1, dtype=z.dtype, device=z.device)
    mask[0] = 1.0
    return out + mask * bias


def elementwise_jet(z: Tensor, f0: Tensor, f1: Tensor, f2: Tensor | None, d: int) -> Tensor:
    """Chain rule of an elementwise map with σ, σ', σ'' already evaluated at the value slot.

    (z, ∇z, ∂²z) ↦ (σ(z), σ'(z)∇z, σ''(z)(∇z)² + σ'(z)∂²z).
    """
    order = (z.shape[1] - 1) // d
    slots = [f0.unsqueeze(1)]
    if order >= 1:
        g = z[:, 1 : 1 + d]
        f1u = f1.unsqueeze(1)
        slots.append(f1u * g)
    if order >= 2:
        h = z[:, 1 + d :]
        slots.append(f2.unsqueeze(1) * g.square() + f1u * h)
    return torch.cat(slots, dim=1)


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


def propagate_jet(module: nn.Module, z: Tensor, d: int) -> Tensor:
    """Push a stacked jet (N, S, k) through ``module``."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            z = propagate_jet(layer, z, d)
        return z
    if isinstance(module, nn.Linear):
        return linear_jet(z, module.weight, module.bias)
    if isinstance(module, nn.Identity):
        return z
    return module.forward_jet(z, d)


def unstack(z: Tensor, d: int, order: int) -> Jet:
    value = z[:, 0]
    grad = z[:, 1 : 1 + d] if order >= 1 else None
    hess = z[:, 1 + d : 1 + 2 * d] if order >= 2 else None
    return Jet(value, grad, hess)


# --------------------------------------------------------------------------- fallbacks


def jet_torch_func(model: nn.Module, x: Tensor, order: int = 2) -> Jet:
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
    return Jet(value, grad, hess)


def jet_autograd(model: nn.Module, x: Tensor, order: int = 2) -> Jet:
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
    return Jet(value, grad, hess)


# --------------------------------------------------------------------------- entry point


def jet(model: nn.Module, x: Tensor, order: int = 2) -> Jet:
    """Value and input derivatives (to ``order`` 0, 1 or 2) of ``model`` at points ``x`` (N, d).

    Uses forward jet propagation when the model supports it, ``torch.func`` otherwise.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order}")
    if x.ndim != 2:
        raise ValueError(f"points must have shape (N, d), got {tuple(x.shape)}")
    if order == 0:
        return Jet(model(x))
    if supports_jet(model):
        d = x.shape[1]
        return unstack(propagate_jet(model, input_jet(x, order), d), d, order)
    return jet_torch_func(model, x, order)

"""What a layer is for K-FAC: an ``nn.Linear`` block M = [W | b], its passes and hooks.

A pass of R rows with S jet slots records the bias-augmented inputs ã (R, S, I) and,
after a backward pass, the output gradients g (R, S, O). From them come the factor
sums Σ ã ãᵀ and Σ g gᵀ, the gradient Σ_n r_n Σ_s g_ns ã_nsᵀ and the Jacobian
products (J v)_n = Σ_s g_nsᵀ V ã_ns (see :mod:`pinnopt.optim.kfac`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from pinnopt.derivatives import Jet, register_jet_hook

VALUE, JET = 0, 1  # groups of passes: value only (one slot) or with derivative slots


def stack_slots(parts: Iterable[Tensor | None]) -> Tensor:
    """Jet parts (value (N, m), grad (N, d, m), hess_diag (N, d, m), lap (N, m)) → (N, S, m).

    The value is slot 0; absent parts are skipped.
    """
    return torch.cat([t.unsqueeze(1) if t.ndim == 2 else t for t in parts if t is not None], 1)


@dataclass
class LayerPass:
    """One pass of a batch through a linear layer: ã (R, S, I) and the outputs' graph.

    ``outputs`` are the output tensors (one per jet part) with their autograd graph;
    ``grads`` (R, S, O) are the output gradients once a backward pass has set them.
    ``part_grads`` collects them from tensor hooks during ``loss.backward()``.
    """

    inputs: Tensor
    outputs: list[Tensor]
    grads: Tensor | None = None
    part_grads: list[Tensor | None] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.inputs.shape[0]

    @property
    def slots(self) -> int:
        return self.inputs.shape[1]

    @property
    def group(self) -> int:
        return VALUE if self.slots == 1 else JET


class LinearLayer:
    """What one ``nn.Linear`` contributes to K-FAC: its passes, factors, gradient, products.

    Weight and bias are handled as one matrix M = [W | b] of shape (O, I) with
    I = in_features + 1 when the bias is trained; the bias column of ã is 1 on the
    value slot and 0 on derivative slots (the bias only enters the value).
    """

    def __init__(self, module: nn.Linear, train_bias: bool) -> None:
        self.module = module
        self.bias = train_bias
        self.passes: list[LayerPass] = []

    @property
    def params(self) -> list[Tensor]:
        return [self.module.weight, self.module.bias] if self.bias else [self.module.weight]

    def record(self, inputs: Tensor, outputs: list[Tensor]) -> LayerPass:
        """Keep a pass with inputs a (R, S, in_features), detached and bias-augmented."""
        a = inputs.detach()
        if self.bias:
            one = torch.zeros_like(a[..., :1])
            one[:, 0] = 1.0
            a = torch.cat([a, one], dim=-1)
        p = LayerPass(a, outputs)
        self.passes.append(p)
        return p

    @staticmethod
    def input_factor(p: LayerPass) -> Tensor:
        """Σ_{n,s} ã_ns ã_nsᵀ (not yet divided by R·S)."""
        a = p.inputs.reshape(-1, p.inputs.shape[-1])
        return a.t() @ a

    @staticmethod
    def grad_factor(p: LayerPass) -> Tensor:
        """Σ_{n,s} g_ns g_nsᵀ."""
        g = p.grads.reshape(-1, p.grads.shape[-1])
        return g.t() @ g

    @staticmethod
    def gradient(p: LayerPass, r: Tensor) -> Tensor:
        """∂(½‖r‖²)/∂M = Σ_n r_n Σ_s g_ns ã_nsᵀ, for the pass's slice r of the residuals."""
        g = (p.grads * r[:, None, None]).reshape(-1, p.grads.shape[-1])
        return g.t() @ p.inputs.reshape(-1, p.inputs.shape[-1])

    @staticmethod
    def jvp(p: LayerPass, v: Tensor) -> Tensor:
        """(J v)_n = Σ_s g_nsᵀ V ã_ns for this layer's block V (O, I) of v, shape (R,)."""
        return (torch.matmul(p.inputs, v.t()) * p.grads).sum(dim=(1, 2))

    def to_matrix(self, tensors: Sequence[Tensor]) -> Tensor:
        """(weight-shaped, bias-shaped) → M = [W | b]."""
        if not self.bias:
            return tensors[0]
        return torch.cat([tensors[0], tensors[1].unsqueeze(1)], dim=1)

    def from_matrix(self, m: Tensor) -> list[Tensor]:
        """M = [W | b] → [weight-shaped, bias-shaped]."""
        if not self.bias:
            return [m]
        return [m[:, :-1], m[:, -1]]

    def register_hooks(
        self, keep: Callable[[LinearLayer, Tensor, list[Tensor]], None]
    ) -> list[RemovableHandle]:
        """Hand every pass made with gradients enabled to ``keep(layer, inputs, outputs)``.

        A forward hook catches plain ``module(x)`` calls (one slot), a jet hook
        (:func:`pinnopt.derivatives.register_jet_hook`) jet passes (one slot per part).
        """

        def forward_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if torch.is_grad_enabled():
                x = args[0]
                keep(self, x.reshape(-1, 1, x.shape[-1]), [output])

        def jet_hook(module: nn.Module, z_in: Jet, z_out: Jet) -> None:
            if torch.is_grad_enabled():
                keep(self, stack_slots(z_in.parts), [t for t in z_out.parts if t is not None])

        return [
            self.module.register_forward_hook(forward_hook),
            register_jet_hook(self.module, jet_hook),
        ]

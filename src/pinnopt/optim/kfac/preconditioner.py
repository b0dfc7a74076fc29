"""When K-FAC runs: :class:`KFACPreconditioner` records passes, updates factors and inverses.

It preconditions ``.grad`` in front of any torch optimizer; :class:`pinnopt.optim.kfac.KFAC`
drives it from its own step.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from pinnopt.optim.kfac.curvature import DAMPING_SPLITS, INVERSES, KroneckerCurvature
from pinnopt.optim.kfac.layers import JET, VALUE, LinearLayer, stack_slots


def check_hyperparameters(
    damping: float, decay: float, factor_period: int, inverse_period: int, inverse: str, split: str
) -> None:
    """Raise ``ValueError`` naming the first invalid setting shared by K-FAC's classes."""
    if not (damping > 0 and math.isfinite(damping)):
        raise ValueError(f"Invalid damping: {damping}")
    if not 0 <= decay < 1:
        raise ValueError(f"Invalid decay: {decay} (need 0 <= decay < 1)")
    for name, value in (("factor_period", factor_period), ("inverse_period", inverse_period)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"Invalid {name}: {value}")
    if inverse not in INVERSES:
        raise ValueError(f"Invalid inverse: {inverse!r}; allowed: {', '.join(INVERSES)}")
    if split not in DAMPING_SPLITS:
        raise ValueError(f"Invalid damping_split: {split!r}; allowed: {', '.join(DAMPING_SPLITS)}")


class KFACPreconditioner:
    """K-FAC in front of any torch optimizer: ``.grad`` of every ``nn.Linear`` ← K-FAC⁻¹ ``.grad``.

    Least squares, exact GGN factors (see the module docstring)::

        pre = KFACPreconditioner(model, damping=1e-3)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        for _ in range(steps):
            opt.zero_grad()
            r = residuals(model)      # forward passes are recorded by hooks
            pre.backward(r)           # like (½‖r‖²).backward(), plus per-residual g_n
            pre.step()                # precondition .grad
            opt.step()

    Any other loss: ``loss.backward(); pre.step()`` builds G from the loss's output
    gradients g̃ (captured by tensor hooks) as R·Σ g̃ g̃ᵀ for a pass of R rows, the
    empirical Fisher of a loss averaged over the rows.

    Forward hooks (plain ``model(x)`` calls) and jet hooks
    (:func:`pinnopt.derivatives.register_jet_hook`) record every pass made with
    gradients enabled; ``step()`` consumes and clears them. ``remove()`` takes the
    hooks off; with ``hooks=False`` they are only on inside ``with pre.recording():``.

    Args:
        model: the network; every ``nn.Linear`` whose weight is in ``params`` is preconditioned.
        params: the trained parameters (default: all of ``model``'s that require grad).
        damping: Tikhonov damping λ > 0, split between the factors by ``damping_split``.
        decay: running-average factor β of the Kronecker factors, 0 ≤ β < 1.
        factor_period: steps between factor updates.
        inverse_period: steps between recomputations of the damped inverses.
        inverse: ``"eigen"`` (exact inverse of the sum over groups) or ``"cholesky"``.
        damping_split: ``"pi"`` (π-correction) or ``"sqrt"`` (√λ on each factor).
        hooks: register the hooks now (True) or only inside :meth:`recording` (False).
        store: where each layer's tensors live, as ``store(weight) -> dict``
            (default: this object's ``state``); :class:`KFAC` passes its optimizer state.
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[Tensor] | None = None,
        damping: float = 1e-3,
        decay: float = 0.95,
        factor_period: int = 1,
        inverse_period: int = 1,
        inverse: str = "eigen",
        damping_split: str = "pi",
        hooks: bool = True,
        store: Callable[[Tensor], dict[str, Any]] | None = None,
    ) -> None:
        check_hyperparameters(damping, decay, factor_period, inverse_period, inverse, damping_split)
        self.model = model
        self.damping, self.decay = damping, decay
        self.factor_period, self.inverse_period = factor_period, inverse_period
        self.inverse, self.damping_split = inverse, damping_split
        params = [p for p in model.parameters() if p.requires_grad] if params is None else params
        ids = {id(p) for p in params}
        self.layers = [
            LinearLayer(m, m.bias is not None and id(m.bias) in ids)
            for m in model.modules()
            if isinstance(m, nn.Linear) and id(m.weight) in ids
        ]
        covered = {id(p) for layer in self.layers for p in layer.params}
        self.other_params = [p for p in params if id(p) not in covered]
        self.state: dict[Tensor, dict[str, Any]] = defaultdict(dict)
        self._store = store if store is not None else self.state.__getitem__
        self.steps = 0
        self._handles: list[RemovableHandle] = []
        self._capture_grads = hooks
        if hooks:
            self._handles = self._register()

    # ------------------------------------------------------------------ hooks

    def _register(self) -> list[RemovableHandle]:
        return [h for layer in self.layers for h in layer.register_hooks(self._keep)]

    def _keep(self, layer: LinearLayer, inputs: Tensor, outputs: list[Tensor]) -> None:
        p = layer.record(inputs, outputs)
        if self._capture_grads and all(t.requires_grad for t in outputs):
            p.part_grads = [None] * len(outputs)
            for i, t in enumerate(outputs):
                t.register_hook(lambda grad, p=p, i=i: p.part_grads.__setitem__(i, grad))

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Record forward passes inside the block (hooks on only there unless already on)."""
        handles = [] if self._handles else self._register()
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def remove(self) -> None:
        """Take the hooks off the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def clear(self) -> None:
        """Forget the recorded passes (and their graphs)."""
        for layer in self.layers:
            layer.passes = []

    # ------------------------------------------------------------------ backward

    def _residual_slices(self, r: Tensor, sizes: list[int] | None = None) -> list[tuple[int, int]]:
        """Which entries of r belong to each recorded pass: one residual per row, in order.

        ``sizes`` (the objective's points per term, when the closure tells them) must be
        the passes the layers saw: one forward pass per term, in term order."""
        counts = {tuple(p.rows for p in layer.passes) for layer in self.layers}
        if len(counts) != 1:
            raise ValueError(
                "K-FAC: the linear layers saw different passes; every layer must see each "
                "forward pass of the model once"
            )
        (rows,) = counts
        if sizes is not None and list(rows) != list(sizes):
            raise ValueError(
                f"K-FAC: the objective's terms have {list(sizes)} points, but the layers saw "
                f"forward passes of {list(rows)}: each term must be one pass, in term order"
            )
        if sum(rows) != r.numel():
            raise ValueError(
                f"K-FAC needs one residual per point and pass: {r.numel()} residuals for "
                f"passes of {list(rows)} points"
            )
        bounds, start = [], 0
        for n in rows:
            bounds.append((start, start + n))
            start += n
        return bounds

    def residual_gradients(self, r: Tensor, sizes: list[int] | None = None) -> list[Tensor]:
        """Per-residual output gradients g_ns (into each pass) and ∂(½‖r‖²)/∂params.

        One backward pass of Σ_n r_n through the recorded outputs gives every
        g_ns = ∂r_n/∂z_ns; the layers' gradients are assembled from them; parameters
        outside linear layers take a second (ordinary) backward pass. Returns the
        gradients in the order of ``self.params``.
        """
        r = r.reshape(-1)
        bounds = self._residual_slices(r, sizes)
        others = [
            g if g is not None else torch.zeros_like(p)
            for g, p in zip(
                torch.autograd.grad(
                    r, self.other_params, r.detach(), retain_graph=True, allow_unused=True
                )
                if self.other_params
                else [],
                self.other_params,
            )
        ]
        passes = [p for layer in self.layers for p in layer.passes]
        outputs = [t for p in passes for t in p.outputs]
        grads = iter(
            torch.autograd.grad(
                r, outputs, torch.ones_like(r), allow_unused=True, materialize_grads=True
            )
            if outputs
            else []
        )
        for p in passes:
            p.grads = stack_slots([next(grads).detach() for _ in p.outputs])
        rd = r.detach()
        out = []
        for layer in self.layers:
            m = sum(LinearLayer.gradient(p, rd[a:b]) for p, (a, b) in zip(layer.passes, bounds))
            out += layer.from_matrix(m)
        return out + others

    @property
    def params(self) -> list[Tensor]:
        """Linear-layer parameters (weight, bias per layer), then the others."""
        return [p for layer in self.layers for p in layer.params] + self.other_params

    def backward(self, r: Tensor) -> None:
        """Like ``(0.5 * r.square().sum()).backward()`` for the parameters, with GGN factors."""
        for p, g in zip(self.params, self.residual_gradients(r)):
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)

    def _ensure_grads(self) -> None:
        """Output gradients from tensor hooks (empirical Fisher) where no residual backward ran."""
        for layer in self.layers:
            for p in layer.passes:
                if p.grads is None:
                    if not p.part_grads or any(g is None for g in p.part_grads):
                        raise ValueError(
                            "K-FAC: no output gradients for a recorded pass; call "
                            "loss.backward() or pre.backward(r) before step()"
                        )
                    p.grads = stack_slots([g.detach() for g in p.part_grads]) * math.sqrt(p.rows)

    # ------------------------------------------------------------------ factors and inverse

    def curvature(self, layer: LinearLayer) -> KroneckerCurvature:
        return KroneckerCurvature(self._store(layer.module.weight))

    def update_factors(
        self, decay: float | None = None, reduce: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        """Fold the recorded passes into the running averages, group by group.

        ``reduce`` (a sum over processes that each hold a share of the points) makes the
        factors those of all the points: Σ a aᵀ, Σ g gᵀ and the row count are summed
        before A is divided by the count."""
        decay = self.decay if decay is None else decay
        for layer in self.layers:
            for group in (VALUE, JET):
                passes = [p for p in layer.passes if p.group == group]
                if not passes:
                    continue
                count = sum(p.rows * p.slots for p in passes)
                a = sum(LinearLayer.input_factor(p) for p in passes)
                g = sum(LinearLayer.grad_factor(p) for p in passes)
                if reduce is not None:
                    sizes = [a.numel(), g.numel(), 1]
                    packed = torch.cat([a.reshape(-1), g.reshape(-1), a.new_tensor([count])])
                    pa, pg, pn = reduce(packed).split(sizes)
                    a, g, count = pa.view_as(a), pg.view_as(g), float(pn)
                self.curvature(layer).update(group, a / count, g, float(count), decay)

    def update_inverses(self, damping: float | None = None) -> None:
        damping = self.damping if damping is None else damping
        for layer in self.layers:
            self.curvature(layer).invert(damping, self.damping_split, self.inverse)

    def precondition(self, grads: Sequence[Tensor]) -> list[Tensor]:
        """K-FAC⁻¹ applied to gradients given in the order of ``self.params`` (others unchanged)."""
        out, i = [], 0
        for layer in self.layers:
            k = len(layer.params)
            curvature = self.curvature(layer)
            block = grads[i : i + k]
            if curvature.inverted:
                block = layer.from_matrix(curvature.solve(layer.to_matrix(block)))
            out += block
            i += k
        return out + list(grads[i:])

    def jvp(self, vectors: Sequence[Tensor]) -> Tensor:
        """J v for the linear layers' parameters (v in the order of ``self.params``), shape (M,).

        Exact: built from the recorded ã_ns and g_ns of the last residual backward.
        """
        pieces, i = [], 0
        for layer in self.layers:
            k = len(layer.params)
            v = layer.to_matrix(vectors[i : i + k])
            pieces.append(torch.cat([LinearLayer.jvp(p, v) for p in layer.passes]))
            i += k
        return torch.stack(pieces).sum(0)

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self) -> None:
        """Update factors and inverses when due, precondition ``.grad``, clear the passes."""
        if any(layer.passes for layer in self.layers):
            self._ensure_grads()
            if self.steps % self.factor_period == 0:
                self.update_factors()
        if self.steps % self.inverse_period == 0:
            self.update_inverses()
        params = self.params
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        for p, g in zip(params, self.precondition(grads)):
            if p.grad is not None:
                p.grad.copy_(g)
        self.clear()
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "layers": [dict(self._store(layer.module.weight)) for layer in self.layers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["layers"]) != len(self.layers):
            raise ValueError(
                f"state has {len(state['layers'])} layers, this preconditioner {len(self.layers)}"
            )
        self.steps = int(state["steps"])
        for layer, st in zip(self.layers, state["layers"]):
            target = self._store(layer.module.weight)
            target.clear()
            target.update({k: v.clone() if isinstance(v, Tensor) else v for k, v in st.items()})

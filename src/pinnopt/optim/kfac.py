"""K-FAC: Kronecker-factored approximate curvature, for ordinary networks and for PINNs.

Curvature. For the least-squares loss L(θ) = ½‖r(θ)‖² (the one contract of
:mod:`pinnopt.objective`) the generalized Gauss–Newton matrix is JᵀJ with
J = ∂r/∂θ. K-FAC (Martens & Grosse, "Optimizing neural networks with
Kronecker-factored approximate curvature", ICML 2015) keeps one block per
``nn.Linear`` layer z = W a + b and approximates it by a Kronecker product. With
the bias folded into the weight, ã = (a, 1) and M = [W | b], and the output
gradient g_n = ∂r_n/∂z_n of residual n (each residual depends on its own point
only, so one backward pass of Σ_n r_n gives all of them),

    Σ_n J_nᵀ J_n  (block of M)  ≈  A ⊗ G,   A = (1/N) Σ_n ã_n ã_nᵀ,   G = Σ_n g_n g_nᵀ,

acting on a matrix V of M's shape as V ↦ G V A. This is the GGN, not the
empirical Fisher: g_n is the gradient of the residual, not of its square.

PINNs (Dangel, Müller & Zeinhofer, "Kronecker-factored approximate curvature for
physics-informed neural networks", NeurIPS 2024). The jet of a residual —
value, ∇u, ∂²u or Δu (:mod:`pinnopt.derivatives`) — passes through a linear layer
as S slots that share the weight: z_ns = W a_ns (+ b on the value slot s = 0
only, so ã_ns = (a_ns, 1) for s = 0 and (a_ns, 0) otherwise), and
∂r_n/∂M = Σ_s g_ns ã_nsᵀ. Treating the shared slots as more data
("K-FAC-expand", Eschenhagen et al., NeurIPS 2023) gives, for the N_k points of
residual term k,

    A_k = (1/(N_k S)) Σ_{n,s} ã_ns ã_nsᵀ,        G_k = Σ_{n,s} g_ns g_nsᵀ.

Terms. The layer sees one pass of the network per term (``Objective`` evaluates
each term's points once). Passes with one slot (value-only terms: boundary,
initial and data conditions) form one group, passes with derivative slots (the
PDE operator, Neumann conditions) the other; inside a group the passes are pooled
(expand over their union: A_g = Σ ã ãᵀ / Σ N S, G_g = Σ_k G_k). The curvature of
the layer is then A_0 ⊗ G_0 + A_1 ⊗ G_1 — the interior plus boundary Gramian of
the paper — and ``inverse="eigen"`` inverts this sum *exactly* through the
generalized eigenproblems A_0 V = A_1 V Λ_A, G_0 U = G_1 U Λ_G:

    (A_0 ⊗ G_0 + A_1 ⊗ G_1)⁻¹ : M ↦ U [(Uᵀ M V) ⊘ (λ_G λ_Aᵀ + 1)] Vᵀ,

as the paper does. With a single group this is the eigenbasis inverse
U [(Uᵀ M V) ⊘ λ_G λ_Aᵀ] Vᵀ. ``inverse="cholesky"`` is cheaper and coarser: it
pools all passes into one Kronecker product and solves with Cholesky factors.

Damping. Tikhonov damping λ is split between the factors of each product,
A + π√λ I and G + (√λ/π) I, with π = √((tr A / dim A) / (tr G / dim G)) (the
π-correction of Martens & Grosse, §6.3; ``damping_split="pi"``) or π = 1
(``damping_split="sqrt"``).

Update (:class:`KFAC`). From the gradient ∇L = Jᵀr and the K-FAC direction
Δ = −(K-FAC + damping)⁻¹ ∇L:

* ``update="auto"`` (default): the step δ = αΔ + μδ_prev minimizes the quadratic
  model m(δ) = ½ δᵀ(JᵀJ + λI)δ + ∇Lᵀδ over (α, μ) — a 2 × 2 solve with the exact
  products JΔ and Jδ_prev (Martens & Grosse §7). λ follows the Levenberg–Marquardt
  rule on the reduction ratio ρ (§6.5) and a step that does not lower the loss is
  taken back and retried with more damping, so every step lowers the loss.
* ``update="line_search"``: θ ← θ + α d with d = Δ + μ d_prev and α the best of the
  grid lr·2⁻ᵏ, k = 0 … line_search_steps − 1 (as in ENGD, Müller & Zeinhofer 2023).
* ``base="adam"`` (any registered first-order optimizer): the preconditioned
  gradient replaces ``.grad`` and the base optimizer steps.

The layer Jacobian products need no extra backward pass: J_n v = Σ_s g_nsᵀ V ã_ns
for a layer's block V of v, from the same recorded ã_ns and g_ns. Parameters
outside ``nn.Linear`` layers get the plain gradient (and autograd products).

Layout, after kfac-pytorch: :class:`LinearLayer` is what a layer contributes
(recorded passes, factors, gradients, products), :class:`KroneckerCurvature`
what the algorithm stores (running averages of the factors, damped inverses),
:class:`KFACPreconditioner` when it runs (hooks, factor and inverse periods;
usable in front of any torch optimizer) and :class:`KFAC` the optimizer.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from pinnopt.derivatives import Jet, register_jet_hook, supports_jet
from pinnopt.optim.gauss_newton import _MatrixFree
from pinnopt.optim.registry import build_optimizer, get_optimizer_spec, register_optimizer

INVERSES = ("eigen", "cholesky")
DAMPING_SPLITS = ("pi", "sqrt")
UPDATES = ("auto", "line_search")
VALUE, JET = 0, 1  # groups of passes: value only (one slot) or with derivative slots


def stack_slots(parts: Iterable[Tensor | None]) -> Tensor:
    """Jet parts (value (N, m), grad (N, d, m), hess_diag (N, d, m), lap (N, m)) → (N, S, m).

    The value is slot 0; absent parts are skipped.
    """
    return torch.cat([t.unsqueeze(1) if t.ndim == 2 else t for t in parts if t is not None], 1)


# --------------------------------------------------------------------------- what a layer is


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


# --------------------------------------------------------------------------- what it stores


def _damped(a: Tensor, g: Tensor, damping: float, split: str) -> tuple[Tensor, Tensor]:
    """A + π√λ I and G + (√λ/π) I (π = 1 for ``split="sqrt"``)."""
    pi = 1.0
    if split == "pi":
        ta, tg = float(a.diagonal().mean()), float(g.diagonal().mean())
        if ta > 0 and tg > 0 and math.isfinite(ta / tg):
            pi = math.sqrt(ta / tg)
    s = math.sqrt(damping)
    eye_a = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    eye_g = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return a + (pi * s) * eye_a, g + (s / pi) * eye_g


def _pencil(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues λ and vectors V of x0 V = x1 V diag(λ) with Vᵀ x1 V = I (x1 SPD)."""
    chol = torch.linalg.cholesky(x1)
    eye = torch.eye(x1.shape[0], dtype=x1.dtype, device=x1.device)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    c = inv @ x0 @ inv.t()
    lam, q = torch.linalg.eigh(0.5 * (c + c.t()))
    return lam, inv.t() @ q


class KroneckerCurvature:
    """What K-FAC stores for one layer, in a dict of tensors (an optimizer's per-param state).

    Running averages A_g ← β A_g + (1 − β) A_g,new (and the same for G_g and the
    slot-row count n_g) for the groups g seen so far, and the damped inverse of
    Σ_g A_g ⊗ G_g: eigenbases ("VA", "lA", "VG", "lG", "shift") or Cholesky
    factors ("LA", "LG"). Inverses are computed in float64.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def groups(self) -> list[int]:
        return [k for k in (VALUE, JET) if f"A{k}" in self.state]

    def update(self, group: int, a: Tensor, g: Tensor, count: float, decay: float) -> None:
        st = self.state
        if f"A{group}" not in st:
            st[f"A{group}"], st[f"G{group}"], st[f"n{group}"] = a.clone(), g.clone(), count
            return
        st[f"A{group}"].mul_(decay).add_(a, alpha=1 - decay)
        st[f"G{group}"].mul_(decay).add_(g, alpha=1 - decay)
        st[f"n{group}"] = decay * st[f"n{group}"] + (1 - decay) * count

    def invert(self, damping: float, split: str, inverse: str) -> None:
        st = self.state
        factors = [(st[f"A{k}"].double(), st[f"G{k}"].double(), st[f"n{k}"]) for k in self.groups()]
        if not factors:
            return
        dtype = st[f"A{self.groups()[0]}"].dtype
        for key in ("VA", "lA", "VG", "lG", "shift", "LA", "LG"):
            st.pop(key, None)
        if inverse == "cholesky" or len(factors) == 1:
            count = sum(n for _, _, n in factors)
            a = sum(n * a for a, _, n in factors) / count
            g = sum(g for _, g, _ in factors)
            a, g = _damped(a, g, damping, split)
            if inverse == "cholesky":
                st["LA"] = torch.linalg.cholesky(a).to(dtype)
                st["LG"] = torch.linalg.cholesky(g).to(dtype)
                return
            la, va = torch.linalg.eigh(a)
            lg, vg = torch.linalg.eigh(g)
            shift = 0.0
        else:
            (a0, g0), (a1, g1) = (_damped(a, g, damping, split) for a, g, _ in factors)
            la, va = _pencil(a0, a1)
            lg, vg = _pencil(g0, g1)
            shift = 1.0
        st["VA"], st["lA"], st["VG"], st["lG"] = (t.to(dtype) for t in (va, la, vg, lg))
        st["shift"] = shift

    @property
    def inverted(self) -> bool:
        return "VA" in self.state or "LA" in self.state

    def solve(self, m: Tensor) -> Tensor:
        """X with Σ_g G_g X A_g = M for the damped factors (M of shape (O, I))."""
        st = self.state
        if "LA" in st:
            x = torch.cholesky_solve(m, st["LG"])
            return torch.cholesky_solve(x.t(), st["LA"]).t()
        va, vg = st["VA"], st["VG"]
        y = (vg.t() @ m @ va) / (torch.outer(st["lG"], st["lA"]) + st["shift"])
        return vg @ y @ va.t()


# --------------------------------------------------------------------------- when it runs


def _check_hyperparameters(
    damping: float, decay: float, factor_period: int, inverse_period: int, inverse: str, split: str
) -> None:
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
        _check_hyperparameters(
            damping, decay, factor_period, inverse_period, inverse, damping_split
        )
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
        handles = []
        for layer in self.layers:
            handles.append(layer.module.register_forward_hook(self._forward_hook(layer)))
            handles.append(register_jet_hook(layer.module, self._jet_hook(layer)))
        return handles

    def _forward_hook(self, layer: LinearLayer):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if torch.is_grad_enabled():
                x = args[0]
                self._keep(layer, x.reshape(-1, 1, x.shape[-1]), [output])

        return hook

    def _jet_hook(self, layer: LinearLayer):
        def hook(module: nn.Module, z_in: Jet, z_out: Jet) -> None:
            if torch.is_grad_enabled():
                self._keep(
                    layer, stack_slots(z_in.parts), [t for t in z_out.parts if t is not None]
                )

        return hook

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

    def _residual_slices(self, r: Tensor) -> list[tuple[int, int]]:
        """Which entries of r belong to each recorded pass: one residual per row, in order."""
        counts = {tuple(p.rows for p in layer.passes) for layer in self.layers}
        if len(counts) != 1:
            raise ValueError(
                "K-FAC: the linear layers saw different passes; every layer must see each "
                "forward pass of the model once"
            )
        (rows,) = counts
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

    def residual_gradients(self, r: Tensor) -> list[Tensor]:
        """Per-residual output gradients g_ns (into each pass) and ∂(½‖r‖²)/∂params.

        One backward pass of Σ_n r_n through the recorded outputs gives every
        g_ns = ∂r_n/∂z_ns; the layers' gradients are assembled from them; parameters
        outside linear layers take a second (ordinary) backward pass. Returns the
        gradients in the order of ``self.params``.
        """
        r = r.reshape(-1)
        bounds = self._residual_slices(r)
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

    def update_factors(self, decay: float | None = None) -> None:
        """Fold the recorded passes into the running averages, group by group."""
        decay = self.decay if decay is None else decay
        for layer in self.layers:
            for group in (VALUE, JET):
                passes = [p for p in layer.passes if p.group == group]
                if not passes:
                    continue
                count = sum(p.rows * p.slots for p in passes)
                a = sum(LinearLayer.input_factor(p) for p in passes) / count
                g = sum(LinearLayer.grad_factor(p) for p in passes)
                self.curvature(layer).update(group, a, g, float(count), decay)

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


# --------------------------------------------------------------------------- the optimizer


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
    model pass, in the order of the passes (what ``Objective`` does). Hooks are on
    the model only during ``step``.

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
        _check_hyperparameters(
            damping, decay, factor_period, inverse_period, inverse, damping_split
        )
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
                step=0, damping=group["damping"], nu=2.0, rho=math.nan, alpha=math.nan,
                mu=math.nan, rejected=0,
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
        pre.clear()
        with pre.recording(), torch.enable_grad():
            r = closure().reshape(-1)
        loss = 0.5 * r.detach().dot(r.detach())
        if not torch.isfinite(loss):
            pre.clear()
            return loss.detach()
        others = None
        with torch.enable_grad():
            if pre.other_params and self.base is None and group["update"] == "auto":
                others = _MatrixFree(r, pre.other_params)
            grads = pre.residual_gradients(r)
        step = state["step"]
        if step % group["factor_period"] == 0:
            pre.update_factors(group["decay"])
        damping = state["damping"]
        if step % group["inverse_period"] == 0 or not pre.curvature(pre.layers[0]).inverted:
            pre.update_inverses(damping)
        if self.base is not None:
            for p, d in zip(params, pre.precondition(grads)):
                p.grad = d.clone()
            self.base.step()
        elif group["update"] == "auto":
            self._auto(closure, grads, float(loss), others, group, state)
        else:
            self._line_search(closure, grads, float(loss), group, state)
        pre.clear()
        state["step"] += 1
        return loss.detach()

    def _loss(self, closure: Callable[[], Tensor]) -> float:
        r = closure().reshape(-1)
        return float(0.5 * r.dot(r))

    def _auto(self, closure, grads, loss, others, group, state) -> None:
        """δ = αΔ + μδ_prev minimizing the damped quadratic model (Martens & Grosse §6.5, §7)."""
        pre, params = self.preconditioner, self._params
        prev = [self.state[p].get("update") for p in params]
        has_prev = all(t is not None for t in prev)
        start = [p.detach().clone() for p in params]
        for attempt in range(group["max_retries"] + 1):
            lam = state["damping"]
            if attempt > 0:
                pre.update_inverses(lam)
            delta = [-d for d in pre.precondition(grads)]
            vectors = [delta] + ([prev] if has_prev else [])
            jv = [self._jvp(v, others) for v in vectors]
            k = len(vectors)
            quad = torch.empty(k, k, dtype=torch.float64)
            lin = torch.empty(k, dtype=torch.float64)
            for i in range(k):
                lin[i] = _dot(grads, vectors[i])
                for j in range(i, k):
                    quad[i, j] = quad[j, i] = jv[i].dot(jv[j]) + lam * _dot(vectors[i], vectors[j])
            coef = _solve_small(quad, lin)
            coef = coef * group["lr"]
            predicted = float(coef.dot(lin) + 0.5 * coef.dot(quad @ coef))
            update = [
                sum(float(c) * v[i] for c, v in zip(coef, vectors)) for i in range(len(params))
            ]
            for p, p0, u in zip(params, start, update):
                torch.add(p0, u, out=p)
            new_loss = self._loss(closure)
            rho = (new_loss - loss) / predicted if predicted < 0 else -math.inf
            state["rho"], state["alpha"] = rho, float(coef[0])
            state["mu"] = float(coef[1]) if k > 1 else 0.0
            accepted = math.isfinite(new_loss) and new_loss < loss
            if group["adapt_damping"]:
                omega = group["damping_factor"]
                if not accepted:  # Nielsen: grow λ faster with every rejection in a row
                    lam, state["nu"] = lam * state["nu"], 2 * state["nu"]
                elif rho > 0.75:
                    lam = lam * omega
                elif rho < 0.25:
                    lam = lam / omega
                state["damping"] = min(group["damping_max"], max(group["damping_min"], lam))
            if accepted:
                state["nu"] = 2.0
                for p, u in zip(params, update):
                    self.state[p]["update"] = u
                return
            for p, p0 in zip(params, start):
                p.copy_(p0)
            state["rejected"] += 1
            if not group["adapt_damping"] or lam >= group["damping_max"]:
                return

    def _jvp(self, v: Sequence[Tensor], others: _MatrixFree | None) -> Tensor:
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
        best = (loss, 0.0)
        for k in range(group["line_search_steps"]):
            alpha = group["lr"] * 0.5**k
            for p, p0, t in zip(params, start, d):
                torch.add(p0, t, alpha=alpha, out=p)
            value = self._loss(closure)
            if value < best[0]:
                best = (value, alpha)
            elif best[1] > 0:
                break  # past the best step of the scan
        for p, p0, t in zip(params, start, d):
            torch.add(p0, t, alpha=best[1], out=p)
        state["alpha"], state["rho"] = best[1], math.nan
        if best[1] == 0.0:
            state["rejected"] += 1
        if group["momentum"] > 0:
            for p, t in zip(params, d):
                if best[1] > 0:
                    self.state[p]["direction"] = t
                else:
                    self.state[p].pop("direction", None)


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

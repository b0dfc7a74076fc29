"""The update rules of the meta-learned optimizers: one ``nn.Module`` per method.

Each rule maps the gradients g_i of the parameter tensors θ_i and an
:class:`RuleState` to updates u_i (θ_i ← θ_i + u_i) and the next state. The
rules are differentiable in their own parameters φ (and in g), so an inner run can
be unrolled and the meta-loss backpropagated into φ; the same modules, loaded from a
file and run under ``torch.no_grad``, are the :class:`LearnedOptimizer`.

* :class:`LSTMRule` (``lstm``): Andrychowicz et al., "Learning to learn by gradient
  descent by gradient descent", NeurIPS 2016.
* :class:`MetaSGDRule` (``meta_sgd``): Li, Zhou, Chen & Li, "Meta-SGD: learning to
  learn quickly for few-shot learning", 2017.
* :class:`WarpGradRule` (``warp_grad``): Flennerhag et al., "Meta-learning with warped
  gradient descent", ICLR 2020, in its preconditioner form.
* :class:`ScheduleRule` (``schedule``): a meta-learned learning-rate schedule on Adam.
* :class:`L2ORule` (``l2o``): a memory-lean learned optimizer, a per-coordinate MLP
  over Adam's accumulators steered by a per-tensor LSTM (in the spirit of Wichrowska
  et al., "Learned optimizers that scale and generalize", ICML 2017, and Metz et al.,
  "Tasks, stability, architecture, and compute", 2020).

State that lives per coordinate is what limits a learned optimizer's memory: the
``lstm`` rule keeps 2·num_layers·hidden_size floats per parameter, ``l2o`` and
``schedule`` exactly 2 (m and v), ``meta_sgd`` and ``warp_grad`` none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn


@dataclass
class RuleState:
    """The state a learned update rule carries between steps, one entry per parameter
    tensor (per coordinate where the rule is coordinatewise); not ``optimizer.state``.

    ``hidden``/``cell``: LSTM states, each tensor (num_layers, s_i, hidden_size), with
    s_i = numel(θ_i) for the coordinatewise ``lstm`` rule and s_i = 1 for the per-tensor
    LSTM of ``l2o`` (empty for ``meta_sgd``). ``moments``: ``l2o``'s accumulators
    [m_i, v_i] per tensor (its only per-coordinate state). ``step_count``: steps taken.
    ``running_loss``: an exponential average (factor 0.9) of the losses passed to
    ``compute_update`` (None until one is). ``per_param_lr``: ``meta_sgd``'s α_i.
    """

    hidden: list[Tensor] = field(default_factory=list)
    cell: list[Tensor] = field(default_factory=list)
    step_count: int = 0
    running_loss: float | None = None
    per_param_lr: list[Tensor] | None = None
    moments: list[list[Tensor]] = field(default_factory=list)

    def detach(self) -> RuleState:
        """The same state cut from the autograd graph (the end of a BPTT truncation)."""
        return replace(
            self,
            hidden=[h.detach() for h in self.hidden],
            cell=[c.detach() for c in self.cell],
            moments=[[t.detach() for t in ms] for ms in self.moments],
        )


def preprocess_gradient(g: Tensor, p: float = 10.0) -> Tensor:
    """Andrychowicz et al. (2016), appendix A: each coordinate g becomes two inputs

        (log|g| / p, sign g)   if |g| ≥ e^{−p}
        (−1, e^{p} g)          otherwise,

    so that gradients of any magnitude give inputs of order one. Returns (..., 2).
    """
    big = g.abs() >= math.exp(-p)
    log_part = torch.where(big, torch.log(g.abs().clamp_min(math.exp(-p))) / p, -torch.ones_like(g))
    sign_part = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.stack([log_part, sign_part], dim=-1)


# coordinates per call of l2o's per-coordinate MLP: its (chunk, hidden) activations then
# stay in cache (one thread: about twice as fast as one call over a million coordinates)
MLP_CHUNK = 2**14


def _coordinatewise(net: nn.Module, x: Tensor) -> Tensor:
    """``net`` on the rows of ``x`` (independent coordinates), MLP_CHUNK rows per call."""
    if len(x) <= MLP_CHUNK:
        return net(x)
    return torch.cat([net(x[i : i + MLP_CHUNK]) for i in range(0, len(x), MLP_CHUNK)])


ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # the accumulators of l2o and schedule


def _adam_moments(g: Tensor, m: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Adam's step t on (m, v): the new m, v, the bias-corrected m̂ and √v̂ + ε."""
    (b1, b2), eps = ADAM_BETAS, ADAM_EPS
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return m, v, m / (1 - b1**t), torch.sqrt(v / (1 - b2**t)) + eps


def _check_shapes(method: str, theirs: Sequence[torch.Size], mine: Sequence[tuple]) -> None:
    """ValueError unless a model's parameter shapes are those a rule was built for."""
    theirs = [tuple(s) for s in theirs]
    if theirs != [tuple(s) for s in mine]:
        raise ValueError(f"Invalid params for {method}: parameter shapes {theirs} do not match "
                         f"the learned parameter shapes {list(mine)}")  # fmt: skip


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    parts = torch.split(flat, [t.numel() for t in like])
    return [p.reshape(t.shape) for p, t in zip(parts, like)]


class LSTMRule(nn.Module):
    """Coordinatewise LSTM optimizer (Andrychowicz et al., NeurIPS 2016).

    One two-layer LSTM m_φ, shared by all coordinates, reads each coordinate's
    preprocessed gradient ∇_t (``preconditioning``: the log-magnitude/sign pair of
    :func:`preprocess_gradient`; otherwise g itself) and its own hidden state h_t:

        [o_t, h_{t+1}] = m_φ(∇_t, h_t),   u_t = output_scale · W o_t + b,   θ_{t+1} = θ_t + u_t.

    Each coordinate carries its own (h, c) per layer: 2·num_layers·hidden_size floats
    of state per parameter.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        preconditioning: bool,
        output_scale: float,
        p: float,
    ) -> None:
        super().__init__()
        self.preconditioning, self.output_scale, self.p = preconditioning, output_scale, p
        self.lstm = nn.LSTM(2 if preconditioning else 1, hidden_size, num_layers)
        self.out = nn.Linear(hidden_size, 1)

    def state_sizes(self, params: Sequence[Tensor]) -> list[int]:
        return [p.numel() for p in params]

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        h = [self._zeros(p.numel(), p) for p in params]
        return RuleState(hidden=h, cell=[z.clone() for z in h])

    def _zeros(self, n: int, like: Tensor) -> Tensor:
        w = self.out.weight
        return torch.zeros(self.lstm.num_layers, n, self.lstm.hidden_size, dtype=w.dtype,
                           device=like.device)  # fmt: skip

    def forward(self, grads: Sequence[Tensor], state: RuleState) -> tuple[list[Tensor], RuleState]:
        g = _flat(grads).to(self.out.weight.dtype)
        x = preprocess_gradient(g, self.p) if self.preconditioning else g[:, None]
        h0, c0 = torch.cat(state.hidden, dim=1), torch.cat(state.cell, dim=1)
        out, (h1, c1) = self.lstm(x[None], (h0, c0))
        u = self.output_scale * self.out(out[0])[:, 0]
        sizes = self.state_sizes(grads)
        new = replace(
            state,
            hidden=list(torch.split(h1, sizes, dim=1)),
            cell=list(torch.split(c1, sizes, dim=1)),
            step_count=state.step_count + 1,
        )
        return [v.to(gr.dtype) for v, gr in zip(_split(u, grads), grads)], new


class MetaSGDRule(nn.Module):
    """Meta-SGD (Li, Zhou, Chen & Li, 2017): a learned initialisation θ_0 and a learned
    per-coordinate learning rate α, both of the shapes of the model's parameters:

        θ' = θ − α ∘ ∇L_support(θ),   starting from θ = θ_0,

    meta-trained on the query loss L_query(θ') (MAML's outer loop with α learned too).
    α is not constrained to be positive (as in the paper). No inner state.

    ``per_parameter=False`` is the baseline the paper compares against: the same
    meta-learner with one scalar α shared by every coordinate of every tensor
    (θ' = θ − α ∇L_support(θ), MAML with a learned inner learning rate); ``alpha``
    then holds a single 0-dimensional tensor.
    """

    def __init__(self, init: Sequence[Tensor], inner_lr: float, per_parameter: bool = True) -> None:
        super().__init__()
        self.per_parameter = per_parameter
        self.init = nn.ParameterList([nn.Parameter(t.detach().clone()) for t in init])
        if per_parameter:
            alphas = [torch.full_like(t.detach(), inner_lr) for t in init]
        else:
            alphas = [torch.tensor(float(inner_lr), dtype=init[0].dtype, device=init[0].device)]
        self.alpha = nn.ParameterList([nn.Parameter(a) for a in alphas])

    def learning_rates(self) -> list[Tensor]:
        """α for each parameter tensor: its own tensor, or the shared scalar for each."""
        if self.per_parameter:
            return list(self.alpha)
        return [self.alpha[0] for _ in self.init]

    def check_shapes(self, shapes: Sequence[torch.Size]) -> None:
        _check_shapes("meta_sgd", shapes, [t.shape for t in self.init])

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        self.check_shapes([p.shape for p in params])
        return RuleState(per_param_lr=self.learning_rates())

    def forward(self, grads: Sequence[Tensor], state: RuleState) -> tuple[list[Tensor], RuleState]:
        self.check_shapes([g.shape for g in grads])
        updates = [-(a * g) for a, g in zip(self.learning_rates(), grads)]
        return updates, replace(state, step_count=state.step_count + 1)


class L2ORule(nn.Module):
    """A memory-lean learned optimizer: Adam's accumulators, a per-coordinate MLP, and a
    per-tensor LSTM that steers it.

    Per coordinate only m and v are kept (exactly 2 floats of state per parameter):

        m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²,   m̂, v̂ bias-corrected,
        a = m̂ / (√v̂ + ε),   d = a + MLP_φ(a, g / (√v̂ + ε)),

    with MLP_φ(x) = W₂ softsign(W₁x + b₁) + b₂ (softsign z = z / (1 + |z|)), of width
    ``mlp_hidden_size``. Per tensor i, an LSTM reads summary statistics
    s_i = (log(rms g_i)/10, mean a_i, rms a_i) and a linear head gives (σ_i, b_i); the
    update is

        u_i = −lr · exp(σ_i) · (d_i + b_i).

    The MLP's last layer and the head start at zero, so before meta-training the rule
    is Adam with learning rate ``lr`` (ε inside as above). The LSTM's (h, c) is per
    tensor: 2·num_layers·hidden_size floats per tensor, independent of its size.

    The MLP's width and activation were chosen by the cost of a step on a large model
    (every coordinate evaluates it; docs/learned.md). :mod:`pinnopt.learned.fused_l2o`
    is this step compiled.
    """

    def __init__(
        self, hidden_size: int, num_layers: int, lr: float, mlp_hidden_size: int = 8
    ) -> None:
        super().__init__()
        self.lr = lr
        self.mlp = nn.Sequential(
            nn.Linear(2, mlp_hidden_size), nn.Softsign(), nn.Linear(mlp_hidden_size, 1)
        )
        self.lstm = nn.LSTM(3, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, 2)
        for layer in (self.mlp[2], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def state_sizes(self, params: Sequence[Tensor]) -> list[int]:
        return [1 for _ in params]

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        dt = self.head.weight.dtype
        h = [torch.zeros(self.lstm.num_layers, 1, self.lstm.hidden_size, dtype=dt,
                         device=p.device) for p in params]  # fmt: skip
        moments = [[torch.zeros_like(p), torch.zeros_like(p)] for p in params]
        return RuleState(hidden=h, cell=[z.clone() for z in h], moments=moments)

    def forward(self, grads: Sequence[Tensor], state: RuleState) -> tuple[list[Tensor], RuleState]:
        """All tensors at once, flattened into one vector: a fixed number of operations
        whatever the number of tensors (on a small model each operation costs its call
        overhead, not its arithmetic); per-tensor sums by ``index_add``."""
        t = state.step_count + 1
        g = _flat(grads)
        m = _flat([ms[0] for ms in state.moments])
        v = _flat([ms[1] for ms in state.moments])
        m, v, m_hat, denom = _adam_moments(g, m, v, t)
        dt = self.head.weight.dtype
        a, r, gd = (m_hat / denom).to(dt), (g / denom).to(dt), g.to(dt)
        d = a + _coordinatewise(self.mlp, torch.stack([a, r], dim=1))[:, 0]
        sizes = [x.numel() for x in grads]
        tensor_of = torch.repeat_interleave(
            torch.arange(len(sizes), device=g.device), torch.tensor(sizes, device=g.device)
        )
        sums = torch.zeros(len(sizes), 3, dtype=dt, device=g.device).index_add(
            0, tensor_of, torch.stack([gd * gd, a, a * a], dim=1)
        )
        means = sums / torch.tensor(sizes, dtype=dt, device=g.device)[:, None]
        stats = torch.stack([torch.log(means[:, 0].sqrt() + 1e-30) / 10, means[:, 1],
                             means[:, 2].sqrt()], dim=1)  # fmt: skip
        h0, c0 = torch.cat(state.hidden, dim=1), torch.cat(state.cell, dim=1)
        out, (h1, c1) = self.lstm(stats[None], (h0, c0))
        sigma_bias = self.head(out[0])[tensor_of]
        u = -self.lr * torch.exp(sigma_bias[:, 0]) * (d + sigma_bias[:, 1])
        ones = [1] * len(grads)
        new = replace(
            state,
            hidden=list(torch.split(h1, ones, dim=1)),
            cell=list(torch.split(c1, ones, dim=1)),
            moments=[list(mv) for mv in zip(_split(m, grads), _split(v, grads))],
            step_count=t,
        )
        return [x.to(gr.dtype) for x, gr in zip(_split(u, grads), grads)], new


class WarpGradRule(nn.Module):
    """Warped gradient descent (Flennerhag et al., "Meta-learning with warped gradient
    descent", ICLR 2020) in its preconditioner form: each parameter tensor θ_i, viewed
    as G_i of shape (n_i, −1) with n_i = shape[0], has a warp matrix ω_i (n_i × n_i,
    the identity at the start) and is updated by

        θ_i ← θ_i − α ω_i ω_iᵀ ∇_{θ_i} L.

    Why this is WarpGrad: for a linear layer y = A x + a followed by a fixed linear warp
    layer ω (as WarpGrad interleaves them), SGD on (A, a) moves the collapsed layer
    (ωA, ωa) by −α ωωᵀ times the collapsed layer's gradient. So SGD through warp
    layers held fixed during adaptation is this preconditioned SGD on the ordinary
    network, and the learned rule runs on a model without warp layers. Here each
    tensor has its own ω (a layer's weight and bias are not tied), which also covers
    tensors that are not linear layers. ω ωᵀ is positive semi-definite, so the step
    never points uphill. α = ``inner_lr`` is fixed; no per-coordinate state.
    """

    def __init__(self, init: Sequence[Tensor], inner_lr: float) -> None:
        super().__init__()
        self.lr = inner_lr
        self.shapes = [tuple(t.shape) for t in init]
        self.warps = nn.ParameterList(
            [nn.Parameter(torch.eye(_rows(t), dtype=t.dtype)) for t in init]
        )

    def check_shapes(self, shapes: Sequence[torch.Size]) -> None:
        _check_shapes("warp_grad", shapes, self.shapes)

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        self.check_shapes([p.shape for p in params])
        return RuleState()

    def forward(self, grads: Sequence[Tensor], state: RuleState) -> tuple[list[Tensor], RuleState]:
        self.check_shapes([g.shape for g in grads])
        updates = []
        for w, g in zip(self.warps, grads):
            flat = g.reshape(w.shape[0], -1).to(w.dtype)
            updates.append((-self.lr * (w @ (w.T @ flat))).reshape(g.shape).to(g.dtype))
        return updates, replace(state, step_count=state.step_count + 1)


def _rows(t: Tensor) -> int:
    return t.shape[0] if t.dim() else 1


class ScheduleRule(nn.Module):
    """A meta-learned learning-rate schedule, meta-trained on Adam: at step t of a run
    of ``horizon`` steps,

        lr_t = lr · exp(s(t / horizon)),

    with s piecewise linear through ``knots`` learned values at the fractions
    0, 1/(K−1), …, 1 of the run (held at the last one beyond the end). The values start
    at 0, so the untrained rule is Adam with constant lr. Per coordinate it keeps
    Adam's m and v. The schedule itself, :meth:`multiplier`, is what
    ``build_scheduler("learned", …)`` applies to any optimizer's lr.
    """

    def __init__(self, knots: int, lr: float, horizon: int) -> None:
        super().__init__()
        self.lr, self.horizon = lr, horizon
        self.log_multipliers = nn.Parameter(torch.zeros(knots))

    def multiplier(self, fraction: float) -> Tensor:
        """exp(s(fraction)), fraction of the run in [0, 1] (clamped)."""
        s = self.log_multipliers
        if len(s) == 1:
            return torch.exp(s[0])
        x = min(max(float(fraction), 0.0), 1.0) * (len(s) - 1)
        i = min(int(x), len(s) - 2)
        w = x - i
        return torch.exp((1 - w) * s[i] + w * s[i + 1])

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        return RuleState(moments=[[torch.zeros_like(p), torch.zeros_like(p)] for p in params])

    def forward(self, grads: Sequence[Tensor], state: RuleState) -> tuple[list[Tensor], RuleState]:
        t = state.step_count + 1
        lr = self.lr * self.multiplier((t - 1) / self.horizon)
        updates, moments = [], []
        for g, (m, v) in zip(grads, state.moments):
            m, v, m_hat, denom = _adam_moments(g, m, v, t)
            updates.append((-lr * (m_hat / denom)).to(g.dtype))
            moments.append([m, v])
        return updates, replace(state, moments=moments, step_count=t)

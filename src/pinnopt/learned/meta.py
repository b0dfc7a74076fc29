"""Meta-training learned optimizers by unrolled differentiation through inner runs.

:class:`MetaOptimizer` owns a learned update rule (:mod:`pinnopt.learned.methods`:
``lstm``, ``meta_sgd``, ``warp_grad``, ``l2o``, ``schedule``) and trains its parameters φ
on episodes drawn from a task family (:mod:`pinnopt.learned.tasks`).

``lstm``, ``l2o`` and ``schedule`` (Andrychowicz et al., NeurIPS 2016): an inner run starts from the
task's initial weights and takes ``inner_steps`` steps θ_{t+1} = θ_t + u_t(φ). It is cut
into truncations of ``unroll_steps`` steps (truncated backpropagation through time);
for each truncation the meta-loss is the mean inner loss

    L(φ) = (1/T) Σ_{t=1..T} f(θ_t(φ))

over its T steps and over the episodes; ∇_φ L is taken through the unrolled steps,
its norm clipped to ``gradient_clipping``, and Adam (``meta_lr``) takes one step on φ;
then θ and the rule state are detached and the run continues. The gradients
g_t = ∇f(θ_t) depend on φ through θ_t, and by default that term is kept (exact
meta-gradients of the truncation). ``second_order=False`` drops it, treating g_t as
inputs as the paper does: cheaper, but on the quadratics of docs/learned.md that
first-order meta-gradient only made the rule worse.

``meta_sgd`` (Li et al., 2017): one meta-step per call, the query loss after
``inner_steps`` steps θ ← θ − α ∘ ∇L_support(θ) from the learned θ_0, differentiated
to second order by default (as MAML and Meta-SGD do).

``warp_grad`` (Flennerhag et al., ICLR 2020): trajectory-free. Each episode's inner
run of ``inner_steps`` preconditioned steps is taken with the current warps and no
graph; its points θ_k are then held fixed, and the meta-loss is the query loss one
step on from each,

    L(ω) = mean over episodes and k of L_query(θ_k − α P(ω) ∇L_support(θ_k)),

differentiated through that single step only (one meta-update per call).

Guard: a meta-gradient that is not finite or whose norm exceeds ``max_grad_norm`` is
dropped (φ unchanged) and the step reported as exploded.

The inner model is run with non-leaf parameters by ``torch.func.functional_call`` on
a wrapper module whose forward is the task's loss, so any ``Task.loss(model)`` works.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call

from pinnopt.learned.methods import (
    L2ORule,
    LSTMRule,
    MetaSGDRule,
    RuleState,
    ScheduleRule,
    WarpGradRule,
)
from pinnopt.learned.tasks import Task
from pinnopt.registry import Registry
from pinnopt.train.distributed import Sync

RuleFactory = Callable[["MetaOptimizerConfig", list[Tensor]], nn.Module]
METHODS: Registry[RuleFactory] = Registry("learned rule")
# decorator adding a rule's factory under a name: factory(config, init) is called inside
# build_rule's seeded random state (init: the model's parameters), then cast to config.dtype
register_rule = METHODS.register
DTYPES = {"float64": torch.float64, "float32": torch.float32}
META_OBJECTIVES = ("loss", "log_loss")


@dataclass(frozen=True)
class MetaOptimizerConfig:
    """Settings of a :class:`MetaOptimizer`; ``ValueError`` names a bad field.

    ``method``: ``lstm`` | ``meta_sgd`` | ``warp_grad`` | ``l2o`` | ``schedule``.
    ``hidden_size``/``num_layers``: the LSTM's. ``mlp_hidden_size``: the width of
    ``l2o``'s per-coordinate MLP. ``preconditioning``: ``lstm``'s gradient
    preprocessing (log-magnitude and sign, p = ``preprocess_p``). ``coordinatewise``: the
    LSTM is shared across coordinates (the only form built). ``meta_lr``: Adam on φ.
    ``unroll_steps``: truncation length T. ``gradient_clipping``: max meta-gradient norm.
    ``inner_steps``: steps of one inner run (``schedule``: the horizon its fractions refer
    to). ``inner_lr``: ``meta_sgd``'s initial α, ``warp_grad``'s α, the base lr of ``l2o``
    and ``schedule``. ``schedule_knots``: the number of learned values of the schedule.
    ``per_parameter_lr``: ``meta_sgd`` learns one α per coordinate
    (True, Meta-SGD) or one scalar α shared by all coordinates (False: MAML with a
    learned inner lr, the paper's baseline). ``output_scale``: ``lstm``'s update scale.
    ``max_grad_norm``: the explosion guard. ``second_order``: keep ∂g/∂φ (default; False
    drops it, as Andrychowicz et al. do, and MAML's first-order approximation).
    ``meta_objective``: ``loss`` averages f(θ_t) over a truncation, ``log_loss`` averages
    log f(θ_t) (``lstm``/``l2o``; losses that fall by orders of magnitude, as a PINN's do,
    then weigh every order alike) and validation takes the geometric mean.
    ``seed``: the rule's initial weights. ``dtype``: ``float64`` | ``float32``.
    """

    method: str = "lstm"
    hidden_size: int = 20
    num_layers: int = 2
    mlp_hidden_size: int = 8
    preconditioning: bool = True
    coordinatewise: bool = True
    meta_lr: float = 1e-3
    unroll_steps: int = 20
    gradient_clipping: float = 1.0
    inner_steps: int = 20
    inner_lr: float = 1e-2
    per_parameter_lr: bool = True
    output_scale: float = 0.1
    preprocess_p: float = 10.0
    max_grad_norm: float = 1e6
    second_order: bool = True
    meta_objective: str = "loss"
    schedule_knots: int = 8
    seed: int = 0
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Invalid method: {self.method!r}; allowed: {', '.join(METHODS)}")
        for name in ("hidden_size", "num_layers", "mlp_hidden_size", "unroll_steps", "inner_steps",
                     "schedule_knots"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"Invalid {name}: {value!r} (need an integer >= 1)")
        for name in ("meta_lr", "gradient_clipping", "output_scale", "preprocess_p"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and 0 < value < math.inf):
                raise ValueError(f"Invalid {name}: {value!r} (need a finite number > 0)")
        if not (isinstance(self.inner_lr, float | int) and math.isfinite(self.inner_lr)):
            raise ValueError(f"Invalid inner_lr: {self.inner_lr!r} (need a finite number)")
        if not (isinstance(self.max_grad_norm, float | int) and self.max_grad_norm > 0):
            raise ValueError(f"Invalid max_grad_norm: {self.max_grad_norm!r} (need > 0)")
        for name in ("preconditioning", "coordinatewise", "per_parameter_lr"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Invalid {name}: {getattr(self, name)!r} (need a bool)")
        if not self.per_parameter_lr and self.method != "meta_sgd":
            raise ValueError(
                f"Invalid per_parameter_lr: False (only meta_sgd learns a learning rate; "
                f"method is {self.method!r})"
            )
        if not self.coordinatewise:
            raise ValueError("Invalid coordinatewise: False (only coordinatewise rules are built)")
        if not isinstance(self.second_order, bool):
            raise ValueError(f"Invalid second_order: {self.second_order!r} (need a bool)")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"Invalid seed: {self.seed!r} (need an integer >= 0)")
        if self.meta_objective not in META_OBJECTIVES:
            raise ValueError(f"Invalid meta_objective: {self.meta_objective!r}; allowed: "
                             f"{', '.join(META_OBJECTIVES)}")  # fmt: skip
        if self.dtype not in DTYPES:
            raise ValueError(f"Invalid dtype: {self.dtype!r}; allowed: {', '.join(DTYPES)}")


@register_rule("lstm")
def _lstm(config: MetaOptimizerConfig, init: list[Tensor]) -> LSTMRule:
    return LSTMRule(config.hidden_size, config.num_layers, config.preconditioning,
                    config.output_scale, config.preprocess_p)  # fmt: skip


@register_rule("meta_sgd")
def _meta_sgd(config: MetaOptimizerConfig, init: list[Tensor]) -> MetaSGDRule:
    init = [t.to(DTYPES[config.dtype]) for t in init]
    return MetaSGDRule(init, config.inner_lr, per_parameter=config.per_parameter_lr)


@register_rule("warp_grad")
def _warp_grad(config: MetaOptimizerConfig, init: list[Tensor]) -> WarpGradRule:
    return WarpGradRule([t.to(DTYPES[config.dtype]) for t in init], config.inner_lr)


@register_rule("l2o")
def _l2o(config: MetaOptimizerConfig, init: list[Tensor]) -> L2ORule:
    return L2ORule(config.hidden_size, config.num_layers, config.inner_lr, config.mlp_hidden_size)


@register_rule("schedule")
def _schedule(config: MetaOptimizerConfig, init: list[Tensor]) -> ScheduleRule:
    return ScheduleRule(config.schedule_knots, config.inner_lr, config.inner_steps)


def build_rule(config: MetaOptimizerConfig, init: Sequence[Tensor]) -> nn.Module:
    """The update rule of ``config.method`` with seeded initial weights in ``config.dtype``.

    ``init``: the model's parameters (``meta_sgd`` and ``warp_grad`` learn from them;
    shapes only matter).
    """
    if config.method not in METHODS:
        raise ValueError(f"Invalid method: {config.method!r}; allowed: {', '.join(METHODS)}")
    dtype = DTYPES[config.dtype]
    factory = METHODS[config.method]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        rule = factory(config, list(init))
    return rule.to(dtype)


def _query_loss(task: Task) -> Callable[[nn.Module], Tensor] | None:
    """A differentiable query loss from a task's info (sinusoid: MSE, digits: CE)."""
    query = task.info.get("query")
    if query is None:
        return None
    x, y = query
    if task.family == "digits":
        return lambda model: nn.functional.cross_entropy(model(x), y)
    return lambda model: (model(x)[:, 0] - y).square().mean()


@dataclass(frozen=True)
class Episode:
    """What one inner run needs: the task (its ``init_model`` and its ``loss``, the
    support loss) and a differentiable query loss for ``meta_sgd``'s outer loss.

    ``Episode(task)`` finds the query loss in ``task.info["query"]`` (sinusoid: MSE,
    digits: cross-entropy; the tasks expose their query metric only as a float); a task
    without a query set (quadratic, poisson) uses its loss for both.
    """

    task: Task
    query_loss: Callable[[nn.Module], Tensor] | None = None

    def support(self) -> Callable[[nn.Module], Tensor]:
        return self.task.loss

    def query(self) -> Callable[[nn.Module], Tensor]:
        return self.query_loss or _query_loss(self.task) or self.task.loss

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task]) -> list[Episode]:
        return [cls(t) for t in tasks]


@dataclass
class MetaOptTrainResult:
    """The outcome of one :meth:`MetaOptimizer.meta_train_step`.

    ``meta_loss``: mean over its truncations of the meta-loss (before each update).
    ``losses``: that meta-loss per truncation. ``grad_norm``: the largest meta-gradient
    norm before clipping. ``exploded``: a meta-gradient was non-finite or above
    ``max_grad_norm`` (those updates skipped, counted in ``skipped``), or an inner run
    became non-finite (``diverged``; the call stops there). ``steps``:
    meta-updates applied. ``initial_loss``/``final_loss``: mean inner loss over the
    episodes at the start and the end of the inner runs (``meta_sgd``: support loss at
    θ_0 and query loss after adaptation).
    """

    meta_loss: float
    grad_norm: float
    exploded: bool
    steps: int
    skipped: int = 0
    diverged: bool = False
    losses: list[float] = field(default_factory=list)
    initial_loss: float = math.nan
    final_loss: float = math.nan


class _LossOf(nn.Module):
    """A module whose forward is ``loss(model)``: functional_call swaps the parameters."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self) -> Tensor:
        return self.loss(self.model)


def _evaluate(bound: _LossOf, names: Sequence[str], params: Sequence[Tensor]) -> Tensor:
    return functional_call(bound, {f"model.{n}": p for n, p in zip(names, params)}, ())


class MetaOptimizer:
    """A learned optimizer and its meta-training (``lstm``, ``meta_sgd``, ``warp_grad``,
    ``l2o``, ``schedule``).

    ``compute_update(gradients, state)`` applies the learned rule u = U_φ(g, state) to
    gradients listed in the order of ``base_model.parameters()`` (θ ← θ + u);
    ``meta_train_step(episodes)`` trains φ by truncated BPTT through inner runs (see
    the module docstring for the meta-loss, clipping and the explosion guard);
    ``get_learned_lr()`` reports Meta-SGD's mean α per parameter name; ``save(path)``
    writes what :class:`~pinnopt.learned.learned_optimizer.LearnedOptimizer` loads.

    Papers: Andrychowicz et al., "Learning to learn by gradient descent by gradient
    descent", NeurIPS 2016 (``lstm``, the unrolled meta-loss); Li et al., "Meta-SGD",
    2017 (``meta_sgd``); Flennerhag et al., "Meta-learning with warped gradient descent",
    ICLR 2020 (``warp_grad``); ``l2o`` and ``schedule`` are described in
    :class:`~pinnopt.learned.methods.L2ORule` and :class:`~pinnopt.learned.methods.ScheduleRule`.
    """

    def __init__(self, base_model: nn.Module, config: MetaOptimizerConfig | None = None) -> None:
        self.config = config or MetaOptimizerConfig()
        named = list(base_model.named_parameters())
        if not named:
            raise ValueError("Invalid base_model: it has no parameters")
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.rule = build_rule(self.config, [p for _, p in named])
        self.meta_optimizer = torch.optim.Adam(self.rule.parameters(), lr=self.config.meta_lr)
        self._params = [p for _, p in named]
        self.state = self.rule.init_state(self._params)
        # the processes that share a meta-batch (torchrun); a no-op in one process
        self.sync = Sync()
        self.count = 0  # episodes in the current meta-batch, over all the processes

    def _total(self, value: float) -> float:
        """``value`` summed over the processes that share the meta-batch."""
        return float(self.sync.sum(torch.tensor(value, dtype=torch.float64)))

    def reset_optimizer_state(self) -> RuleState:
        """Fresh inner state (LSTM states, moments, step count) for ``base_model``'s shapes."""
        self.state = self.rule.init_state(self._params)
        return self.state

    def init_state(self, params: Sequence[Tensor]) -> RuleState:
        return self.rule.init_state(params)

    def compute_update(
        self,
        gradients: Sequence[Tensor],
        state: RuleState | None = None,
        loss: float | Tensor | None = None,
    ) -> tuple[list[Tensor], RuleState]:
        """Updates u_i (θ_i ← θ_i + u_i) and the next state; ``state=None`` uses (and
        advances) the optimizer's own state. ``loss`` only feeds ``running_loss``."""
        own = state is None
        if own:
            state = self.state
        if state.hidden and len(gradients) != len(state.hidden):
            raise ValueError(
                f"Invalid gradients: {len(gradients)} tensors for a state of {len(state.hidden)}"
            )
        updates, new = self.rule(list(gradients), state)
        if loss is not None:
            value = float(loss)
            run = new.running_loss
            new.running_loss = value if run is None else 0.9 * run + 0.1 * value
        if own:
            self.state = new
        return updates, new

    def get_learned_lr(self) -> dict[str, float]:
        """Meta-SGD: the mean learned learning rate α of each parameter tensor, by name
        (with ``per_parameter_lr=False``, the one shared α for every name)."""
        if self.config.method != "meta_sgd":
            raise ValueError(f"Invalid method for get_learned_lr: {self.config.method!r} "
                             "(only meta_sgd learns per-parameter learning rates)")  # fmt: skip
        lrs = self.rule.learning_rates()
        return {n: float(a.detach().mean()) for n, a in zip(self.names, lrs)}

    def learned_init(self) -> dict[str, Tensor]:
        """Meta-SGD: the learned initial parameters θ_0, by name."""
        if self.config.method != "meta_sgd":
            raise ValueError(f"Invalid method for learned_init: {self.config.method!r}")
        return {n: t.detach().clone() for n, t in zip(self.names, self.rule.init)}

    # --- meta-training ---------------------------------------------------------------

    def _meta_update(self) -> tuple[float, bool]:
        """Clip and apply the accumulated meta-gradient (summed over the processes that share
        the meta-batch); skip it if it exploded."""
        self.sync.gradients(list(self.rule.parameters()))
        params = [p for p in self.rule.parameters() if p.grad is not None]
        norm = math.sqrt(sum(float(p.grad.double().square().sum()) for p in params))
        if not math.isfinite(norm) or norm > self.config.max_grad_norm:
            self.meta_optimizer.zero_grad(set_to_none=True)
            return norm, True
        torch.nn.utils.clip_grad_norm_(params, self.config.gradient_clipping)
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        return norm, False

    def meta_train_step(
        self, episodes: Sequence[Episode | Task], base_model: nn.Module | None = None
    ) -> MetaOptTrainResult:
        """One pass over ``episodes``: ``lstm``/``l2o`` take one meta-update per truncation
        of the inner runs, ``meta_sgd`` one meta-update. ``base_model`` (optional) is
        checked against the optimizer's parameter shapes for ``meta_sgd``."""
        eps = [e if isinstance(e, Episode) else Episode(e) for e in episodes]
        if len(eps) < self.sync.size:
            raise ValueError(
                f"Invalid episodes: need at least one per process, got {len(eps)} for "
                f"{self.sync.size}"
            )
        self.count = len(eps)  # the meta-batch: every average below is over all of it
        eps = eps[self.sync.rank :: self.sync.size]  # this process's share
        if base_model is not None and self.config.method in ("meta_sgd", "warp_grad"):
            self.rule.check_shapes([p.shape for p in base_model.parameters()])
        self.meta_optimizer.zero_grad(set_to_none=True)
        if self.config.method == "meta_sgd":
            return self._train_meta_sgd(eps)
        if self.config.method == "warp_grad":
            return self._train_warp_grad(eps)
        return self._train_unrolled(eps)

    def _train_unrolled(self, episodes: list[Episode]) -> MetaOptTrainResult:
        cfg, second = self.config, self.config.second_order
        log = cfg.meta_objective == "log_loss"
        runs = []
        for ep in episodes:
            model = ep.task.init_model()
            names = [n for n, _ in model.named_parameters()]
            params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]
            runs.append([_LossOf(model, ep.support()), names, params, self.rule.init_state(params)])
        with torch.no_grad():
            initial = sum(float(_evaluate(b, n, p)) for b, n, p, _ in runs)
        initial = self._total(initial) / self.count
        losses, norms, skipped, steps, done, final = [], [], 0, 0, 0, math.nan
        diverged = False
        while done < cfg.inner_steps:
            t_len = min(cfg.unroll_steps, cfg.inner_steps - done)
            total, finals = 0.0, []
            for run in runs:
                bound, names, params, state = run
                loss = _evaluate(bound, names, params)
                meta = 0.0
                for _ in range(t_len):
                    grads = torch.autograd.grad(loss, params, create_graph=second,
                                                retain_graph=True)  # fmt: skip
                    if not second:
                        grads = tuple(g.detach() for g in grads)
                    updates, state = self.rule(list(grads), state)
                    params = [p + u for p, u in zip(params, updates)]
                    loss = _evaluate(bound, names, params)
                    meta = meta + (torch.log(loss) if log else loss)
                meta = meta / (t_len * self.count)
                meta.backward()
                total += float(meta.detach())
                finals.append(float(loss.detach()))
                run[2] = [p.detach().requires_grad_(True) for p in params]
                run[3] = state.detach()
            norm, bad = self._meta_update()
            norms.append(norm)
            skipped += bad
            steps += not bad
            losses.append(self._total(total))
            final = self._total(sum(finals)) / self.count
            done += t_len
            finite = all(all(bool(torch.isfinite(p).all()) for p in r[2]) for r in runs)
            if self.sync.agree([not finite])[0]:
                diverged = True  # the inner run itself diverged: stop here
                break
        return MetaOptTrainResult(
            meta_loss=sum(losses) / len(losses),
            grad_norm=max(norms),
            exploded=skipped > 0 or diverged,
            steps=steps,
            skipped=skipped,
            diverged=diverged,
            losses=losses,
            initial_loss=initial,
            final_loss=final,
        )

    def inner_step_meta_sgd(
        self, bound: _LossOf, names: Sequence[str], params: Sequence[Tensor], create_graph: bool
    ) -> list[Tensor]:
        """One Meta-SGD inner step θ' = θ − α ∘ ∇L_support(θ) (differentiable)."""
        loss = _evaluate(bound, names, params)
        grads = torch.autograd.grad(loss, list(params), create_graph=create_graph)
        updates, _ = self.rule(list(grads), RuleState())
        return [p + u for p, u in zip(params, updates)]

    def _train_meta_sgd(self, episodes: list[Episode]) -> MetaOptTrainResult:
        second = self.config.second_order
        total, initial = 0.0, 0.0
        for ep in episodes:
            model = ep.task.init_model()
            names = [n for n, _ in model.named_parameters()]
            if names != self.names:
                raise ValueError(f"Invalid episode: parameter names {names} differ from the "
                                 f"optimizer's {self.names}")  # fmt: skip
            support, query = _LossOf(model, ep.support()), _LossOf(model, ep.query())
            params = list(self.rule.init)
            with torch.no_grad():
                initial += float(_evaluate(support, names, params)) / self.count
            for _ in range(self.config.inner_steps):
                params = self.inner_step_meta_sgd(support, names, params, second)
            meta = _evaluate(query, names, params) / self.count
            meta.backward()
            total += float(meta.detach())
        norm, bad = self._meta_update()
        total, initial = self._total(total), self._total(initial)
        return MetaOptTrainResult(meta_loss=total, grad_norm=norm, exploded=bad, steps=int(not bad),
                                  skipped=int(bad), losses=[total], initial_loss=initial,
                                  final_loss=total)  # fmt: skip

    def _train_warp_grad(self, episodes: list[Episode]) -> MetaOptTrainResult:
        points, initial, final = [], 0.0, 0.0
        for ep in episodes:  # the trajectories, with the current warps and no graph
            model = ep.task.init_model()
            names = [n for n, _ in model.named_parameters()]
            support, query = _LossOf(model, ep.support()), _LossOf(model, ep.query())
            params = [p.detach().clone() for p in model.parameters()]
            for k in range(self.config.inner_steps):
                params = [p.requires_grad_(True) for p in params]
                loss = _evaluate(support, names, params)
                grads = [g.detach() for g in torch.autograd.grad(loss, params)]
                if k == 0:
                    initial += float(loss.detach()) / self.count
                params = [p.detach() for p in params]
                points.append((query, names, params, grads))
                with torch.no_grad():
                    updates, _ = self.rule(grads, RuleState())
                    params = [p + u for p, u in zip(params, updates)]
            with torch.no_grad():
                final += float(_evaluate(query, names, params)) / self.count
        initial, final = self._total(initial), self._total(final)
        diverged = not math.isfinite(final)
        total = 0.0
        count = self.count * self.config.inner_steps  # the points of all the processes
        for query, names, theta, grads in points:  # one step on from each point, θ_k fixed
            updates, _ = self.rule(grads, RuleState())
            meta = _evaluate(query, names, [t + u for t, u in zip(theta, updates)]) / count
            meta.backward()
            total += float(meta.detach())
        norm, bad = self._meta_update()
        total = self._total(total)
        return MetaOptTrainResult(meta_loss=total, grad_norm=norm, exploded=bad or diverged,
                                  steps=int(not bad), skipped=int(bad), diverged=diverged,
                                  losses=[total], initial_loss=initial,
                                  final_loss=final)  # fmt: skip

    # --- saving ----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the config, the rule's weights and the parameter names and shapes
        (``torch.save``; loadable with ``weights_only=True``)."""
        torch.save(
            {
                "format": "pinnopt.learned_optimizer/1",
                "config": dataclasses.asdict(self.config),
                "rule": self.rule.state_dict(),
                "names": list(self.names),
                "shapes": [list(s) for s in self.shapes],
            },
            path,
        )

"""A meta-trained update rule, loaded from a file, as an ordinary ``torch.optim.Optimizer``."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinnopt.learned.fused_l2o import fused_l2o_step, rule_weights
from pinnopt.learned.meta import MetaOptimizerConfig, build_rule
from pinnopt.learned.methods import (
    ADAM_BETAS,
    L2ORule,
    LSTMRule,
    MetaSGDRule,
    RuleState,
    WarpGradRule,
)
from pinnopt.learned.shipped import shipped_rule
from pinnopt.optim.compiler import compile_errors, compile_failed, compiled_step_wanted
from pinnopt.optim.registry import register_optimizer
from pinnopt.train.schedulers import register_scheduler

FORMAT = "pinnopt.learned_optimizer/1"
# coordinates per call of the lstm rule when chunk_size is None: its temporaries then fit
# in cache (one thread, hidden 20: 2**12-2**14 took about half the time of 2**18-2**20)
LSTM_CHUNK = 2**14


def load_learned(path: str | Path) -> dict:
    """The saved blob of :meth:`MetaOptimizer.save` (``weights_only=True``); ValueError if
    the file is not one."""
    try:
        blob = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"Invalid path: {str(path)!r} is not a saved learned optimizer ({e})"
        ) from None
    if not (isinstance(blob, dict) and blob.get("format") == FORMAT):
        raise ValueError(f"Invalid path: {str(path)!r} is not a saved learned optimizer")
    return blob


def load_schedule(path: str | Path) -> Callable[[float], float]:
    """The learning-rate multiplier exp(s(fraction)) of a ``schedule`` rule saved by
    :meth:`MetaOptimizer.save`, as a function of the fraction of the run in [0, 1]."""
    blob = load_learned(path)
    config = MetaOptimizerConfig(**blob["config"])
    if config.method != "schedule":
        raise ValueError(f"Invalid path: {str(path)!r} holds a {config.method!r} rule, not a "
                         "learned schedule (meta-train one with --method schedule)")  # fmt: skip
    rule = build_rule(config, [])
    rule.load_state_dict(blob["rule"])
    return lambda fraction: float(rule.multiplier(fraction).detach())


@register_scheduler("learned")
def learned_schedule(optimizer: Optimizer, steps: int, options: dict) -> Any:
    """The ``learned`` lr schedule: lr·exp(s(k/steps)), s loaded from ``options["path"]``."""
    if "path" not in options:
        raise ValueError("scheduler learned needs the option path (a schedule saved by "
                         "'pinnopt meta-train --method schedule')")  # fmt: skip
    multiplier = load_schedule(options.pop("path"))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: multiplier(k / steps))


class LearnedOptimizer(Optimizer):
    """θ_i ← θ_i + scale · u_i, with u = U_φ(g, state) the meta-trained rule saved by
    :meth:`pinnopt.learned.meta.MetaOptimizer.save`, applied under ``torch.no_grad``
    (no meta-gradients). See :mod:`pinnopt.learned.methods` for the rules and papers
    (``lstm``: Andrychowicz et al. 2016; ``meta_sgd``: Li et al. 2017; ``l2o``).

    The rule's inner state is kept per parameter in ``self.state[p]`` (``hidden``,
    ``cell``, and for ``l2o`` and ``schedule`` ``m``, ``v``; ``step``), so ``state_dict()``
    round-trips.
    Each param group is one call of the rule (per-tensor statistics of ``l2o`` are per
    tensor anyway; ``lstm``: one call per ``chunk_size`` coordinates). ``meta_sgd``'s
    learned α (per coordinate, or one scalar with ``per_parameter_lr=False``) fits only a
    model of the same parameter shapes, in order; otherwise the constructor raises
    ``ValueError``. Its learned initialisation is not applied (an optimizer does not set
    the weights); take it from ``MetaOptimizer.learned_init()``.

    ``chunk_size``: the coordinatewise ``lstm`` rule is applied to at most this many
    coordinates per call (None: ``LSTM_CHUNK`` = 2**14), so that its temporaries (the
    gates: 4·hidden_size floats per coordinate and layer) stay bounded on a large
    model; the coordinates are independent, so the result does not depend on it
    beyond rounding. A tensor that is not contiguous is never split. The new
    ``hidden`` and ``cell`` of a tensor replace the old ones as soon as its last chunk
    is done, so a step needs the rule's state plus that of one tensor, not twice the
    state. ``l2o`` (per-tensor statistics) and ``meta_sgd`` (α by position) always
    see whole tensors; for them ``chunk_size`` has no effect.

    ``fused``: the ``l2o`` step as one compiled computation per param group
    (:mod:`pinnopt.learned.fused_l2o`, ``torch.compile``): None (default) where a
    compiler is found, True always (falling back, with a
    :class:`~pinnopt.optim.compiler.FusedFallbackWarning`, where it cannot), False never.
    The first step of each new set of parameter shapes pays the compilation (seconds;
    torch keeps compiled code on disk, so a later process pays less). The other rules
    have no compiled step.

    The ``hidden`` and ``cell`` states are kept in the rule's dtype (``config.dtype``),
    also through ``load_state_dict`` (which would cast them to the parameter's dtype);
    ``m`` and ``v`` are in the parameter's dtype.
    """

    def __init__(
        self,
        params,
        path: str | Path,
        scale: float = 1.0,
        chunk_size: int | None = None,
        fused: bool | None = None,
    ) -> None:
        if not (isinstance(scale, float | int) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"Invalid scale: {scale!r} (need a finite number > 0)")
        if chunk_size is not None and not (
            isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1
        ):
            raise ValueError(f"Invalid chunk_size: {chunk_size!r} (need an integer >= 1 or None)")
        if not (fused is None or isinstance(fused, bool)):  # 0 and 1 are refused too
            raise ValueError(f"Invalid fused: {fused!r} (need True, False or None)")
        self.chunk_size = chunk_size
        blob = load_learned(path)
        self.config = MetaOptimizerConfig(**blob["config"])
        shapes = [torch.Size(s) for s in blob["shapes"]]
        dtype = {"float64": torch.float64, "float32": torch.float32}[self.config.dtype]
        self.rule = build_rule(self.config, [torch.zeros(s, dtype=dtype) for s in shapes])
        self.rule.load_state_dict(blob["rule"])
        self.rule.requires_grad_(False)
        super().__init__(params, dict(scale=float(scale)))
        first = next((p for g in self.param_groups for p in g["params"]), None)
        if first is not None:
            self.rule.to(first.device)
        self.fused = fused
        self._weights: list[Tensor] | None = None  # the rule's tensors, for the fused step
        if isinstance(self.rule, MetaSGDRule | WarpGradRule):
            mine = [p.shape for g in self.param_groups for p in g["params"]]
            self.rule.check_shapes(mine)
            if len(self.param_groups) != 1:
                raise ValueError(f"Invalid params for {self.config.method}: give one param group")

    def _gather(self, params: list[Tensor]) -> RuleState:
        """The rule's state for ``params``; a parameter without state yet starts fresh."""
        if isinstance(self.rule, MetaSGDRule | WarpGradRule):  # no state but the step count
            step = max((int(self.state[p]["step"]) for p in params if self.state[p]), default=0)
            lr = self.rule.learning_rates() if isinstance(self.rule, MetaSGDRule) else None
            return RuleState(step_count=step, per_param_lr=lr)
        hidden, cell, moments, steps = [], [], [], []
        for p in params:
            s = self.state[p]
            if "step" not in s:
                s = self.rule.init_state([p])
                s = {"hidden": s.hidden[:1], "cell": s.cell[:1], "moments": s.moments[:1]}
                hidden += s["hidden"]
                cell += s["cell"]
                moments += s["moments"]
                continue
            steps.append(int(s["step"]))
            if "hidden" in s:
                hidden.append(s["hidden"])
                cell.append(s["cell"])
            if "m" in s:
                moments.append([s["m"], s["v"]])
        return RuleState(
            hidden=hidden,
            cell=cell,
            step_count=max(steps, default=0),
            moments=moments,
        )

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, then ``hidden``/``cell`` back in the rule's dtype
        from ``state_dict`` itself (torch casts all floating state to the parameter's
        dtype, which would lose bits and mismatch a float64 rule on float32 parameters)."""
        super().load_state_dict(state_dict)
        dtype = self.rule_dtype
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        mine = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved, mine):
            for key in ("hidden", "cell"):
                value = state_dict["state"].get(i, {}).get(key)
                if isinstance(value, Tensor):
                    self.state[p][key] = value.to(dtype=dtype, device=p.device)

    @property
    def rule_dtype(self) -> torch.dtype:
        return next(self.rule.parameters()).dtype

    def _piece_state(self, p: Tensor, a: int, b: int) -> tuple[Tensor, Tensor]:
        """The lstm rule's (hidden, cell) of coordinates a:b of ``p`` (zeros when new)."""
        s = self.state[p]
        if "hidden" not in s:
            lstm = self.rule.lstm
            shape = (lstm.num_layers, b - a, lstm.hidden_size)
            h = torch.zeros(shape, dtype=self.rule_dtype, device=p.device)
            return h, torch.zeros_like(h)
        if (a, b) == (0, p.numel()):
            return s["hidden"], s["cell"]
        return s["hidden"][:, a:b], s["cell"][:, a:b]

    def _step_lstm(self, params: list[Tensor], grads: list[Tensor], scale: float) -> None:
        """One step of the coordinatewise lstm rule, ``chunk_size`` coordinates per call."""
        count = max((int(self.state[p]["step"]) for p in params if "step" in self.state[p]),
                    default=0)  # fmt: skip
        sizes = [p.numel() for p in params]
        chunk = self.chunk_size or LSTM_CHUNK
        pending: dict[int, tuple[Tensor, Tensor]] = {}  # split tensors' new state so far
        for pieces in chunk_plan(sizes, chunk, [p.is_contiguous() for p in params]):
            gs, hs, cs = [], [], []
            for i, a, b in pieces:
                whole = (a, b) == (0, sizes[i])
                gs.append(grads[i] if whole else grads[i].reshape(-1)[a:b])
                h, c = self._piece_state(params[i], a, b)
                hs.append(h)
                cs.append(c)
            updates, new = self.rule(gs, RuleState(hidden=hs, cell=cs, step_count=count))
            del hs, cs
            for (i, a, b), u, h1, c1 in zip(pieces, updates, new.hidden, new.cell):
                p = params[i]
                if (a, b) == (0, sizes[i]):
                    p.add_(u, alpha=scale)
                    h_new, c_new = h1.clone(), c1.clone()
                else:
                    p.view(-1)[a:b].add_(u, alpha=scale)
                    if i not in pending:
                        shape = (h1.shape[0], sizes[i], h1.shape[2])
                        pending[i] = (h1.new_empty(shape), c1.new_empty(shape))
                    pending[i][0][:, a:b] = h1
                    pending[i][1][:, a:b] = c1
                    if b < sizes[i]:
                        continue
                    h_new, c_new = pending.pop(i)
                s = self.state[p]
                s["step"] = torch.tensor(float(count + 1))
                s["hidden"], s["cell"] = h_new, c_new

    def _step_eager(self, params: list[Tensor], grads: list[Tensor], scale: float) -> None:
        """One step of the rule's own ``forward`` (every rule but ``lstm``)."""
        updates, new = self.rule(grads, self._gather(params))
        torch._foreach_add_(params, [u.to(p.dtype) for p, u in zip(params, updates)],
                            alpha=scale)  # fmt: skip
        step = torch.tensor(float(new.step_count))
        for i, p in enumerate(params):
            s = self.state[p]
            s["step"] = step
            if new.hidden:
                s["hidden"], s["cell"] = new.hidden[i], new.cell[i]
            if new.moments:
                s["m"], s["v"] = new.moments[i]

    def _use_fused(self, params: list[Tensor]) -> bool:
        """Whether this group's ``l2o`` step runs compiled (see ``fused``)."""
        return isinstance(self.rule, L2ORule) and compiled_step_wanted(
            self, self.fused, params[0].device.type
        )

    def _step_fused(self, params: list[Tensor], grads: list[Tensor], scale: float) -> None:
        """One step of the ``l2o`` rule as one compiled call (:mod:`fused_l2o`). The
        Python around it is kept to a few operations: on a small model it costs as much
        as the compiled work."""
        states = [self.state[p] for p in params]
        if any("step" not in s for s in states):
            self._init_l2o_state(params)
        t = max(int(s["step"]) for s in states) + 1
        (b1, b2) = ADAM_BETAS
        scalars = torch.tensor([1 - b1**t, 1 - b2**t, scale], dtype=torch.float64,
                               device=params[0].device)  # fmt: skip
        ms, vs = [s["m"] for s in states], [s["v"] for s in states]
        hidden = torch.cat([s["hidden"] for s in states], dim=1)
        cell = torch.cat([s["cell"] for s in states], dim=1)
        if self._weights is None:
            self._weights = rule_weights(self.rule)
        try:
            hidden, cell = fused_l2o_step(
                params, grads, ms, vs, hidden, cell, scalars, self._weights, self.rule.lr
            )
        except compile_errors() as e:  # raised while compiling, before anything changed
            compile_failed(self, "the l2o step", e)
            self._step_eager(params, grads, scale)
            return
        step = torch.tensor(float(t))
        for i, s in enumerate(states):  # m and v were updated in place
            s["step"], s["hidden"], s["cell"] = step, hidden[:, i : i + 1], cell[:, i : i + 1]

    def _init_l2o_state(self, params: list[Tensor]) -> None:
        """Zero state (the rule's start) for the parameters that have none yet."""
        for p in params:
            s = self.state[p]
            if "step" not in s:
                fresh = self.rule.init_state([p])
                s["step"] = torch.tensor(0.0)
                s["hidden"], s["cell"] = fresh.hidden[0], fresh.cell[0]
                s["m"], s["v"] = fresh.moments[0]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if isinstance(self.rule, MetaSGDRule | WarpGradRule):
                params = list(group["params"])  # α is matched by position
                grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            else:
                params = [p for p in group["params"] if p.grad is not None]
                grads = [p.grad for p in params]
            if not params:
                continue
            if isinstance(self.rule, LSTMRule):
                self._step_lstm(params, grads, group["scale"])
                continue
            if self._use_fused(params):
                self._step_fused(params, grads, group["scale"])
                continue
            self._step_eager(params, grads, group["scale"])
        return loss


def chunk_plan(
    sizes: list[int], chunk: int, splittable: list[bool] | None = None
) -> list[list[tuple[int, int, int]]]:
    """The flattened coordinates of tensors of ``sizes``, in order, cut into calls of at
    most ``chunk`` coordinates: each call a list of pieces (tensor index, start, end).
    A tensor that is not ``splittable`` is one piece (a call of its own if it does not
    fit); an empty tensor is a piece (i, 0, 0). All tensors fit: one call, whole tensors.
    """
    splittable = [True] * len(sizes) if splittable is None else splittable
    calls: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    room = chunk
    for i, n in enumerate(sizes):
        if n == 0:
            current.append((i, 0, 0))
        a = 0
        while a < n:
            take = min(n - a, room) if splittable[i] else n
            if current and (take == 0 or take > room):
                calls.append(current)
                current, room = [], chunk
                continue
            current.append((i, a, a + take))
            a += take
            room = max(room - take, 0)
    if current:
        calls.append(current)
    return calls


LEARNED = "l2o"  # the config name of a saved learned optimizer: l2o:PATH


@register_optimizer(
    LEARNED,
    1.0,
    description="A meta-trained optimizer from a file (l2o:PATH; pinnopt meta-train); "
    "no file: the PINN rule shipped with pinnopt",
    argument="path",
)
def learned_optimizer(params, lr, path=None, scale=1.0) -> LearnedOptimizer:
    """``LearnedOptimizer(params, path, scale)``; ``lr`` is ignored (the rule's step size
    is learned; ``scale`` multiplies its update). Each group's ``lr`` is set to
    ``scale`` for the trainer's history; a scheduler changes it with no effect.

    Without ``path``: the pre-trained PINN rule shipped in the package
    (:mod:`pinnopt.learned.shipped`), checked against its recorded checksum."""
    source = shipped_rule() if path is None else path
    try:
        optimizer = LearnedOptimizer(params, source, scale=scale)
    except ValueError as e:  # torch.load's reason spans many lines: keep one
        if str(e).startswith("Invalid path"):
            msg = f"Invalid path: {str(path)!r} is not a saved learned optimizer"
            raise ValueError(msg) from None
        raise
    for group in optimizer.param_groups:
        group.setdefault("lr", group["scale"])
    return optimizer

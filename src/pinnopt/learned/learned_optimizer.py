"""A meta-trained update rule, loaded from a file, as an ordinary ``torch.optim.Optimizer``."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import Tensor
from torch.optim import Optimizer

from pinnopt.learned.meta import MetaOptimizerConfig, build_rule
from pinnopt.learned.methods import MetaSGDRule, OptimizerState

FORMAT = "pinnopt.learned_optimizer/1"


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


class LearnedOptimizer(Optimizer):
    """θ_i ← θ_i + scale · u_i, with u = U_φ(g, state) the meta-trained rule saved by
    :meth:`pinnopt.learned.meta.MetaOptimizer.save`, applied under ``torch.no_grad``
    (no meta-gradients). See :mod:`pinnopt.learned.methods` for the rules and papers
    (``lstm``: Andrychowicz et al. 2016; ``meta_sgd``: Li et al. 2017; ``l2o``).

    The rule's inner state is kept per parameter in ``self.state[p]`` (``hidden``,
    ``cell``, and for ``l2o`` ``m``, ``v``; ``step``), so ``state_dict()`` round-trips.
    Each param group is one call of the rule (per-tensor statistics of ``l2o`` are per
    tensor anyway). ``meta_sgd``'s learned per-parameter α fits only a model of the same
    parameter shapes, in order; otherwise the constructor raises ``ValueError``. Its
    learned initialisation is not applied (an optimizer does not set the weights);
    take it from ``MetaOptimizer.learned_init()``.
    """

    def __init__(self, params, path: str | Path, scale: float = 1.0) -> None:
        if not (isinstance(scale, float | int) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"Invalid scale: {scale!r} (need a finite number > 0)")
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
        if isinstance(self.rule, MetaSGDRule):
            mine = [p.shape for g in self.param_groups for p in g["params"]]
            self.rule.check_shapes(mine)
            if len(self.param_groups) != 1:
                raise ValueError("Invalid params for meta_sgd: give one param group")

    def _gather(self, params: list[Tensor]) -> OptimizerState:
        """The rule's state for ``params``; a parameter without state yet starts fresh."""
        if isinstance(self.rule, MetaSGDRule):  # no inner state but the step count
            step = max((int(self.state[p]["step"]) for p in params if self.state[p]), default=0)
            return OptimizerState(step_count=step, per_param_lr=list(self.rule.alpha))
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
        return OptimizerState(
            hidden=hidden,
            cell=cell,
            step_count=max(steps, default=0),
            moments=moments,
            per_param_lr=list(getattr(self.rule, "alpha", [])) or None,
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if isinstance(self.rule, MetaSGDRule):
                params = list(group["params"])  # α is matched by position
                grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            else:
                params = [p for p in group["params"] if p.grad is not None]
                grads = [p.grad for p in params]
            if not params:
                continue
            state = self._gather(params)
            updates, new = self.rule(grads, state)
            for i, (p, u) in enumerate(zip(params, updates)):
                p.add_(u, alpha=group["scale"])
                s = self.state[p]
                s["step"] = torch.tensor(float(new.step_count))
                if new.hidden:
                    s["hidden"], s["cell"] = new.hidden[i].clone(), new.cell[i].clone()
                if new.moments:
                    s["m"], s["v"] = new.moments[i][0], new.moments[i][1]
        return loss

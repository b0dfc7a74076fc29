"""Learning-rate schedules by name, built on ``torch.optim.lr_scheduler``.

Every schedule is sized by the number of steps of the stage it runs in:

- ``exponential``: lr·γ^k with γ = final_factor^(1/steps) (default final_factor 0.01).
- ``cosine``: cosine annealing from lr to eta_min (default 0) over the stage.
- ``plateau``: divide lr by 1/factor (default factor 0.5) after ``patience``
  steps (default 100) without improvement of the loss.
- ``multistep``: multiply lr by gamma (default 0.1) at fractions ``milestones``
  (default [0.5, 0.75]) of the stage.
- ``warmup_cosine``: linear warm-up over ``warmup`` (default 5%) of the stage, then cosine.
- ``cyclical``: triangular cycles between lr·base_factor (default 0.1) and lr,
  ``cycles`` (default 4) per stage (Smith 2017).
- ``learned``: lr·exp(s(k/steps)) with s the schedule meta-trained on a task family
  (``pinnopt meta-train --method schedule``), loaded from the option ``path``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer, lr_scheduler

SCHEDULERS = ("none", "exponential", "cosine", "plateau", "multistep", "warmup_cosine", "cyclical",
              "learned")  # fmt: skip


def build_scheduler(name: str, optimizer: Optimizer, steps: int, **options):
    """The schedule ``name`` for a stage of ``steps`` steps, or None for ``"none"``."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {', '.join(SCHEDULERS)}")
    steps = max(int(steps), 1)
    opts = dict(options)
    if name == "none":
        sched = None
    elif name == "exponential":
        final = float(opts.pop("final_factor", 0.01))
        sched = lr_scheduler.ExponentialLR(optimizer, gamma=final ** (1.0 / steps))
    elif name == "cosine":
        sched = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps, eta_min=float(opts.pop("eta_min", 0.0))
        )
    elif name == "plateau":
        sched = lr_scheduler.ReduceLROnPlateau(
            optimizer,
            factor=float(opts.pop("factor", 0.5)),
            patience=int(opts.pop("patience", 100)),
        )
    elif name == "multistep":
        fractions = opts.pop("milestones", [0.5, 0.75])
        milestones = sorted({max(1, int(f * steps)) for f in fractions})
        sched = lr_scheduler.MultiStepLR(
            optimizer, milestones=milestones, gamma=float(opts.pop("gamma", 0.1))
        )
    elif name == "warmup_cosine":
        warmup = max(1, int(float(opts.pop("warmup", 0.05)) * steps))
        sched = lr_scheduler.SequentialLR(
            optimizer,
            [
                lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, total_iters=warmup),
                lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps - warmup, 1)),
            ],
            milestones=[warmup],
        )
    elif name == "learned":
        if "path" not in opts:
            raise ValueError("scheduler learned needs the option path (a schedule saved by "
                             "'pinnopt meta-train --method schedule')")  # fmt: skip
        from pinnopt.learned.learned_optimizer import load_schedule

        multiplier = load_schedule(opts.pop("path"))
        sched = lr_scheduler.LambdaLR(optimizer, lambda k: multiplier(k / steps))
    else:  # cyclical
        lrs = [g["lr"] for g in optimizer.param_groups]
        base = float(opts.pop("base_factor", 0.1))
        half = max(1, steps // (2 * int(opts.pop("cycles", 4))))
        sched = lr_scheduler.CyclicLR(
            optimizer,
            base_lr=[base * lr for lr in lrs],
            max_lr=lrs,
            step_size_up=half,
            cycle_momentum=False,
        )
    if opts:
        raise ValueError(f"unknown option(s) {sorted(opts)} for scheduler {name}")
    return sched


def scheduler_step(scheduler, loss: float) -> None:
    """Advance a schedule by one step (plateau schedules read the loss)."""
    if scheduler is None:
        return
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        if math.isfinite(loss):
            scheduler.step(loss)
    else:
        scheduler.step()

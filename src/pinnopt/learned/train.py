"""The meta-training loop: meta-steps on ``train`` episodes, selection on ``val``.

Each meta-step draws ``episodes_per_step`` fresh tasks from ``EpisodeSampler(family,
"train", base_seed=seed)`` and calls :meth:`MetaOptimizer.meta_train_step` on them.
Before the first meta-step, every ``val_every`` meta-steps and after the last one, the
current rule runs an inner run of ``config.inner_steps`` steps (no meta-gradients) on
the first ``val_episodes`` tasks of ``EpisodeSampler(family, "val")`` (base seed 0:
the same validation set in every run); the validation loss is the mean over those
tasks of the loss at the end of the run (``lstm``, ``l2o``: the task loss; ``meta_sgd``:
the query loss after adapting from its learned θ_0, its own meta-objective). The rule
with the lowest finite validation loss is the one saved, so the untrained rule is
kept if meta-training never improves on it.

A meta-step reports ``exploded`` when a meta-gradient was dropped by the guard or an
inner run diverged; after ``max_exploded`` such meta-steps in a row the loop stops with
status ``"exploded"`` (the best rule so far is still saved). With ``patience`` P, the
loop stops with status ``"stopped_early"`` once P validations in a row have not
improved on the best one. Finally the saved rule, and the untrained one, are scored
like validation on the first ``test_episodes`` tasks of the ``test`` split (base seed 0),
which nothing above has seen: ``test_loss`` and ``untrained_test_loss``.

Outputs in ``out``: ``optimizer.pt`` (:meth:`MetaOptimizer.save`, loadable by
:class:`~pinnopt.learned.learned_optimizer.LearnedOptimizer`), ``history.csv``,
``metrics.json`` and ``meta_loss.png``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn  # noqa: E402

from pinnopt.learned.meta import Episode, MetaOptimizer, MetaOptimizerConfig  # noqa: E402
from pinnopt.learned.methods import RuleState  # noqa: E402
from pinnopt.learned.tasks import EpisodeSampler, Task, TaskFamily  # noqa: E402
from pinnopt.train.distributed import Sync  # noqa: E402

HISTORY_COLUMNS = ("meta_step", "time", "meta_loss", "grad_norm", "skipped", "exploded",
                   "val_loss")  # fmt: skip


def _positive(name: str, value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"Invalid {name}: {value!r} (need an integer >= 1)")


def check_arguments(
    meta_steps: int,
    episodes_per_step: int,
    val_every: int,
    val_episodes: int,
    seed: int,
    max_exploded: int = 5,
    patience: int | None = None,
    test_episodes: int = 4,
) -> None:
    """ValueError ``Invalid NAME: …`` for a bad argument of :func:`meta_train`."""
    for name, value in [("meta_steps", meta_steps), ("episodes_per_step", episodes_per_step),
                        ("val_every", val_every), ("val_episodes", val_episodes),
                        ("max_exploded", max_exploded)]:  # fmt: skip
        _positive(name, value)
    if patience is not None:
        _positive("patience", patience)
    if not (isinstance(test_episodes, int) and not isinstance(test_episodes, bool)
            and test_episodes >= 0):  # fmt: skip
        raise ValueError(f"Invalid test_episodes: {test_episodes!r} (need an integer >= 0)")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"Invalid seed: {seed!r} (need an integer >= 0)")


def adapt(meta: MetaOptimizer, task: Task, steps: int) -> nn.Module | None:
    """The task's model after ``steps`` steps of ``meta``'s current rule (no
    meta-gradients; ``meta_sgd`` starts from its learned θ_0), or None once the task
    loss is not finite."""
    model = task.init_model()
    params = list(model.parameters())
    sgd = meta.config.method == "meta_sgd"
    if sgd:
        with torch.no_grad():
            for p, init in zip(params, meta.learned_init().values()):
                p.copy_(init)
    state = RuleState() if sgd else meta.init_state(params)
    for _ in range(steps):
        loss = task.loss(model)
        if not torch.isfinite(loss):
            return None
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            updates, new = meta.compute_update(list(grads), state)
            state = RuleState() if sgd else new
            for p, u in zip(params, updates):
                p.add_(u)
    return model


def inner_run_loss(meta: MetaOptimizer, task: Task, steps: int) -> float:
    """The loss after :func:`adapt` (``inf`` if not finite): the task loss for
    ``lstm``/``l2o``/``schedule``, the query loss for ``warp_grad`` and ``meta_sgd``
    (their own meta-objectives)."""
    model = adapt(meta, task, steps)
    if model is None:
        return math.inf
    query = meta.config.method in ("meta_sgd", "warp_grad")
    final = Episode(task).query() if query else task.loss
    with torch.no_grad():
        value = float(final(model))
    return value if math.isfinite(value) else math.inf


def validate(meta: MetaOptimizer, tasks: list[Task]) -> float:
    """Mean :func:`inner_run_loss` over ``tasks`` (``inf`` if any run is not finite); the
    geometric mean when the config's ``meta_objective`` is ``log_loss``."""
    losses = [inner_run_loss(meta, t, meta.config.inner_steps) for t in tasks]
    if meta.config.meta_objective != "log_loss":
        return sum(losses) / len(losses)
    if math.inf in losses:
        return math.inf
    if 0.0 in losses:
        return 0.0
    return math.exp(sum(math.log(v) for v in losses) / len(losses))


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("meta-loss {task.fields[loss]:.3e} val {task.fields[val]:.3e}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def plot_meta_loss(history: list[dict[str, Any]], path: str | Path) -> None:
    """Meta-loss per meta-step and the validation loss where evaluated (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    train = [(r["meta_step"], r["meta_loss"]) for r in history
             if isinstance(r["meta_loss"], float) and 0 < r["meta_loss"] < math.inf]  # fmt: skip
    val = [(r["meta_step"], r["val_loss"]) for r in history
           if isinstance(r["val_loss"], float) and 0 < r["val_loss"] < math.inf]  # fmt: skip
    if train:
        ax.plot(*zip(*train), lw=1.5, label="meta-loss (train)")
    if val:
        ax.plot(*zip(*val), "k--o", ms=3, label="val loss")
    if train or val:
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("meta-step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def meta_train(
    family: TaskFamily,
    config: MetaOptimizerConfig,
    out: str | Path,
    meta_steps: int = 100,
    episodes_per_step: int = 4,
    val_every: int = 10,
    val_episodes: int = 4,
    seed: int = 0,
    progress: bool = True,
    max_exploded: int = 5,
    patience: int | None = None,
    test_episodes: int = 4,
) -> dict[str, Any]:
    """Meta-train ``config``'s rule on ``family`` and write ``out`` (see the module
    docstring); returns the metrics also written to ``metrics.json``.

    ``seed`` is the train sampler's base seed (the rule's initial weights come from
    ``config.seed``); ValueError names a bad argument.
    """
    check_arguments(meta_steps, episodes_per_step, val_every, val_episodes, seed, max_exploded,
                    patience, test_episodes)  # fmt: skip
    out = Path(out)
    main = Sync().is_main  # on several processes (torchrun) only the first writes and prints
    if main:
        out.mkdir(parents=True, exist_ok=True)
    train = EpisodeSampler(family, "train", base_seed=seed)
    val_tasks = EpisodeSampler(family, "val").take(val_episodes)
    meta = MetaOptimizer(train.task(0).init_model(), config)

    start = time.perf_counter()
    best = validate(meta, val_tasks)
    initial_val = best
    best_step, best_rule = 0, copy.deepcopy(meta.rule.state_dict())
    untrained_rule = copy.deepcopy(best_rule)
    history: list[dict[str, Any]] = [dict(meta_step=0, time=0.0, meta_loss="", grad_norm="",
                                          skipped="", exploded="", val_loss=best)]  # fmt: skip
    status, in_a_row, done, skipped_total, stale = "completed", 0, 0, 0, 0
    with _progress(progress and main) as bar:
        task_id = bar.add_task("meta-train", total=meta_steps, loss=math.nan, val=best)
        for step in range(1, meta_steps + 1):
            tasks = train.take(episodes_per_step, start=(step - 1) * episodes_per_step)
            result = meta.meta_train_step(tasks)
            done = step
            skipped_total += result.skipped
            in_a_row = in_a_row + 1 if result.exploded else 0
            val: float | str = ""
            if step % val_every == 0 or step == meta_steps or in_a_row >= max_exploded:
                val = validate(meta, val_tasks)
                stale += 1
                if math.isfinite(val) and val < best:
                    best, best_step, stale = val, step, 0
                    best_rule = copy.deepcopy(meta.rule.state_dict())
            history.append(dict(meta_step=step, time=time.perf_counter() - start,
                                meta_loss=float(result.meta_loss),
                                grad_norm=float(result.grad_norm), skipped=result.skipped,
                                exploded=int(result.exploded), val_loss=val))  # fmt: skip
            bar.update(task_id, advance=1, loss=result.meta_loss,
                       val=val if isinstance(val, float) else best)  # fmt: skip
            if in_a_row >= max_exploded:
                status = "exploded"
                break
            if patience is not None and stale >= patience:
                status = "stopped_early"
                break

    test_tasks = EpisodeSampler(family, "test").take(test_episodes) if test_episodes else []
    test_loss = untrained_test_loss = None
    if test_tasks:
        meta.rule.load_state_dict(untrained_rule)
        untrained_test_loss = validate(meta, test_tasks)
    meta.rule.load_state_dict(best_rule)
    if main:
        meta.save(out / "optimizer.pt")
    if test_tasks:
        test_loss = validate(meta, test_tasks)
    if main:
        with open(out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(history)
        plot_meta_loss(history, out / "meta_loss.png")
    last_val = next(r["val_loss"] for r in reversed(history) if r["val_loss"] != "")
    metrics = {
        "family": family.name,
        "family_options": {
            k: v
            for k, v in dataclasses.asdict(family).items()
            if isinstance(v, int | float | str | bool | list)
        },
        "method": config.method,
        "config": dataclasses.asdict(config),
        "status": status,
        "meta_steps": meta_steps,
        "meta_steps_done": done,
        "episodes_per_step": episodes_per_step,
        "val_every": val_every,
        "val_episodes": val_episodes,
        "seed": seed,
        "skipped_updates": skipped_total,
        "initial_val_loss": initial_val,
        "final_val_loss": last_val,
        "best_val_loss": best,
        "best_meta_step": best_step,
        "patience": patience,
        "test_episodes": test_episodes,
        "test_loss": test_loss,
        "untrained_test_loss": untrained_test_loss,
        "wall_time_s": time.perf_counter() - start,
        "optimizer": str(out / "optimizer.pt"),
    }
    if main:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    return metrics

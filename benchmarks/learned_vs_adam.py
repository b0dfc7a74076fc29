"""A meta-trained optimizer against tuned Adam on held-out tasks of a task family.

    python benchmarks/learned_vs_adam.py --family quadratic --out bench_out/learned/quadratic
    python benchmarks/learned_vs_adam.py --family poisson --out bench_out/learned/poisson
    python benchmarks/learned_vs_adam.py --family pde_mix --meta-steps 60 \\
        --out bench_out/learned/pde_mix_v4
    python benchmarks/learned_vs_adam.py --family pde_mix --kinds reaction advection \\
        --rule src/pinnopt/learned/rules/pinn_l2o.pt --out bench_out/learned/held_out
    python benchmarks/learned_vs_adam.py --family poisson --smoke --out /tmp/learned  # tests

Protocol (every task is a fixed seed of the family's episode splits, see
``pinnopt.learned.tasks.EpisodeSampler``):

1. **Adam's learning rate** is tuned on ``--tune-tasks`` tasks of the *train* split:
   each lr of ``--lrs`` runs ``--steps`` steps on each, and the lr with the lowest
   geometric mean of the final losses wins.
2. **Meta-training** (:func:`pinnopt.learned.meta_train`) of ``--method`` (``l2o``, the
   default, ``lstm`` or ``schedule``) on the train split, with validation tasks for
   selection, inner runs of ``--steps`` steps (the same budget as Adam), truncations of
   ``--unroll-steps``, the ``log_loss`` meta-objective, exact meta-gradients (unless
   ``--first-order``), and ``inner_lr`` = the tuned Adam lr, so that the untrained
   ``l2o`` or ``schedule`` rule *is* the tuned Adam.
3. **Evaluation** on ``--test-tasks`` tasks of the *test* split, never seen before:
   tuned Adam and the saved rule (through ``LearnedOptimizer``, as a user runs it)
   take ``--steps`` steps each from the task's initial weights. For each task, the
   target is Adam's final loss; n_Adam is the first step at which Adam's loss is at
   most the target, n_learned the same for the learned rule (none if it never gets
   there), and the step ratio n_learned / n_Adam (∞ if never). The wall-time ratio
   uses seconds per step measured in the same runs. The table gives medians over
   the tasks.
   With ``--rule PATH`` step 2 is skipped and that saved rule is scored (the shipped
   rule on PDE kinds outside its mixture, with ``--kinds``).
4. **Unseen architectures** (``--archs``, ``poisson`` only): the same rule, meta-trained
   on the family's default network, on test tasks whose network is deeper, wider, or
   a Chebyshev-KAN; Adam is tuned again for each architecture, on its train tasks.

Outputs in ``--out``: ``results.json``, ``results.md`` (tables and the command),
``curves.png`` (median loss per step over the test tasks, with the quartiles) and the
meta-training run in ``meta/`` (``history.csv``, ``meta_loss.png``, ``optimizer.pt``).
A finished meta-training run in ``meta/`` is reused, not repeated.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pinnopt.learned import (  # noqa: E402
    EpisodeSampler,
    LearnedOptimizer,
    MetaOptimizerConfig,
    build_family,
    meta_train,
)

LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0]
SETUPS = {  # family options and step budget of each family's study
    "quadratic": {"options": {"dim": 20, "condition": 100.0}, "steps": 100},
    "poisson": {"options": {}, "steps": 500},
    # amplitudes a_k ~ 1/k^2, as the poisson family: with 1/k (the family's default) Adam
    # ends at a median 20 % error in 500 steps, and meta-training found no better rule
    "pde_mix": {"options": {"decay": 2.0}, "steps": 500},
}
ARCHS = {  # unseen architectures for the poisson family (its default: mlp 16 x 2)
    "deeper mlp (16 x 4)": {"depth": 4},
    "wider mlp (64 x 2)": {"width": 64},
    # degree 3, one layer: at 8 x 2, degree 5, no Adam lr in the grid trained it in 500 steps
    # (checked on train tasks, by Adam alone)
    "chebykan (16 x 1, degree 3)": {"model": "chebykan", "width": 16, "depth": 1, "degree": 3},
}
SMOKE = {
    "quadratic": {"dim": 4},
    "poisson": {"n_pde": 8, "n_bc": 4, "width": 4, "modes": 2},
    "pde_mix": {
        "n_pde": 8,
        "n_bc": 4,
        "modes": 2,
        "archs": ({"width": 4}, {"model": "chebykan", "width": 3, "degree": 2}),
    },
}


def run(task, build, steps: int) -> dict:
    """``steps`` steps of the optimizer ``build(params)`` on ``task``: the loss before each
    step and after the last (steps + 1 values, ∞ once non-finite), the seconds of the
    first step (a compiled step compiles there) and per later step, the final metric."""
    model = task.init_model()
    opt = build(model.parameters())
    losses, first = [], 0.0
    start = time.perf_counter()
    for k in range(steps):
        loss = opt.step(task.closure(model, opt)).item()
        if k == 0:
            first = time.perf_counter() - start
        if not math.isfinite(loss):
            break
        losses.append(loss)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        final = float(task.loss(model))
    losses.append(final if math.isfinite(final) else math.inf)
    losses += [math.inf] * (steps + 1 - len(losses))
    metric = task.evaluate(model) if math.isfinite(final) else math.nan
    per_step = (seconds - first) / max(len(losses) - 2, 1)
    return {"losses": losses, "first_s": first, "s_per_step": per_step, "metric": metric}


def geometric_mean(values: list[float]) -> float:
    if any(not 0 < v < math.inf for v in values):
        return math.inf if any(not v < math.inf for v in values) else 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def tune_adam(family, n_tasks: int, steps: int, lrs: list[float]) -> dict:
    """{"lr": best, "scores": {lr: geometric-mean final loss}} on train tasks."""
    tasks = EpisodeSampler(family, "train").take(n_tasks)
    scores = {}
    for lr in lrs:
        build = lambda ps, lr=lr: torch.optim.Adam(ps, lr=lr)  # noqa: E731
        scores[lr] = geometric_mean([run(t, build, steps)["losses"][-1] for t in tasks])
    return {"lr": min(scores, key=lambda lr: scores[lr]), "scores": scores}


def first_reach(losses: list[float], target: float) -> int | None:
    """The first step whose loss is at most ``target`` (to a relative 1e-9, so that a
    rule equal to Adam up to rounding reaches Adam's final loss), or None."""
    return next((t for t, v in enumerate(losses) if v <= target * (1 + 1e-9)), None)


def compare(family, rule: Path, adam_lr: float, n_tasks: int, steps: int) -> list[dict]:
    """Tuned Adam and the learned rule on the first ``n_tasks`` test tasks, one row each."""
    rows = []
    for task in EpisodeSampler(family, "test").take(n_tasks):
        adam = run(task, lambda ps: torch.optim.Adam(ps, lr=adam_lr), steps)
        learned = run(task, lambda ps: LearnedOptimizer(ps, rule), steps)
        target = adam["losses"][-1]
        n_adam, n_learned = first_reach(adam["losses"], target), None
        if math.isfinite(target):
            n_learned = first_reach(learned["losses"], target)
        step_ratio = math.inf if n_learned is None or not n_adam else n_learned / n_adam
        sec_adam, sec_learned = adam["s_per_step"], learned["s_per_step"]
        rows.append({
            "seed": task.seed, "target": target, "n_adam": n_adam, "n_learned": n_learned,
            "step_ratio": step_ratio, "time_ratio": step_ratio * sec_learned / sec_adam,
            "adam_final": target, "learned_final": learned["losses"][-1],
            "adam_metric": adam["metric"], "learned_metric": learned["metric"],
            "adam_s_per_step": sec_adam, "learned_s_per_step": sec_learned,
            "learned_first_s": learned["first_s"],
            "adam_losses": adam["losses"], "learned_losses": learned["losses"],
        })  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    reached = [r for r in rows if r["n_learned"] is not None]
    return {
        "tasks": len(rows),
        "reached": len(reached),
        "median_step_ratio": statistics.median(r["step_ratio"] for r in rows),
        "median_time_ratio": statistics.median(r["time_ratio"] for r in rows),
        "median_adam_final": statistics.median(r["adam_final"] for r in rows),
        "median_learned_final": statistics.median(r["learned_final"] for r in rows),
        "median_adam_metric": statistics.median(r["adam_metric"] for r in rows),
        "median_learned_metric": statistics.median(r["learned_metric"] for r in rows),
        "adam_ms_per_step": 1e3 * statistics.median(r["adam_s_per_step"] for r in rows),
        "learned_ms_per_step": 1e3 * statistics.median(r["learned_s_per_step"] for r in rows),
        "learned_first_s": max(r["learned_first_s"] for r in rows),
    }


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, color in [("adam_losses", "tuned Adam", "C0"),
                              ("learned_losses", "learned", "C3")]:  # fmt: skip
        curves = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        q = torch.nanquantile(curves.clamp_max(1e300), torch.tensor([0.25, 0.5, 0.75],
                              dtype=torch.float64), dim=0)  # fmt: skip
        steps = range(curves.shape[1])
        ax.plot(steps, q[1], color=color, label=f"{label} (median)")
        ax.fill_between(steps, q[0], q[2], color=color, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (held-out tasks)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(x: float) -> str:
    return "∞" if x == math.inf else f"{x:.3g}"


def markdown(res: dict, command: str) -> str:
    s, m = res["summary"], res["meta"]
    edge = (
        " (at the edge of the grid)" if res["adam_lr"] in (min(res["lrs"]), max(res["lrs"])) else ""
    )
    lines = [
        f"`{command}`: {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}.",
        "",
        f"Family `{res['family']}` {res['family_options']}, {res['steps']} steps per run. "
        f"Adam lr tuned on {res['tune_tasks']} train tasks over {res['lrs']}: "
        f"**{res['adam_lr']:g}**{edge}. " + learned_rule(res),
        "",
        "| test tasks | learned reaches Adam's final loss | median step ratio (learned / Adam) "
        "| median wall-time ratio | median final loss, Adam | median final loss, learned "
        f"| median {res['metric']}, Adam | median {res['metric']}, learned "
        "| ms / step, Adam | ms / step, learned |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['tasks']} | {s['reached']} | {fmt(s['median_step_ratio'])} | "
        f"{fmt(s['median_time_ratio'])} | {fmt(s['median_adam_final'])} | "
        f"{fmt(s['median_learned_final'])} | {fmt(s['median_adam_metric'])} | "
        f"{fmt(s['median_learned_metric'])} | {s['adam_ms_per_step']:.2f} | "
        f"{s['learned_ms_per_step']:.2f} |",
        "",
        "Times per step exclude each run's first step; the learned rule's slowest first "
        f"step took {s['learned_first_s']:.2f} s (its compilation, when the step is "
        "compiled; later runs in the same process reuse it).",
    ]
    if m is not None:
        lines += [
            "",
            f"Meta-training with inner runs of {res['steps']} steps in truncations of "
            f"{res['unroll_steps']}: the meta-loss (mean log-loss) stayed within "
            f"[{fmt(m['meta_loss_min'])}, {fmt(m['meta_loss_max'])}], the largest "
            f"meta-gradient norm before clipping was {fmt(m['grad_norm_max'])}.",
        ]
    if res.get("archs"):
        lines += [
            "",
            "Unseen architectures (the same rule; Adam re-tuned on each one's train tasks):",
            "",
            "| architecture | Adam lr | learned reaches Adam's final loss "
            "| median step ratio | median wall-time ratio | median final loss, Adam "
            "| median final loss, learned |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, a in res["archs"].items():
            t = a["summary"]
            lines.append(
                f"| {name} | {a['adam_lr']:g} | {t['reached']} / {t['tasks']} | "
                f"{fmt(t['median_step_ratio'])} | {fmt(t['median_time_ratio'])} | "
                f"{fmt(t['median_adam_final'])} | {fmt(t['median_learned_final'])} |"
            )
    return "\n".join(lines) + "\n"


def learned_rule(res: dict) -> str:
    m = res["meta"]
    if m is None:
        return f"Learned rule: the saved rule `{res['rule']}` (no meta-training in this run)."
    return (
        f"Learned rule: `{res['method']}`"
        f"{' (first-order meta-gradients)' if res['first_order'] else ''}, "
        f"{m['meta_steps_done']} meta-steps, best on validation at meta-step "
        f"{m['best_meta_step']} (status {m['status']}, {m['skipped_updates']} meta-updates "
        f"dropped by the guard, {m['wall_time_s']:.0f} s)."
    )


def meta_summary(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "history.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["meta_loss"] != ""]
    losses = [float(r["meta_loss"]) for r in rows]
    norms = [float(r["grad_norm"]) for r in rows]
    return {**metrics, "meta_loss_min": min(losses, default=math.nan),
            "meta_loss_max": max(losses, default=math.nan),
            "grad_norm_max": max(norms, default=math.nan)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=list(SETUPS), default="quadratic")
    parser.add_argument("--method", choices=["l2o", "lstm", "schedule"], default="l2o")
    parser.add_argument("--steps", type=int, help="steps per run (default: by family)")
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS)
    parser.add_argument("--tune-tasks", type=int, default=8)
    parser.add_argument("--test-tasks", type=int, default=20)
    parser.add_argument("--meta-steps", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=4, help="train tasks per meta-step")
    parser.add_argument("--unroll-steps", type=int, default=20)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--first-order", action="store_true",
                        help="meta-gradients without ∂g/∂φ (second_order=False)")  # fmt: skip
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--val-episodes", type=int, default=8)
    parser.add_argument("--archs", action=argparse.BooleanOptionalAction, default=True,
                        help="poisson: also the unseen architectures")  # fmt: skip
    parser.add_argument("--kinds", nargs="+", help="pde_mix: the PDE kinds (default: its mixture)")
    parser.add_argument("--rule", type=Path, help="score this saved rule instead of meta-training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = dict(SETUPS[args.family]["options"])
    steps = args.steps or SETUPS[args.family]["steps"]
    if args.smoke:
        options.update(SMOKE[args.family])
        steps, args.lrs, args.tune_tasks, args.test_tasks = 6, [1e-2, 1e-1], 2, 2
        args.meta_steps, args.episodes, args.unroll_steps = 2, 1, 3
        args.val_every, args.val_episodes = 1, 1
    if args.kinds:
        options["kinds"] = tuple(args.kinds)
    family = build_family(args.family, **options)
    args.out.mkdir(parents=True, exist_ok=True)

    print(f"tuning Adam's lr on {args.tune_tasks} train tasks ...", flush=True)
    tuned = tune_adam(family, args.tune_tasks, steps, args.lrs)
    print(f"  lr {tuned['lr']:g}: " + ", ".join(f"{lr:g}: {fmt(v)}"
                                               for lr, v in tuned["scores"].items()))  # fmt: skip
    meta_dir = args.out / "meta"
    if args.rule is None and not (meta_dir / "metrics.json").exists():
        config = MetaOptimizerConfig(method=args.method, inner_lr=tuned["lr"], inner_steps=steps,
                                     unroll_steps=args.unroll_steps, meta_lr=args.meta_lr,
                                     meta_objective="log_loss",
                                     second_order=not args.first_order)  # fmt: skip
        meta_train(family, config, meta_dir, meta_steps=args.meta_steps,
                   episodes_per_step=args.episodes, val_every=args.val_every,
                   val_episodes=args.val_episodes, progress=not args.smoke)  # fmt: skip
    rule = args.rule or meta_dir / "optimizer.pt"
    print(f"evaluating on {args.test_tasks} test tasks ...", flush=True)
    rows = compare(family, rule, tuned["lr"], args.test_tasks, steps)
    res = {
        "family": args.family, "family_options": options, "steps": steps,
        "method": args.method, "first_order": args.first_order, "lrs": args.lrs,
        "tune_tasks": args.tune_tasks,
        "adam_lr": tuned["lr"], "adam_scores": tuned["scores"],
        "unroll_steps": args.unroll_steps, "rule": str(rule),
        "meta": None if args.rule else meta_summary(meta_dir),
        "metric": EpisodeSampler(family, "test").task(0).metric,
        "summary": summary(rows), "tasks": rows, "archs": {},
    }  # fmt: skip
    plot_curves(rows, args.out / "curves.png",
                f"{args.family}: tuned Adam (lr {tuned['lr']:g}) vs {args.method}, "
                f"{len(rows)} held-out tasks")  # fmt: skip
    if args.family == "poisson" and args.archs:
        for name, arch in ARCHS.items():
            if args.smoke:
                arch = {**arch, "width": 4}
            arch_family = build_family("poisson", **{**options, **arch})
            print(f"unseen architecture {name} ...", flush=True)
            arch_tuned = tune_adam(arch_family, args.tune_tasks, steps, args.lrs)
            arch_rows = compare(arch_family, rule, arch_tuned["lr"], args.test_tasks, steps)
            res["archs"][name] = {"options": arch, "adam_lr": arch_tuned["lr"],
                                  "adam_scores": arch_tuned["scores"],
                                  "summary": summary(arch_rows), "tasks": arch_rows}  # fmt: skip
    command = "python benchmarks/learned_vs_adam.py " + " ".join(argv)
    text = markdown(res, command.strip())
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(text)
    return res


if __name__ == "__main__":
    main()

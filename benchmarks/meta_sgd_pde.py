"""Meta-SGD against the same meta-learner with one scalar learning rate: few-shot PDE fits.

    python benchmarks/meta_sgd_pde.py --k-shot 1 --out bench_out/meta_sgd_pde_1shot --docs
    python benchmarks/meta_sgd_pde.py --k-shot 5 --out bench_out/meta_sgd_pde_5shot --docs
    python benchmarks/meta_sgd_pde.py --split val --out bench_out/meta_sgd_pde_val  # settings
    python benchmarks/meta_sgd_pde.py --smoke --out /tmp/meta_sgd_pde_smoke          # tests

The digits study (``meta_sgd_digits.py``) on a PDE family: ``pde_fit``
(:class:`pinnopt.learned.pde_tasks.PDEFitFamily`), where a task is a steady 1-D PDE
(Poisson, Helmholtz or steady viscous Burgers, random coefficient, random manufactured
solution u) seen through ``--k-shot`` observations of u; the support loss is the PINN
objective (PDE residual at 32 collocation points plus the observation misfit), the
query metric the mean squared error of u at 100 fresh points.

Protocol. Both variants are :func:`pinnopt.learned.meta_train` runs with the same
everything (1-40-40-1 tanh MLP, start weights, inner steps, initial α, meta-lr,
meta-steps, episodes) except ``per_parameter_lr``: Meta-SGD (α per coordinate) against
one scalar α (MAML with a learned inner lr); each keeps its rule with the lowest
validation query loss. Tasks of the train, val and test splits never share a seed.
Each kept rule adapts from its θ_0 with its α for ``--inner-steps`` steps on the
support loss of each of ``--test-episodes`` test tasks (the same for every method)
and is scored by the query MSE. The paired comparison is per task on log10 MSE
(scalar − Meta-SGD: positive when Meta-SGD fits better), with a normal 95% interval
over the tasks. Reference: Adam from the task's random initial weights,
``--baseline-steps`` steps on the same support loss, the lr chosen on validation tasks.

``--split val`` scores on validation tasks after those used for selection instead of
test, for choosing settings without touching test.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pinnopt.learned import EpisodeSampler, MetaOptimizer, MetaOptimizerConfig, meta_train
from pinnopt.learned.learned_optimizer import load_learned
from pinnopt.learned.pde_tasks import PDEFitFamily
from pinnopt.learned.tasks import Task
from pinnopt.learned.train import adapt

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"Meta-SGD (α per coordinate)": True, "scalar α (same meta-learner)": False}
ADAM = "Adam, random init (reference)"
DOCS_TITLE = "# Meta-SGD against one scalar α: few-shot physics-informed PDE fits"


def family(args) -> PDEFitFamily:
    return PDEFitFamily(k_shot=args.k_shot, width=args.width, n_pde=args.n_pde)


def scored_tasks(args, fam: PDEFitFamily) -> list[Task]:
    start = args.val_episodes if args.split == "val" else 0
    return EpisodeSampler(fam, args.split).take(args.test_episodes, start=start)


def config(args, per_parameter: bool, seed: int) -> MetaOptimizerConfig:
    return MetaOptimizerConfig(method="meta_sgd", per_parameter_lr=per_parameter,
                               inner_steps=args.inner_steps, inner_lr=args.inner_lr,
                               meta_lr=args.meta_lr, seed=seed)  # fmt: skip


def adapted_mse(path: Path, task: Task, steps: int) -> float:
    """Query MSE after ``steps`` steps θ ← θ − α ∘ ∇L_support(θ) from the saved θ_0 (∞ if
    the support loss stops being finite)."""
    blob = load_learned(path)
    meta = MetaOptimizer(task.init_model(), MetaOptimizerConfig(**blob["config"]))
    meta.rule.load_state_dict(blob["rule"])
    model = adapt(meta, task, steps)
    return math.inf if model is None else task.evaluate(model)


def adam_mse(task: Task, lr: float, steps: int) -> float:
    model = task.init_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.step(task.closure(model, opt))
    value = task.evaluate(model)
    return value if math.isfinite(value) else math.inf


def log_summary(values: list[float]) -> dict:
    """Median MSE and mean ± std of log10 MSE."""
    logs = [math.log10(v) if 0 < v < math.inf else math.inf for v in values]
    finite = [v for v in logs if math.isfinite(v)]
    return {"median": statistics.median(values), "mean_log10": statistics.mean(finite),
            "std_log10": statistics.stdev(finite) if len(finite) > 1 else 0.0,
            "diverged": len(logs) - len(finite), "n": len(values)}  # fmt: skip


def paired_log(a: list[float], b: list[float]) -> dict:
    """log10 b − log10 a per task (a finite pair only): mean, std, normal 95% CI, median."""
    d = [math.log10(y) - math.log10(x) for x, y in zip(a, b) if 0 < x < math.inf > y > 0]
    mean = statistics.mean(d)
    std = statistics.stdev(d) if len(d) > 1 else 0.0
    half = 1.96 * std / math.sqrt(len(d))
    return {"mean": mean, "std": std, "ci": (mean - half, mean + half),
            "median": statistics.median(d), "n": len(d)}  # fmt: skip


def run(args) -> dict:
    fam = family(args)
    tasks = scored_tasks(args, fam)
    out = Path(args.out)
    results: dict = {"runs": [], "methods": {}}
    for seed in args.seeds:
        for name, per_parameter in VARIANTS.items():
            folder = out / "runs" / ("meta_sgd" if per_parameter else "scalar") / f"seed{seed}"
            t0 = time.perf_counter()
            m = meta_train(fam, config(args, per_parameter, seed), folder,
                           meta_steps=args.meta_steps, episodes_per_step=args.episodes,
                           val_every=args.val_every, val_episodes=args.val_episodes,
                           seed=seed, progress=False)  # fmt: skip
            seconds = time.perf_counter() - t0
            mse = [adapted_mse(folder / "optimizer.pt", t, args.inner_steps) for t in tasks]
            results["runs"].append({"method": name, "seed": seed, "mse": mse,
                                    "best_val_loss": m["best_val_loss"],
                                    "initial_val_loss": m["initial_val_loss"],
                                    "best_meta_step": m["best_meta_step"],
                                    "seconds": seconds})  # fmt: skip
            print(f"{name:30s} seed {seed}: median {args.split} query MSE "
                  f"{statistics.median(mse):.3g} (val {m['best_val_loss']:.3g} at meta-step "
                  f"{m['best_meta_step']}), {seconds:.0f} s", flush=True)  # fmt: skip
    val = EpisodeSampler(fam, "val").take(args.val_episodes)
    by_lr = {lr: statistics.median(adam_mse(t, lr, args.baseline_steps) for t in val)
             for lr in args.baseline_lrs}  # fmt: skip
    lr = min(by_lr, key=by_lr.get)
    results["baseline_lr"], results["baseline_val"] = lr, by_lr
    results["methods"][ADAM] = [adam_mse(t, lr, args.baseline_steps) for t in tasks]
    return results


def fmt(x: float) -> str:
    return "∞" if x == math.inf else f"{x:.3g}"


def table(args, results: dict) -> str:
    per, scalar = VARIANTS
    command = " ".join(["python benchmarks/meta_sgd_pde.py", *args.argv])
    lines = [
        f"`{command}`: {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, float64. {args.k_shot}-shot fits on `pde_fit` "
        f"({', '.join(family(args).kinds)}; {args.n_pde} collocation points), scored on "
        f"{args.test_episodes} {args.split} tasks by the query MSE of u at 100 points; "
        f"1-{args.width}-{args.width}-1 tanh MLP; {args.inner_steps} inner step(s), initial "
        f"α {args.inner_lr:g}, meta-lr {args.meta_lr:g} (Adam), {args.meta_steps} meta-steps "
        f"× {args.episodes} episodes, validation on {args.val_episodes} tasks every "
        f"{args.val_every}.",
        "",
        "| method | seed | median query MSE | log10 MSE, mean ± std | diverged | best val "
        "(untrained) | at meta-step | meta-train (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        s = log_summary(r["mse"])
        lines.append(
            f"| {r['method']} | {r['seed']} | {fmt(s['median'])} | {s['mean_log10']:.2f} ± "
            f"{s['std_log10']:.2f} | {s['diverged']} | {fmt(r['best_val_loss'])} "
            f"({fmt(r['initial_val_loss'])}) | {r['best_meta_step']} | {r['seconds']:.0f} |"
        )
    s = log_summary(results["methods"][ADAM])
    lines += [
        f"| {ADAM} | – | {fmt(s['median'])} | {s['mean_log10']:.2f} ± {s['std_log10']:.2f} "
        f"| {s['diverged']} | – | – | – |",
        "",
        f"`{ADAM}`: {args.baseline_steps} steps, lr {results['baseline_lr']:g} (chosen on "
        f"validation from {', '.join(f'{lr:g}' for lr in args.baseline_lrs)}).",
        "",
        "Meta-SGD against scalar α on the same tasks: log10 (scalar MSE / Meta-SGD MSE) per "
        "task (positive: Meta-SGD fits better; 95% CI = mean ± 1.96 std/√n):",
        "",
        "| seed | mean | std | 95% CI | median | tasks |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in args.seeds:
        a = next(r["mse"] for r in results["runs"] if r["method"] == per and r["seed"] == seed)
        b = next(r["mse"] for r in results["runs"] if r["method"] == scalar and r["seed"] == seed)
        d = paired_log(a, b)
        lines.append(f"| {seed} | {d['mean']:+.2f} | {d['std']:.2f} | [{d['ci'][0]:+.2f}, "
                     f"{d['ci'][1]:+.2f}] | {d['median']:+.2f} | {d['n']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_section(path: Path, args, text: str) -> None:
    """Put ``text`` under this run's heading (its number of shots), keeping the others."""
    marker = "<!-- section: {} -->"
    old = path.read_text() if path.exists() else ""
    parts: dict[str, str] = {}
    for chunk in old.split("<!-- section: ")[1:]:
        key, _, body = chunk.partition(" -->")
        parts[key] = body.strip()
    parts[f"{args.k_shot}shot"] = f"## {args.k_shot}-shot\n\n{text.strip()}"
    intro = f"{DOCS_TITLE}\n\nWritten by `benchmarks/meta_sgd_pde.py --docs`, one section per number of shots.\n"  # noqa: E501
    body = [f"{marker.format(k)}\n{parts[k]}\n" for k in sorted(parts, key=lambda k: int(k[:-4]))]
    path.write_text("\n".join([intro, *body]))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k-shot", type=int, default=5, help="observations of u per task")
    parser.add_argument("--n-pde", type=int, default=32, help="collocation points per task")
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--meta-steps", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=8, help="train tasks per meta-step")
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=1e-3, help="initial α")
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--val-every", type=int, default=25)
    parser.add_argument("--val-episodes", type=int, default=50)
    parser.add_argument("--test-episodes", type=int, default=100)
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--baseline-steps", type=int, default=100)
    parser.add_argument("--baseline-lrs", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench_out/meta_sgd_pde")
    parser.add_argument("--docs", action="store_true", help="also write docs/meta_sgd_pde_table.md")
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny sizes, for tests")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.smoke:
        args.seeds, args.width, args.n_pde, args.meta_steps = [0], 8, 8, 3
        args.episodes, args.val_every, args.val_episodes, args.test_episodes = 2, 2, 2, 3
        args.baseline_steps, args.baseline_lrs = 3, [1e-3, 1e-2]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run(args)
    text = table(args, results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(text)
    if args.docs:
        write_section(ROOT / "docs" / "meta_sgd_pde_table.md", args, text)
    print(text)
    return results


if __name__ == "__main__":
    main()

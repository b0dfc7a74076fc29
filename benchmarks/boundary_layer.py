"""A boundary layer, −ε u'' + u' = 1 on [0, 1] with u(0) = u(1) = 0: what helps, what does not.

    python benchmarks/boundary_layer.py --seeds 0 1 2 --threads 1 --out OUT   # ~10 min
    python benchmarks/boundary_layer.py --variants gn gn-grid --out OUT
    python benchmarks/boundary_layer.py --smoke --out OUT                      # for the tests

The exact solution u = x − (e^{(x−1)/ε} − e^{−1/ε}) / (1 − e^{−1/ε}) follows the line
u = x and drops to 0 in a layer of width ~ε at x = 1. The problem is defined here in
Python (README, "Your own PDE in Python"). Each variant changes one or two things a
user would try against the baseline: ``gn``, ε = 0.01, a tanh MLP 32 wide and 2 deep,
200 uniform random interior points (``Box.interior``), float64, 1000 steps (see
``VARIANTS``). Points and initial weights are drawn from the seed.

rel_l2 is measured every ``--eval-every`` steps on 1001 equispaced points. At the end
the PDE residual is also measured away from the training points: its root mean square
on 10001 equispaced points (the "held-out residual", which needs no exact solution).

OUT receives ``boundary_layer.md`` (a table per run and a summary per variant) and
``boundary_layer.png`` (rel_l2 and loss against step, every run). Times are wall
times on this machine's load, evaluations included: on a shared CPU they are inflated.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import pinnopt as po  # noqa: E402

THRESHOLD = 1e-2  # a run has resolved the layer once rel_l2 is below this
EARLY_STEP = 50  # the table shows rel_l2 here, on the plateau of most runs
FIRST_STEP = 10  # ... and the loss from here to EARLY_STEP
HELD_OUT = 10001  # equispaced points of the held-out residual


def exact_solution(eps: float):
    """x ↦ x − (e^{(x−1)/ε} − e^{−1/ε}) / (1 − e^{−1/ε}) on (N, 1) points, shape (N,)."""

    def exact(x: Tensor) -> Tensor:
        x = x[:, 0]
        tail = math.exp(-1 / eps)
        return x - (torch.exp((x - 1) / eps) - tail) / (1 - tail)

    return exact


def interior_sampler(eps: float, grid: bool, layer_points: int):
    """n points in (0, 1): uniform random, or equispaced (the midpoints of n equal cells)
    with ``grid``; then ``layer_points`` more, uniform random in the layer [1 − 5ε, 1]."""

    def sample(n: int, g: torch.Generator) -> Tensor:
        if grid:
            x = (torch.arange(n, dtype=torch.float64)[:, None] + 0.5) / n
        else:
            x = torch.rand(n, 1, generator=g, dtype=torch.float64)
        layer = 1 - 5 * eps * torch.rand(layer_points, 1, generator=g, dtype=torch.float64)
        return torch.cat([x, layer])

    return sample


def boundary_layer(
    eps: float, n_pde: int = 200, grid: bool = False, layer_points: int = 0
) -> po.Problem:
    """−ε u'' + u' = 1 on [0, 1], u(0) = u(1) = 0; ``n_pde`` interior points (random or a
    grid) plus ``layer_points`` in the layer (:func:`interior_sampler`)."""
    box = po.Box([0.0], [1.0])
    terms = [
        po.Term("pde", interior_sampler(eps, grid, layer_points),
                lambda u, x: -eps * u.d2(0) + u.d(0) - 1.0, order=2, n=n_pde),
        po.Term("bc", box.boundary(), lambda u, x: u.u, order=0, n=2),
    ]  # fmt: skip
    return po.Problem(
        "boundary_layer", box, terms, exact_solution(eps), ("x",),
        f"-{eps} u'' + u' = 1 on [0,1], u(0)=u(1)=0",
    )  # fmt: skip


@dataclass
class Variant:
    """One configuration: the baseline with some fields changed."""

    name: str
    optimizer: str = "gn"
    eps: float = 0.01
    width: int = 32
    depth: int = 2
    n_pde: int = 200
    grid: bool = False
    layer_points: int = 0
    dtype: str = "float64"
    steps: int = 1000
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def points(self) -> str:
        text = f"{self.n_pde} {'grid' if self.grid else 'random'}"
        return text + (f" + {self.layer_points} in layer" if self.layer_points else "")


BASE = Variant("gn")
KFAC = replace(BASE, optimizer="kfac", steps=3000)
CHAIN = replace(BASE, optimizer="adam:1000,lbfgs", steps=5000)
VARIANTS = {
    "gn": BASE,
    "gn-eps0.1": replace(BASE, name="gn, ε = 0.1", eps=0.1),
    "gn-layer-points": replace(BASE, name="gn, +200 points in the layer", layer_points=200),
    "gn-1000-points": replace(BASE, name="gn, 1000 random points", n_pde=1000, steps=500),
    "gn-grid": replace(BASE, name="gn, 200 grid points", grid=True),
    "gn-wide": replace(BASE, name="gn, 64 wide", width=64),
    "gn-deep": replace(BASE, name="gn, 4 deep", depth=4),
    "gn-float32": replace(BASE, name="gn, float32", dtype="float32"),
    "kfac": replace(KFAC, name="kfac"),
    "kfac-grid": replace(KFAC, name="kfac, 200 grid points", grid=True),
    "kfac-grid-damping": replace(
        KFAC, name="kfac, grid, damping 0.1", grid=True, options={"kfac": {"damping": 0.1}}
    ),
    "adam-lbfgs": replace(CHAIN, name="adam:1000,lbfgs"),
    "adam-lbfgs-grid": replace(CHAIN, name="adam:1000,lbfgs, grid", grid=True),
}


def held_out_residual(problem: po.Problem, model: torch.nn.Module) -> float:
    """Root mean square of the PDE residual on HELD_OUT equispaced points of [0, 1]."""
    x = torch.linspace(0, 1, HELD_OUT, dtype=next(model.parameters()).dtype)[:, None]
    r = problem.term("pde").evaluate(model, x).detach()
    return float(r.double().pow(2).mean().sqrt())


def run_variant(v: Variant, seed: int, eval_every: int) -> dict[str, Any]:
    """Train one variant from ``seed``; its figures and its (step, rel_l2, loss) curve."""
    torch.manual_seed(seed)
    dtype = {"float64": torch.float64, "float32": torch.float32}[v.dtype]
    problem = boundary_layer(v.eps, v.n_pde, v.grid, v.layer_points)
    model = po.build_model("mlp", 1, [0.0], [1.0], width=v.width, depth=v.depth, seed=seed,
                           dtype=dtype)  # fmt: skip
    points = problem.sample(torch.Generator().manual_seed(seed))
    points = {k: x.to(dtype) for k, x in points.items()}
    settings = po.TrainerSettings(steps=v.steps, eval_every=eval_every, log_every=eval_every,
                                  quiet=True)  # fmt: skip
    evaluator = po.Evaluator(problem)
    chain = po.parse_chain(v.optimizer, v.options)
    trainer = po.Trainer(po.Objective(problem, model, points), chain, settings, evaluator)
    result = trainer.fit()
    curve = [(int(r["step"]), float(r["rel_l2"]), float(r["loss"]))
             for r in result.history if "rel_l2" in r]  # fmt: skip
    below = [s for s, e, _ in curve if e < THRESHOLD]
    early = [(s, e, loss) for s, e, loss in curve if s <= EARLY_STEP]
    first = [loss for s, _, loss in curve if s >= FIRST_STEP]
    return {
        "spec": v,
        "seed": seed,
        "early_rel_l2": early[-1][1],
        "early_loss": (first[0] if first else math.nan, early[-1][2]),
        "steps_to_threshold": below[0] if below else None,
        "rel_l2": result.rel_l2,
        "loss": result.final_loss,
        "held_out": held_out_residual(problem, model),
        "steps": result.steps,
        "status": result.status,
        "time": result.wall_time_s,
        "curve": curve,
        "solution": (evaluator.points[:, 0], evaluator.predict(model)),
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def table(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"−ε u'' + u' = 1 on [0, 1], u(0) = u(1) = 0; tanh MLP, rel_l2 every {args.eval_every} "
        f"steps on 1001 points, held-out residual on {HELD_OUT} points; produced by "
        f"`{command}` on {platform.machine()} with {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}.",
        "",
        f"Per variant over seeds {', '.join(map(str, args.seeds))}: resolved = final rel_l2 "
        f"< {THRESHOLD:g}; medians over all seeds, except the steps to rel_l2 < {THRESHOLD:g}: "
        "over the seeds that got there.",
        "",
        "| variant | ε | net | points | resolved | median final rel_l2 | median steps to "
        f"< {THRESHOLD:g} | median time (s) |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["spec"].name for r in rows):
        mine = [r for r in rows if r["spec"].name == name]
        v = mine[0]["spec"]
        hits = [r["steps_to_threshold"] for r in mine if r["steps_to_threshold"] is not None]
        resolved = sum(r["rel_l2"] < THRESHOLD for r in mine)
        median_hit = _median(hits)
        lines.append(
            f"| {name} | {v.eps:g} | {v.width}×{v.depth} {v.dtype} | {v.points()} | "
            f"{resolved}/{len(mine)} | {_median([r['rel_l2'] for r in mine]):.2e} | "
            f"{'—' if math.isnan(median_hit) else f'{median_hit:g}'} | "
            f"{_median([r['time'] for r in mine]):.1f} |"
        )
    lines += [
        "",
        "Every run:",
        "",
        f"| variant | seed | rel_l2 at step {EARLY_STEP} | loss at step {FIRST_STEP} → "
        f"{EARLY_STEP} | steps to < {THRESHOLD:g} | final rel_l2 | final loss | held-out "
        "residual | steps | status | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        hit = "never" if r["steps_to_threshold"] is None else str(r["steps_to_threshold"])
        lines.append(
            f"| {r['spec'].name} | {r['seed']} | {r['early_rel_l2']:.3g} | "
            f"{r['early_loss'][0]:.4g} → {r['early_loss'][1]:.4g} | {hit} | "
            f"{r['rel_l2']:.2e} | {r['loss']:.1e} | {r['held_out']:.1e} | {r['steps']} | "
            f"{r['status']} | {r['time']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """rel_l2 and loss against step (one colour per variant, every seed; line style by
    optimizer), and the final u of every run that did not resolve the layer."""
    names = list(dict.fromkeys(r["spec"].name for r in rows))
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(17, 5.2))
    labelled = set()
    for r in rows:
        v = r["spec"]
        style = {"gn": "-", "kfac": "--"}.get(v.optimizer, "-.")
        steps, errors, losses = zip(*r["curve"])
        label = None if v.name in labelled else v.name
        labelled.add(v.name)
        kw = dict(color=colours[v.name], ls=style, lw=1.2, alpha=0.85)
        a0.semilogy(steps, errors, label=label, **kw)
        a1.semilogy(steps, losses, **kw)
        if not r["rel_l2"] < THRESHOLD:
            x, u = r["solution"]
            a2.plot(x.numpy(), u.numpy(), **kw)
    eps = [r["spec"].eps for r in rows if not r["rel_l2"] < THRESHOLD] or [BASE.eps]
    x = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None]
    a2.plot(x[:, 0].numpy(), exact_solution(eps[0])(x).numpy(), "k", lw=2.5, alpha=0.6,
            label=f"exact, ε = {eps[0]:g}")  # fmt: skip
    a2.set_title(f"final u of the runs with rel_l2 ≥ {THRESHOLD:g}", fontsize=10)
    a2.set_xlabel("x")
    a0.axhline(THRESHOLD, color="grey", ls=":", lw=1)
    a0.set_ylabel("rel. L2 error")
    a1.set_ylabel("training loss ½‖r‖²")
    for ax in (a0, a1):
        ax.set_xscale("symlog", linthresh=100, linscale=1.5)
        ax.set_xlim(0, max(r["curve"][-1][0] for r in rows))
        ax.set_xlabel("step (linear to 100, log beyond)")
    for ax in (a0, a1, a2):
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=8, loc="lower center", ncol=5)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--out", type=Path, required=True, help="folder for the table and plot")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/boundary_layer.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    rows = []
    for name in args.variants:
        spec = VARIANTS[name]
        if args.smoke:
            spec = replace(spec, steps=6, width=6, depth=1, n_pde=20,
                           layer_points=min(spec.layer_points, 10),
                           optimizer=spec.optimizer.replace("adam:1000", "adam:3"))  # fmt: skip
        for seed in args.seeds:
            row = run_variant(spec, seed, args.eval_every)
            rows.append(row)
            print(f"{spec.name}, seed {seed}: rel_l2 {row['rel_l2']:.3e} after {row['steps']} "
                  f"steps ({row['status']}) in {row['time']:.1f} s; below {THRESHOLD:g} at "
                  f"step {row['steps_to_threshold']}", flush=True)  # fmt: skip
    text = table(rows, args, command.strip())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "boundary_layer.md").write_text(text)
    plot(rows, args.out / "boundary_layer.png")
    return rows


if __name__ == "__main__":
    main()

"""The hard problems with their recipes, against the baselines, with ablations.

    python benchmarks/hard_problems.py --jobs 2 --ablations --out docs/hard_problems_table.md
    python benchmarks/hard_problems.py --problems burgers1d --seeds 0 1 2 --cap 600

Each problem runs its recipe (``pinnopt.recipes``: what ``pinnopt solve PROBLEM`` does
with no flags) and the baselines ``adam:2000,lbfgs`` and plain ``gn`` (library defaults:
a tanh MLP of width 32 and depth 2, the problem's default points) for the same wall
time: the recipe's time limit (times its time windows when it marches), capped at
``--cap`` seconds. With ``--ablations`` the recipe also runs with each of its pieces
switched back to the default, one at a time (sampling → fixed, weighting → fixed,
causal → no causal weights and no time marching, optimizer → adam:1000,lbfgs), so the
table says which piece mattered. Every run is float64 with one torch thread;
``--jobs N`` runs N at a time, each in its own process (the wall times are then of N
runs sharing the machine). The table gives the median rel_l2 over ``--seeds`` (and the
spread) against the target of issue 16; the plot, rel_l2 against wall time for the
median seed of each variant.
"""

from __future__ import annotations

import argparse
import copy
import csv
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from pinnopt.bench.cells import run_cells
from pinnopt.config import make_config
from pinnopt.recipes import recipe_for
from pinnopt.solve import solve

# target of the recipe's median rel_l2 (per component for a system)
TARGETS = {
    "burgers1d": 1e-5,
    "wave1d": 1e-5,
    "helmholtz2d": 1e-6,
    "allen_cahn1d": 1e-4,
    "convection1d": 1e-4,
    "navier_stokes2d": 1e-5,
    "poisson2d": 1e-9,
}
BASELINES = ["adam:2000,lbfgs", "gn"]
# the piece an ablation switches back to the default: (section, key, default value)
PIECES = {
    "sampling": ("sampling", "method", "fixed"),
    "weighting": ("weighting", "method", "fixed"),
    "causal": ("causal", "method", "none"),
    "optimizer": ("optim", "optimizer", "adam:1000,lbfgs"),
}


def windows(config: dict) -> int:
    """Time windows of a config (each gets the whole time limit when marching)."""
    return int(config.get("causal", {}).get("windows", 1))


def budget(problem: str, cap: float) -> float:
    """Seconds a run of ``problem`` gets: its recipe's time limit (times its time windows),
    at most ``cap``."""
    recipe = recipe_for(problem)
    if recipe is None:
        return cap
    limit = recipe.config.get("training", {}).get("time_limit", cap) * windows(recipe.config)
    return min(float(limit), cap)


def variants(problem: str, ablations: bool) -> list[str]:
    """``recipe``, the baselines and (with ``ablations``) ``no <piece>`` for each piece the
    recipe uses."""
    out = ["recipe", *BASELINES]
    recipe = recipe_for(problem)
    if ablations and recipe is not None:
        for piece, (section, key, default) in PIECES.items():
            value = recipe.config.get(section, {}).get(key, default)
            marching = piece == "causal" and windows(recipe.config) > 1
            # a recipe that is an optimizer alone has the adam baseline as its ablation
            alone = piece == "optimizer" and set(recipe.config) <= {"optim", "training"}
            if (value != default or marching) and not alone:
                out.append(f"no {piece}")
    return out


def variant_config(problem: str, variant: str, cap: float, steps: int | None) -> dict:
    """The config (nested dicts) of one variant, without seed and output."""
    seconds = budget(problem, cap)
    if variant == "recipe":
        data = {"problem": {"name": problem, "recipe": True}}
    elif variant in BASELINES:
        data = {"problem": {"name": problem}, "optim": {"optimizer": variant}}
    else:
        data = copy.deepcopy(recipe_for(problem).config)
        section, key, default = PIECES[variant.removeprefix("no ")]
        data[section] = {key: default} if key == "method" else {**data[section], key: default}
        data.setdefault("problem", {})["name"] = problem
    training = data.setdefault("training", {})
    n = windows(recipe_for(problem).config) if variant == "recipe" else windows(data)
    training.update(time_limit=seconds / n, steps=steps or training.get("steps", 100_000))
    return data


def run_one(problem: str, variant: str, seed: int, cap: float, steps: int | None) -> dict:
    """One solve in a temporary run directory: its metrics and its (time, rel_l2) history."""
    data = variant_config(problem, variant, cap, steps)
    data["training"].update(seed=seed, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        data["output"] = {"out": str(Path(tmp) / "run"), "quiet": True}
        m = solve(make_config(data))
        with open(Path(tmp) / "run" / "history.csv") as f:
            curve = [(float(r["time"]), float(r["rel_l2"])) for r in csv.DictReader(f)
                     if r.get("rel_l2")]  # fmt: skip
    m.update(variant=variant, seed=seed, curve=curve, error=worst_error(m))
    print(f"{problem:16s} {variant:18s} seed {seed}  rel_l2 {m['error']:.3e}  "
          f"{m['steps']} steps  {m['wall_time_s']:.0f} s  {m['status']}", flush=True)  # fmt: skip
    return m


def worst_error(m: dict) -> float:
    """rel_l2, or for a system the largest per-component rel_l2 (the target is per component)."""
    parts = [v for k, v in m.items() if k.startswith("rel_l2_")]
    return max(parts) if parts else m["rel_l2"]


def summary(rows: list[dict]) -> list[dict]:
    """Per (problem, variant): median, min and max error over seeds, and the median seed's run."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for m in rows:
        groups.setdefault((m["problem"], m["variant"]), []).append(m)
    out = []
    for (problem, variant), runs in groups.items():
        runs = sorted(runs, key=lambda m: m["error"])
        median = statistics.median(m["error"] for m in runs)
        out.append({
            "problem": problem, "variant": variant, "median": median, "min": runs[0]["error"],
            "max": runs[-1]["error"], "seeds": len(runs), "run": runs[(len(runs) - 1) // 2],
        })  # fmt: skip
    return out


def table(groups: list[dict], command: str, cap: float) -> str:
    lines = [
        f"Produced by `{command}` on {platform.machine()}, torch {torch.__version__}, "
        f"float64, one torch thread per run; each run gets its recipe's time limit, "
        f"at most {cap:g} s.",
        "",
        "| problem | variant | optimizer | seeds | median rel_l2 | min | max | target "
        "| steps | wall time (s) |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for g in groups:
        target = TARGETS.get(g["problem"])
        mark = ""
        if g["variant"] == "recipe" and target is not None:
            mark = f"≤ {target:.0e}: {'met' if g['median'] <= target else 'missed'}"
        m = g["run"]
        lines.append(
            f"| {g['problem']} | {g['variant']} | {m['optimizer']} | {g['seeds']} | "
            f"{g['median']:.2e} | {g['min']:.2e} | {g['max']:.2e} | {mark} | {m['steps']} | "
            f"{m['wall_time_s']:.0f} |"
        )
    lines += ["", "For a system, rel_l2 is the largest of its components' relative errors."]
    return "\n".join(lines) + "\n"


def plot(groups: list[dict], path: Path) -> None:
    """rel_l2 against wall time, one panel per problem, the median seed of each variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(g["problem"] for g in groups))
    cols = min(3, len(problems))
    rows = -(-len(problems) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, problem in zip(axes.flat, problems):
        for g in groups:
            if g["problem"] == problem and g["run"]["curve"]:
                t, e = zip(*g["run"]["curve"])
                ax.semilogy(t, e, label=g["variant"], lw=2 if g["variant"] == "recipe" else 1)
        if problem in TARGETS:
            ax.axhline(TARGETS[problem], color="k", ls=":", lw=1)
        ax.set_title(problem)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("rel_l2")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(problems) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=list(TARGETS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--baseline-seeds", nargs="*", type=int, help="[--seeds]")
    parser.add_argument("--variants", nargs="*", help="only these (recipe, a baseline, 'no X')")
    parser.add_argument("--ablations", action="store_true", help="switch each piece off in turn")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--steps", type=int, help="steps per run (default: the recipe's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the markdown table here (+ .png)")
    args = parser.parse_args(argv)
    command = "python benchmarks/hard_problems.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    cells = []
    for problem in args.problems:
        for variant in variants(problem, args.ablations):
            if args.variants and variant not in args.variants:
                continue
            seeds = args.seeds if variant == "recipe" else (args.baseline_seeds or args.seeds)
            cells += [(problem, variant, seed, args.cap, args.steps) for seed in seeds]
    rows = run_cells(run_one, cells, args.jobs)
    groups = summary(rows)
    text = table(groups, command.strip(), args.cap)
    print(text)
    if args.out:
        args.out.write_text(text)
        plot(groups, args.out.with_suffix(".png"))
    return rows


if __name__ == "__main__":
    main()

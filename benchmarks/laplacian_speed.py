"""Seconds per optimizer step of LAdam, LAdaGrad, LRMSProp relative to torch's foreach Adam.

    python benchmarks/laplacian_speed.py --threads 1                # both models, float32
    python benchmarks/laplacian_speed.py --out docs/laplacian_speed_table.md
    python benchmarks/laplacian_speed.py --smoke                    # tiny, for the test suite

Models: ``5x128`` is a 2-128-128-128-128-128-1 tanh MLP (66 561 parameters, the
PINN of the wave study) and ``10M`` a 64-1024×10-1 tanh MLP (9 513 985 parameters).
Only ``optimizer.step()`` is timed, with fixed random gradients; the baseline is
``torch.optim.Adam(foreach=True)``. ``-fused`` variants pass ``fused=True`` (the
update compiled by torch.compile); their compilation happens in the untimed first
step, whose seconds the table also shows. After ``--warmup`` untimed steps every
optimizer takes ``--steps`` steps in each of ``--rounds`` rounds, the optimizers
interleaved so that drift in the machine's speed hits all of them alike; a cell is
the median over rounds of the mean seconds per step. All smoothed optimizers use
c2 = 1e-5 and the defaults (9-point stencil, LAdam's ``variance_lap``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from pinnopt.optim.laplacian_smoothed import LAdaGrad, LAdam, LRMSProp

MODELS = {"5x128": [2] + [128] * 5 + [1], "10M": [64] + [1024] * 10 + [1]}
SMOKE_MODELS = {"tiny": [2, 8, 8, 1]}
OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, foreach=True),
    "ladam": lambda ps: LAdam(ps, c2=1e-5),
    "ladam-fused": lambda ps: LAdam(ps, c2=1e-5, fused=True),
    "ladagrad": lambda ps: LAdaGrad(ps, c2=1e-5),
    "ladagrad-fused": lambda ps: LAdaGrad(ps, c2=1e-5, fused=True),
    "lrmsprop": lambda ps: LRMSProp(ps, c2=1e-5),
    "lrmsprop-fused": lambda ps: LRMSProp(ps, c2=1e-5, fused=True),
}
BASELINE = "adam"


def mlp(sizes: list[int], dtype: torch.dtype) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def time_model(sizes, names, dtype, warmup, steps, rounds) -> dict[str, dict]:
    """{optimizer: {"seconds": per step, "first": seconds of the first step}}."""
    torch.manual_seed(0)
    template = mlp(sizes, dtype)
    grads = [torch.randn_like(p) * 1e-2 for p in template.parameters()]
    opts, first = {}, {}
    for name in names:
        params = [p.detach().clone().requires_grad_(True) for p in template.parameters()]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opts[name] = OPTIMIZERS[name](params)
        t0 = time.perf_counter()
        opts[name].step()
        first[name] = time.perf_counter() - t0
        for _ in range(warmup):
            opts[name].step()
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            per_round[name].append((time.perf_counter() - t0) / steps)
    return {n: {"seconds": statistics.median(per_round[n]), "first": first[n]} for n in names}


def steps_per_round(sizes: list[int], args) -> int:
    return args.steps or (200 if sum(sizes) < 10_000 else 20)


def table(results: dict[str, dict], models: dict, args, command: str) -> str:
    lines = [
        f"`{command}`: {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, {args.dtype}; a cell is the median over "
        f"{args.rounds} rounds of the mean over a round's steps "
        f"({', '.join(f'{m}: {steps_per_round(s, args)}' for m, s in models.items())}).",
        "",
        "| model | params | optimizer | ms / step | × Adam (foreach) | first step (s) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for model, rows in results.items():
        n_params = sum(a * b + b for a, b in zip(models[model][:-1], models[model][1:]))
        base = rows[BASELINE]["seconds"]
        for name, r in rows.items():
            lines.append(
                f"| {model} | {n_params} | {name} | {r['seconds'] * 1e3:.3f} | "
                f"{r['seconds'] / base:.2f} | {r['first']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="per round (default by model)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="a 2-8-8-1 MLP, a few steps")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [BASELINE] + [n for n in args.optimizers if n != BASELINE]
    models = {m: MODELS[m] for m in args.models}
    if args.smoke:
        models, args.warmup, args.rounds, args.steps = SMOKE_MODELS, 1, 2, 2
    dtype = getattr(torch, args.dtype)
    results = {}
    for model, sizes in models.items():
        steps = steps_per_round(sizes, args)
        results[model] = time_model(sizes, names, dtype, args.warmup, steps, args.rounds)
        for name, r in results[model].items():
            print(f"{model:6s} {name:15s} {r['seconds'] * 1e3:9.3f} ms/step", flush=True)
    command = "python benchmarks/laplacian_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = table(results, models, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return results


if __name__ == "__main__":
    main()

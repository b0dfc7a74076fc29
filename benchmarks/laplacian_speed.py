"""Seconds per optimizer step of LAdam, LAdaGrad, LRMSProp relative to torch's Adam.

    python benchmarks/laplacian_speed.py --threads 1                # both models, float32
    python benchmarks/laplacian_speed.py --threads 1 --out docs/laplacian_speed_table.md
    python benchmarks/laplacian_speed.py --smoke                    # tiny, for the test suite

Models: ``5x128`` is a 2-128-128-128-128-128-1 tanh MLP (66 561 parameters, the
PINN of the wave study) and ``10M`` a 64-1024×10-1 tanh MLP (9 513 985 parameters).
Only ``optimizer.step()`` is timed, with fixed random gradients. The baselines are
torch's ``Adam(foreach=True)`` (``adam``) and ``Adam(fused=True)`` (``adam-fused``);
the table has a ratio column for each.
``ladam``, ``ladagrad``, ``lrmsprop`` are our optimizers with their defaults, which
compile the update with torch.compile (``fused``, automatic; a child process stops
with an error if it fell back to the eager update); ``-eager`` rows pass
``fused=False``. The compilation happens in the untimed first step, whose seconds the
table also shows. All smoothed optimizers use c2 = 1e-5 and the defaults (9-point
stencil, LAdam's ``variance_lap``).

Every measurement runs in a fresh Python process, because the C allocator's state
decides much of a large model's step time: glibc hands large freed blocks back to
the OS, and a step whose temporaries must be page-faulted in again every time costs
up to twice as much (torch's foreach Adam itself does, on the 10M model). Where one
process ran several optimizers, each inherited the allocator state the others left.
So the table has two allocator settings: ``default`` (glibc as shipped) and
``no-trim`` (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set so that
freed memory stays in the process, as jemalloc or tcmalloc would keep it), and a
column with the page faults per step. Each process takes ``--warmup`` untimed steps,
then ``--steps`` timed ones; ``--rounds`` rounds run the processes interleaved so
that drift in the machine's speed hits all optimizers alike, and a cell is the
median over rounds of the mean seconds per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from pinnopt.optim.laplacian_smoothed import FusedFallbackWarning, LAdaGrad, LAdam, LRMSProp

MODELS = {"5x128": [2] + [128] * 5 + [1], "10M": [64] + [1024] * 10 + [1]}
SMOKE_MODELS = {"tiny": [2, 8, 8, 1]}
OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, foreach=True),
    "adam-fused": lambda ps: torch.optim.Adam(ps, fused=True),
    "ladam": lambda ps: LAdam(ps, c2=1e-5),
    "ladam-eager": lambda ps: LAdam(ps, c2=1e-5, fused=False),
    "ladagrad": lambda ps: LAdaGrad(ps, c2=1e-5),
    "ladagrad-eager": lambda ps: LAdaGrad(ps, c2=1e-5, fused=False),
    "lrmsprop": lambda ps: LRMSProp(ps, c2=1e-5),
    "lrmsprop-eager": lambda ps: LRMSProp(ps, c2=1e-5, fused=False),
}
BASELINE = "adam"
FUSED_BASELINE = "adam-fused"  # its column reads "–" where it was not measured
ALLOCATORS = {
    "default": {},
    "no-trim": {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36)},
}


def mlp(sizes: list[int], dtype: torch.dtype) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def page_faults() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(sizes: list[int], name: str, dtype: torch.dtype, warmup: int, steps: int) -> dict:
    """One optimizer on one model, in this process: {"seconds": per step, "first": seconds of
    the first step, "faults": minor page faults per timed step}."""
    torch.manual_seed(0)
    params = list(mlp(sizes, dtype).parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    opt = OPTIMIZERS[name](params)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # a default row that fell back to the eager update would be mislabelled
        warnings.simplefilter("error", FusedFallbackWarning)
        opt.step()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        opt.step()
    faults = page_faults()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    seconds = (time.perf_counter() - t0) / steps
    return {"seconds": seconds, "first": first, "faults": (page_faults() - faults) / steps}


def measure_in_fresh_process(model: str, name: str, allocator: str, args) -> dict:
    command = [sys.executable, __file__, "--child", model, name, "--dtype", args.dtype,
               "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--steps", str(steps_per_round(args.models[model], args))]  # fmt: skip
    env = {**os.environ, **ALLOCATORS[allocator]}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{model} {name} ({allocator}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steps_per_round(sizes: list[int], args) -> int:
    return args.steps or (200 if sum(sizes) < 10_000 else 20)


def table(results: dict, args, command: str) -> str:
    lines = [
        f"`{command}`: {platform.machine()}, {args.threads or 'default'} torch thread(s), "
        f"torch {torch.__version__}, {args.dtype}; each cell is measured in fresh processes, "
        f"the median over {args.rounds} rounds of the mean over a process's timed steps "
        f"({', '.join(f'{m}: {steps_per_round(s, args)}' for m, s in args.models.items())}). "
        "`adam`: torch.optim.Adam(foreach=True); `adam-fused`: torch.optim.Adam(fused=True); "
        "`ladam`, `ladagrad`, `lrmsprop`: the defaults (fused: the update compiled by "
        "torch.compile); `-eager`: fused=False.",
        "",
        "| model | params | allocator | optimizer | ms / step | × Adam (foreach) "
        "| × Adam (fused) | page faults / step | first step (s) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for (model, allocator), rows in results.items():
        sizes = args.models[model]
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        base = rows[BASELINE]["seconds"]
        fused = rows[FUSED_BASELINE]["seconds"] if FUSED_BASELINE in rows else None
        for name, r in rows.items():
            x_fused = "–" if fused is None else f"{r['seconds'] / fused:.2f}"
            lines.append(
                f"| {model} | {n_params} | {allocator} | {name} | {r['seconds'] * 1e3:.3f} | "
                f"{r['seconds'] / base:.2f} | {x_fused} | {r['faults']:.0f} | {r['first']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, dict]]:
    """{(model, allocator): {optimizer: {"seconds", "first", "faults"}}}, baselines first."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)
    )
    parser.add_argument(
        "--allocators", nargs="+", choices=list(ALLOCATORS), default=list(ALLOCATORS)
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="per process (default by model)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="a 2-8-8-1 MLP, a few steps")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.child:
        model, name = args.child
        sizes = {**MODELS, **SMOKE_MODELS}[model]
        print(json.dumps(measure(sizes, name, dtype, args.warmup, args.steps)))
        return {}
    baselines = [BASELINE] + [FUSED_BASELINE] * (FUSED_BASELINE in args.optimizers)
    names = baselines + [n for n in args.optimizers if n not in baselines]
    args.models = {m: MODELS[m] for m in args.models}
    if args.smoke:
        args.models, args.warmup, args.rounds, args.steps = SMOKE_MODELS, 1, 1, 2
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for model in args.models:
            for allocator in args.allocators:
                for name in names:
                    r = measure_in_fresh_process(model, name, allocator, args)
                    runs.setdefault((model, allocator, name), []).append(r)
                    print(f"{model:6s} {allocator:8s} {name:15s} {r['seconds'] * 1e3:9.3f} "
                          f"ms/step {r['faults']:8.0f} faults/step", flush=True)  # fmt: skip
    results: dict[tuple[str, str], dict[str, dict]] = {}
    for (model, allocator, name), rs in runs.items():
        results.setdefault((model, allocator), {})[name] = {
            key: statistics.median(r[key] for r in rs) for key in ("seconds", "first", "faults")
        }
    command = "python benchmarks/laplacian_speed.py " + " ".join(argv)
    text = table(results, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return results


if __name__ == "__main__":
    main()

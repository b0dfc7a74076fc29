"""Optimizer state per parameter and seconds per step of the learned optimizers on a
10M-parameter model, relative to torch's foreach Adam.

    python benchmarks/learned_memory.py --threads 1
    python benchmarks/learned_memory.py --threads 1 --out docs/learned_memory_table.md
    python benchmarks/learned_memory.py --smoke                    # tiny, for the test suite

The model is a 64-1024×10-1 tanh MLP in float32 (9 513 985 parameters in 22 tensors).
``l2o`` and ``lstm`` are ``pinnopt.learned.LearnedOptimizer`` running an untrained rule
(``MetaOptimizer(...).save``, default config but ``dtype="float32"``; a step costs the
same trained or not), saved once to a temporary folder; ``lstm`` runs with the default
``chunk_size`` unless ``--chunk-size`` says otherwise. ``l2o-f64`` (not run by default)
is the same ``l2o`` rule in float64, the config's default dtype, on the float32 model.
The baseline is ``torch.optim.Adam(foreach=True)``.

Each optimizer runs in a fresh Python process (allocator state and peak memory are its
own). Gradients are fixed random tensors (randn · 1e-2); only ``optimizer.step()`` is
timed: ``--warmup`` untimed steps after the first, then the timed steps; ``--rounds``
rounds run the processes interleaved, and a cell is the median over rounds of the mean
seconds per step.

State is measured, not derived: the bytes of every tensor in ``optimizer.state``
(``numel · element_size``, all values, recursively), divided by the number of
parameters; floats = bytes / 4. It splits into per-coordinate state (a state key whose
tensors have the same numel ratio to their parameter for every parameter, e.g. m, v;
``ratio · element_size`` bytes per parameter) and per-tensor state (the rest: step
counters, ``l2o``'s per-tensor LSTM). Peak memory is the process's ``ru_maxrss`` at the
end and its rise from just before the optimizer was built (model and gradients exist
then), which covers construction, state and the steps' temporaries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from pinnopt.learned import LearnedOptimizer, MetaOptimizer, MetaOptimizerConfig
from pinnopt.learned.learned_optimizer import LSTM_CHUNK

MODELS = {"10M": [64] + [1024] * 10 + [1]}
SMOKE_MODELS = {"tiny": [2, 8, 8, 1]}
RULES = {"l2o": ("l2o", "float32"), "lstm": ("lstm", "float32"), "l2o-f64": ("l2o", "float64")}
OPTIMIZERS = ["adam", "l2o", "lstm", "l2o-f64"]
DEFAULT = ["adam", "l2o", "lstm"]
BASELINE = "adam"
STEPS = {"adam": 20, "l2o": 10, "l2o-f64": 5, "lstm": 3}  # timed steps per process


def mlp(sizes: list[int], dtype: torch.dtype = torch.float32) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def save_rule(name: str, folder: Path) -> Path:
    """An untrained rule for ``name`` (see RULES), saved as LearnedOptimizer loads it."""
    method, dtype = RULES[name]
    path = folder / f"{name}.pt"
    config = MetaOptimizerConfig(method=method, dtype=dtype)
    MetaOptimizer(mlp(SMOKE_MODELS["tiny"], getattr(torch, dtype)), config).save(path)
    return path


def tensors(value) -> list[Tensor]:
    """Every tensor in a state value (tensors, dicts, lists, tuples), recursively."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for v in value for t in tensors(v)]
    return []


def state_size(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> dict:
    """{"bytes": of all tensors in optimizer.state, "per_coordinate": bytes per parameter
    of the keys whose numel is a fixed multiple of their parameter's, "per_tensor": bytes
    of the other keys, "keys": {key: "coordinate" | "tensor"}}. Needs parameters of at
    least two sizes (else a per-tensor key cannot be told from a per-coordinate one)."""
    if len({p.numel() for p in params}) < 2:
        raise ValueError("Invalid params: need parameters of at least two sizes")
    numel: dict[str, list[tuple[int, int, int]]] = {}  # key: [(numel(p), numel, bytes)]
    total = 0
    for p in params:
        for key, value in optimizer.state[p].items():
            ts = tensors(value)
            n, b = sum(t.numel() for t in ts), sum(t.numel() * t.element_size() for t in ts)
            numel.setdefault(key, []).append((p.numel(), n, b))
            total += b
    per_coordinate, per_tensor, kinds = 0.0, 0, {}
    for key, rows in numel.items():
        ratios = {n / n_p for n_p, n, _ in rows if n_p}
        covered = len(rows) == len(params)
        if covered and len(ratios) == 1 and ratios != {0.0}:
            per_coordinate += sum(b for _, _, b in rows) / sum(n_p for n_p, _, _ in rows)
            kinds[key] = "coordinate"
        else:
            per_tensor += sum(b for _, _, b in rows)
            kinds[key] = "tensor"
    return {"bytes": total, "per_coordinate": per_coordinate, "per_tensor": per_tensor,
            "keys": kinds}  # fmt: skip


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(name: str, params: list[Tensor], rule: Path | None, chunk_size: int | None):
    if name == BASELINE:
        return torch.optim.Adam(params, foreach=True)
    return LearnedOptimizer(params, rule, chunk_size=chunk_size)


def measure(
    sizes: list[int],
    name: str,
    rule: Path | None,
    warmup: int,
    steps: int,
    chunk_size: int | None = None,
) -> dict:
    """One optimizer on one float32 model, in this process: {"seconds": per timed step,
    "first": seconds of the first step, "params", "state": :func:`state_size`,
    "rss_mib": peak RSS, "rss_rise_mib": its rise from just before the optimizer}."""
    torch.manual_seed(0)
    params = list(mlp(sizes).parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    before = max_rss_mib()
    opt = build(name, params, rule, chunk_size)
    t0 = time.perf_counter()
    opt.step()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    seconds = (time.perf_counter() - t0) / steps
    if not all(torch.isfinite(p).all() for p in params):
        raise RuntimeError(f"{name}: the parameters are no longer finite")
    peak = max_rss_mib()
    return {"seconds": seconds, "first": first, "params": sum(p.numel() for p in params),
            "state": state_size(opt, params), "rss_mib": peak,
            "rss_rise_mib": peak - before}  # fmt: skip


def measure_in_fresh_process(model: str, name: str, rules: dict, args) -> dict:
    command = [sys.executable, __file__, "--child", model, name, "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--steps", str(steps_for(name, args))]  # fmt: skip
    if name in rules:
        command += ["--rule", str(rules[name])]
    if args.chunk_size:
        command += ["--chunk-size", str(args.chunk_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ)
    if done.returncode != 0:
        raise RuntimeError(f"{model} {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steps_for(name: str, args) -> int:
    return args.steps or STEPS[name]


def table(results: dict, args, command: str) -> str:
    (model,) = args.models
    chunk = args.chunk_size or f"{LSTM_CHUNK} (the default)"
    lines = [
        f"`{command}`: {platform.machine()}, {args.threads or 'default'} torch thread(s), "
        f"torch {torch.__version__}, float32 model {model}; each optimizer in fresh "
        f"processes, a time is the median over {args.rounds} rounds of the mean over a "
        f"process's timed steps ({', '.join(f'{n}: {steps_for(n, args)}' for n in results)}, "
        f"after {args.warmup} + 1 untimed); lstm chunk_size {chunk}; load average "
        f"{args.load[0]:.1f} at the start, {args.load[1]:.1f} at the end. floats = bytes / 4.",
        "",
        "| optimizer | params | state bytes / param | state floats / param "
        "| per-coordinate floats / param | per-tensor state (bytes) | state MiB | ms / step "
        "| × Adam (foreach) | first step (s) | peak RSS (MiB) | RSS rise (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = results[BASELINE]["seconds"]
    for name, r in results.items():
        s, n = r["state"], r["params"]
        lines.append(
            f"| {name} | {n} | {s['bytes'] / n:.4f} | {s['bytes'] / n / 4:.4f} "
            f"| {s['per_coordinate'] / 4:g} | {s['per_tensor']} | {s['bytes'] / 2**20:.1f} "
            f"| {r['seconds'] * 1e3:.1f} | {r['seconds'] / base:.2f} | {r['first']:.2f} "
            f"| {r['rss_mib']:.0f} | {r['rss_rise_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """{optimizer: {"seconds", "first", "params", "state", "rss_mib", "rss_rise_mib"}},
    baseline first; times are medians over rounds, the rest from the last round."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=DEFAULT)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=None, help="per process (default: by optimizer)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=None, help="lstm's (default: automatic)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--smoke", action="store_true", help="a 2-8-8-1 MLP, a few steps")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "OPTIMIZER"), help=argparse.SUPPRESS)
    parser.add_argument("--rule", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:  # tiny tensors gain nothing from threads (and lose on a busy machine)
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.chunk_size is not None and args.chunk_size < 1:
        parser.error(f"Invalid --chunk-size: {args.chunk_size} (need an integer >= 1)")
    if args.child:
        model, name = args.child
        sizes = {**MODELS, **SMOKE_MODELS}[model]
        r = measure(sizes, name, args.rule, args.warmup, args.steps, args.chunk_size)
        print(json.dumps(r))
        return {}
    names = [BASELINE] + [n for n in args.optimizers if n != BASELINE]
    args.models = MODELS
    if args.smoke:
        args.models, args.warmup, args.rounds, args.steps = SMOKE_MODELS, 1, 1, 2
    (model,) = args.models
    runs: dict[str, list[dict]] = {}
    start_load = os.getloadavg()[0]  # other work on the machine shows in the times
    with tempfile.TemporaryDirectory() as folder:
        rules = {n: save_rule(n, Path(folder)) for n in names if n in RULES}
        for _ in range(args.rounds):
            for name in names:
                r = measure_in_fresh_process(model, name, rules, args)
                runs.setdefault(name, []).append(r)
                print(f"{model:5s} {name:8s} {r['seconds'] * 1e3:10.2f} ms/step "
                      f"{r['rss_mib']:8.0f} MiB peak RSS", flush=True)  # fmt: skip
    results = {}
    for name, rs in runs.items():
        results[name] = {**rs[-1], "seconds": statistics.median(r["seconds"] for r in rs),
                         "first": statistics.median(r["first"] for r in rs)}  # fmt: skip
    args.load = (start_load, os.getloadavg()[0])
    command = "python benchmarks/learned_memory.py " + " ".join(argv)
    text = table(results, args, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    return results


if __name__ == "__main__":
    main()

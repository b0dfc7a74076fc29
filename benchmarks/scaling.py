"""Step time against process count: one solve on 1 and 2 processes (torchrun, gloo, CPU).

    python benchmarks/scaling.py --out bench_out/scaling
    python benchmarks/scaling.py --smoke --out /tmp/scaling_smoke   # for the tests

Each cell is ``pinnopt solve poisson2d --nproc K --threads 1`` in fresh processes, from a
config with ``--points`` collocation points (and a tenth as many on the boundary) and a
tanh MLP of ``--width`` × 2: the points are sharded over the K processes, so a step's
compute falls as 1/K while its communication (an all-reduce of the gradient, of JᵀJ for
``gn``) does not. Seconds per step are the run's own training time (metrics.json
``wall_time_s``, start-up and rendezvous excluded) over its steps. Outputs in ``--out``:
``results.md`` (the table, with this command and the machine) and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

# optimizer -> (chain, gn options, steps)
OPTIMIZERS = {
    "adam": ("adam", {}, 200),
    "lbfgs": ("lbfgs", {}, 50),
    "kfac": ("kfac", {}, 50),
    "gn (chunked)": ("gn", {"solver": "chunked"}, 5),
    "gn (cg)": ("gn", {"solver": "cg"}, 5),
}


def write_config(path: Path, chain: str, options: dict, args) -> None:
    lines = [
        "[problem]", 'name = "poisson2d"', "recipe = false",
        "[problem.points]", f"pde = {args.points}", f"bc = {max(args.points // 10, 2)}",
        "[model]", f"width = {args.width}", "depth = 2",
        "[optim]", f'optimizer = "{chain}"',
    ]  # fmt: skip
    if options:
        lines += ["[optim.options.gn]"] + [f'{k} = "{v}"' for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n")


def cell(args, name: str, nproc: int) -> dict:
    chain, options, steps = OPTIMIZERS[name]
    steps = args.steps or steps
    slug = name.replace(" (", "-").rstrip(")")  # "gn (cg)" -> "gn-cg"
    folder = Path(args.out) / "runs" / f"{slug}-{nproc}"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config_in.toml"
    write_config(config, chain, options, args)
    run = folder / "run"
    command = [sys.executable, "-m", "pinnopt", "solve", "--config", str(config), "--steps",
               str(steps), "--threads", "1", "--quiet", "--overwrite", "--out", str(run),
               "--nproc", str(nproc)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    metrics = json.loads((run / "metrics.json").read_text())
    row = {"optimizer": name, "processes": nproc, "steps": metrics["steps"],
           "seconds": metrics["wall_time_s"], "final_loss": metrics["final_loss"]}  # fmt: skip
    row["seconds_per_step"] = row["seconds"] / max(row["steps"], 1)
    print(row, flush=True)
    return row


def report(args, rows: list[dict]) -> str:
    lines = [
        f"Command: `python benchmarks/scaling.py {' '.join(args.argv)}`; {os.cpu_count()} cores "
        f"({platform.machine()}), torch {torch.__version__}, gloo, 1 thread per process; "
        f"poisson2d, {args.points} + {max(args.points // 10, 2)} points, MLP "
        f"{args.width}×2, float64.",
        "",
        "| optimizer | processes | steps | seconds per step | speed-up | final loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = {r["optimizer"]: r["seconds_per_step"] for r in rows if r["processes"] == 1}
    for r in rows:
        one = base.get(r["optimizer"])
        speedup = f"{one / r['seconds_per_step']:.2f}" if one else "–"
        lines.append(
            f"| {r['optimizer']} | {r['processes']} | {r['steps']} | "
            f"{r['seconds_per_step']:.4f} | {speedup} | {r['final_loss']:.3e} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS),
                        default=list(OPTIMIZERS))  # fmt: skip
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--steps", type=int, default=0, help="0: each optimizer's default")
    parser.add_argument("--out", default="bench_out/scaling")
    parser.add_argument("--smoke", action="store_true", help="adam on 2 processes, tiny")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.optimizers, args.processes, args.points, args.width, args.steps = (
            ["adam"], [2], 40, 4, 3)  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(sys.argv[1:] if argv is None else argv)
    rows = [cell(args, name, k) for name in args.optimizers for k in args.processes]
    text = report(args, rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()

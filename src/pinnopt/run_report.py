"""What `pinnopt solve` says: its flags read (``--param``), the line before a run and
the lines after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pinnopt.config import Config, ConfigError


def problem_params(items: list[str]) -> dict[str, float]:
    """``["nu=0.01", …]`` as {"nu": 0.01, …}; ConfigError naming --param otherwise."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not (sep and name.strip()):
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--param: expected NAME=NUMBER, got {item!r}") from None
    return out


def start_line(cfg: Config, resume: bool) -> str:
    """What a solve is about to run, said before it starts."""
    m, t = cfg.model, cfg.training
    size = f"{m.width}x{m.depth}" + (f", degree {m.degree}" if m.kind == "chebykan" else "")
    threads = t.threads or torch_threads()
    verb = "resuming" if resume else "solving"
    return (
        f"{verb} {cfg.problem.name} with {cfg.optim.optimizer} ({m.kind} {size}, {t.steps} "
        f"steps, {t.dtype}, {threads} thread{'s' if threads != 1 else ''}) in {cfg.out_dir()}"
    )


def torch_threads() -> int:
    return torch.get_num_threads()


def result_lines(metrics: dict[str, Any], out_dir: Path) -> list[str]:
    """The errors a solve reached: overall, per network of multi-stage training, per time
    window of time marching; then where the run directory is."""
    m = metrics
    lines = [
        f"{m['problem']} with {m['optimizer']}: rel_l2 = {m['rel_l2']:.3e}, "
        f"max |error| = {m['max_abs_error']:.3e}, loss = {m['final_loss']:.3e} "
        f"after {m['steps']} steps in {m['wall_time_s']:.1f} s ({m['status']})"
    ]
    for s in m.get("stages", []):
        f_d = "-" if s["frequency"] is None else f"{s['frequency']:.3g}"
        lines.append(
            f"  network {s['network']}: rel_l2 = {s['rel_l2']:.3e} after {s['steps']} steps in "
            f"{s['wall_time_s']:.1f} s (epsilon = {s['epsilon']:.3e}, f_d = {f_d}, {s['status']})"
        )
    for w in m.get("windows", []):
        lines.append(
            f"  window {w['window']} (t in [{w['t_start']:g}, {w['t_end']:g}]): rel_l2 = "
            f"{w['rel_l2']:.3e} after {w['steps']} steps ({w['status']})"
        )
    lines.append(
        f"run directory: {out_dir}  (config.toml, checkpoint.pt, metrics.json, "
        "history.csv, loss.png, solution.png)"
    )
    return lines

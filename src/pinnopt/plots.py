"""Plots of a run: the loss history and the solution against its reference."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pinnopt.problems.base import Box, Problem  # noqa: E402


def plot_loss(history: list[dict], path: str | Path) -> None:
    """Loss and per-term losses against step (log scale), with rel_l2 where evaluated.

    The legend sits to the right of the axes, so that it hides no curve.
    """
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    steps = [r["step"] for r in history]
    keys = ["loss"] + sorted({k for r in history for k in r if k.startswith("loss_")})
    for key in keys:
        pts = [(r["step"], r[key]) for r in history if key in r and r[key] > 0]
        if pts:
            ax.semilogy(*zip(*pts), label=key, lw=2 if key == "loss" else 1)
    errs = [(r["step"], r["rel_l2"]) for r in history if "rel_l2" in r]
    if errs:
        ax.semilogy(*zip(*errs), "k--o", ms=3, label="rel_l2")
    stages = [(r["step"], r.get("stage")) for r in history]
    for (_, a), (s1, b) in zip(stages, stages[1:]):
        if a != b and b is not None:
            ax.axvline(s1, color="grey", ls=":", lw=1)
            ax.text(s1, ax.get_ylim()[1], f" {b}", va="top", fontsize=8, color="grey")
    networks = [(r["step"], r.get("network")) for r in history]  # multi-stage training
    for (_, a), (s1, b) in zip(networks, networks[1:]):
        if a != b and b is not None:
            ax.axvline(s1, color="k", ls="-.", lw=1)
            ax.text(s1, ax.get_ylim()[0], f" network {b}", va="bottom", fontsize=8)
    ax.set_xlabel("step")
    ax.set_xlim(0, max(steps[-1], 1) if steps else 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()  # makes room for the legend outside the axes
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _slice_points(problem: Problem, n: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An n×n grid over the first two coordinates, the others at the box centre."""
    box = problem.domain
    lo, hi = box.lower, box.upper
    a = torch.linspace(lo[0], hi[0], n, dtype=torch.float64)
    b = torch.linspace(lo[1], hi[1], n, dtype=torch.float64)
    ga, gb = torch.meshgrid(a, b, indexing="ij")
    x = torch.empty(n * n, box.dim, dtype=torch.float64)
    for i in range(box.dim):
        x[:, i] = 0.5 * (lo[i] + hi[i])
    x[:, 0], x[:, 1] = ga.reshape(-1), gb.reshape(-1)
    return x, (n, n)


@torch.no_grad()
def plot_solution(model: nn.Module, problem: Problem, path: str | Path, n: int = 128) -> None:
    """Prediction, reference and |error|: curves in 1-D, maps over a 2-D slice otherwise;
    one row of panels per component of a system. A domain that is not a box is drawn over
    its bounding box, blank (NaN) outside the shape, where nothing is evaluated."""
    p = next(model.parameters())
    names = problem.components
    if problem.dim == 1:
        x = problem.domain.grid(512)
    else:
        x, shape = _slice_points(problem, n)
    keep = torch.ones(len(x), dtype=torch.bool)
    if not isinstance(problem.domain, Box):
        keep = problem.domain.inside(x)
    pred = torch.full((len(x), len(names)), math.nan, dtype=torch.float64)
    ref = pred.clone()
    pred[keep] = model(x[keep].to(p.device, p.dtype))[:, : len(names)].double().cpu()
    ref[keep] = problem.reference(x[keep]).reshape(-1, len(names))
    columns = 2 if problem.dim == 1 else 3
    fig, axes = plt.subplots(len(names), columns, figsize=(5 * columns, 3.8 * len(names)),
                             squeeze=False)  # fmt: skip
    for k, (row, name) in enumerate(zip(axes, names)):
        label = f"{name}: " if len(names) > 1 else ""
        if problem.dim == 1:
            xs = x[:, 0].numpy()
            row[0].plot(xs, ref[:, k].numpy(), "k", lw=2, label="reference")
            row[0].plot(xs, pred[:, k].numpy(), "r--", label="prediction")
            row[0].legend()
            row[0].set_title(f"{label}prediction and reference" if label else "")
            row[1].semilogy(xs, (pred[:, k] - ref[:, k]).abs().clamp_min(1e-300).numpy())
            row[1].set_title(f"{label}|error|")
            for ax in row:
                ax.set_xlabel(problem.input_names[0])
            continue
        fields = [pred[:, k].reshape(shape), ref[:, k].reshape(shape)]
        fields.append((fields[0] - fields[1]).abs())
        extent = [problem.domain.lower[0], problem.domain.upper[0]]
        extent += [problem.domain.lower[1], problem.domain.upper[1]]
        for ax, field, title in zip(row, fields, ["prediction", "reference", "|error|"]):
            im = ax.imshow(
                field.T.numpy(), origin="lower", extent=extent, aspect="auto", cmap="viridis"
            )
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{label}{title}")
            ax.set_xlabel(problem.input_names[0])
            ax.set_ylabel(problem.input_names[1])
    if problem.dim > 2:
        fig.suptitle(f"slice through the centre of {problem.name} (other coordinates fixed)")
    pred, ref = pred[keep], ref[keep]
    rel = float((pred - ref).norm() / ref.norm()) if float(ref.norm()) > 0 else math.nan
    fig.text(0.01, 0.01, f"{problem.name}: rel_l2 on this plot {rel:.2e}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_points(points: dict[str, torch.Tensor], problem: Problem, path: str | Path) -> None:
    """Where the collocation points are: one panel per term, over its first two inputs
    (a histogram over x in 1-D); observed values and normals carried as extra columns
    are left out."""
    fig, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 4), squeeze=False)
    for ax, (name, x) in zip(axes[0], points.items()):
        x = x[:, : problem.dim].detach().double().cpu()
        if problem.dim == 1:
            ax.hist(x[:, 0].numpy(), bins=100)
            ax.set_xlabel(problem.input_names[0])
        else:
            ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=1, alpha=0.5)
            ax.set_xlabel(problem.input_names[0])
            ax.set_ylabel(problem.input_names[1])
        ax.set_title(f"{name}: {x.shape[0]} points")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

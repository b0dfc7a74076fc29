"""Plots of a blow-up profile run: the profile against the exact one, its residual, the funnel."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_profile(y: Tensor, u: Tensor, exact: Tensor, order: int, path: str | Path) -> None:
    """U and U_exact against y (left), |U − U_exact| on a log scale (right)."""
    y, u, exact = y.numpy(), u.numpy(), exact.numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(y, exact, "k", lw=3, alpha=0.3, label="exact")
    a.plot(y, u, "C0", lw=1, label="found")
    a.set_xlabel("y")
    a.set_ylabel("U(y)")
    a.legend()
    a.set_title(f"Burgers profile, order {order}")
    b.semilogy(y, np.maximum(np.abs(u - exact), 1e-18), "C3", lw=1)
    b.set_xlabel("y")
    b.set_ylabel("|U − U_exact|")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_residual(y: Tensor, residual: Tensor, history: list[dict], path: str | Path,
                  label: str = "|−λU + ((1+λ)y + U)U'|", logx: bool = False) -> None:  # fmt: skip
    """|R(y)| of the profile equation on the check grid (left), the loss per step (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.semilogy(y.numpy(), np.maximum(np.abs(residual.numpy()), 1e-18), "C3", lw=1)
    a.set_xlabel("y")
    a.set_ylabel(label)
    a.set_title("residual of the profile equation")
    if logx:
        a.set_xscale("log")
    steps = [(h["step"], h["loss"]) for h in history if h["kind"] in ("start", "step")]
    if steps:
        b.semilogy(*zip(*steps), "C0.-", ms=3)
    b.set_xlabel("Gauss–Newton step")
    b.set_ylabel("loss ½‖r‖²")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MAX_DECADE_TICKS = 3  # labelled decades on each side of 0 on the funnel's λ axis


def funnel_axis(offsets: list[float]) -> tuple[float, float, list[float]]:
    """(linthresh, linscale, ticks) of a symlog axis for the signed relative offsets.

    The linear range around 0 ends at the decade at or below the smallest nonzero
    offset; at most ``MAX_DECADE_TICKS`` decades are labelled on each side, every
    ``stride``-th counted down from the largest; the linear range is ``stride`` decades
    wide on each side (``linscale``), so that the labels next to 0 are as far apart as
    the others and none overlap.
    """
    sizes = [abs(o) for o in offsets if o != 0 and math.isfinite(o)]
    # 1e-6: an offset of 10⁻ᵏ (1 + rounding) belongs to decade −k, not to the next one
    lo = math.floor(math.log10(min(sizes, default=1e-16)) + 1e-6)
    hi = max(math.ceil(math.log10(max(sizes, default=1e-16)) - 1e-6), lo)
    stride = math.ceil((hi - lo + 1) / MAX_DECADE_TICKS)
    decades = [10.0**e for e in range(hi, lo - 1, -stride)]
    return 10.0**lo, float(stride), sorted([-d for d in decades] + [0.0] + decades)


def funnel_figure(funnel: list[dict], lam: float, lam_exact: float | None,
                  signed_label: str = "signed residual λ*(U_λ) − λ") -> Figure:  # fmt: skip
    """The funnel: the trained RMS residual (left) and the signed residual (right) against
    the relative offset (λ − λ_found)/λ_found, with the exact λ marked when there is one."""
    offsets = [f["lambda"] / lam - 1 for f in funnel]
    offsets += [] if lam_exact is None else [lam_exact / lam - 1]
    linthresh, linscale, ticks = funnel_axis(offsets)
    edge = max(abs(t) for t in ticks) * 10**0.3
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("funnel", "C0o"), ("scan", "C1s"), ("found", "k*")):
        mine = [f for f in funnel if f["kind"] == kind]
        pts = sorted((f["lambda"] / lam - 1, f["rms"], f["signed"]) for f in mine)
        if pts:
            d, rms, signed = zip(*pts)
            name = "found profile" if kind == "found" else f"{kind} trainings"
            a.semilogy(d, rms, style, label=name)
            b.plot(d, signed, style, label=name)
    for ax in (a, b):
        if lam_exact is not None:
            ax.axvline(lam_exact / lam - 1, color="k", ls=":", lw=1, label="exact λ")
        ax.set_xlabel("(λ − λ_found) / λ_found")
        ax.set_xscale("symlog", linthresh=linthresh, linscale=linscale)
        ax.set_xticks(ticks)
        ax.set_xlim(-edge, edge)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    a.set_ylabel("RMS residual after training at fixed λ")
    b.set_ylabel(signed_label)
    b.axhline(0, color="grey", lw=1)
    fig.suptitle(f"funnel around λ = {lam:.16g}")
    fig.tight_layout()
    return fig


def plot_funnel(funnel: list[dict], lam: float, lam_exact: float | None, path: str | Path,
                **options: str) -> None:  # fmt: skip
    """Save :func:`funnel_figure` to ``path``."""
    fig = funnel_figure(funnel, lam, lam_exact, **options)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_series_profile(y: Tensor, fields: dict[str, Tensor], name: str, lam: float,
                        path: str | Path) -> None:  # fmt: skip
    """The profile f, its Hilbert transform H f and U against y ≥ 0 (log x axis)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("f", "profile Ω"), ("hf", "H Ω = U'"), ("U", "U")):
        ax.plot(y.numpy(), fields[key].numpy(), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("y")
    ax.set_title(f"{name} profile, λ = {lam:.12g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_branch(branch: list[dict], roots: list[float], order: int, lam: float, y: Tensor,
                omega: Tensor, path: str | Path) -> None:  # fmt: skip
    """The branch of fixed-λ solutions, γ against λ with γ = 2 and its crossings marked
    (left), and the chosen profile Ω against y where |Ω| > 10⁻³ max |Ω| (right, log x)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([p["lambda"] for p in branch], [p["gamma"] for p in branch], "C0.-", ms=2, lw=1)
    a.axhline(2.0, color="k", lw=0.8, ls="--")
    a.plot(roots, [2.0] * len(roots), "C1o", ms=5, label="crossings γ = 2 (profiles)")
    a.plot([lam], [2.0], "k*", ms=12, label=f"order {order}, λ = {lam:.6g}")
    a.set_xlabel("λ")
    a.set_ylabel("γ = λ / v'(0)   (Θ ~ |y|^γ at 0)")
    a.set_title("fixed-λ solutions along the branch")
    a.legend()
    shown = omega.abs() > 1e-3 * omega.abs().max()  # where the profile is not ~0
    b.plot(y[shown].numpy(), omega[shown].numpy(), "C0")
    b.set_xscale("log")
    b.set_xlabel("y")
    b.set_ylabel("Ω(y),  Ω'(0) = −1")
    b.set_title(f"profile of order {order}")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

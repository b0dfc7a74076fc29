"""What K-FAC stores per layer: running averages of the Kronecker factors and damped inverses.

Damping is split between the factors, A + π√λ I and G + (√λ/π) I (Martens & Grosse
2015, §6.3); the sum over groups A_0 ⊗ G_0 + A_1 ⊗ G_1 is inverted exactly through
generalized eigenproblems (Dangel, Müller & Zeinhofer 2024), see :mod:`pinnopt.optim.kfac`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pinnopt.optim.kfac.layers import JET, VALUE

INVERSES = ("eigen", "cholesky")
DAMPING_SPLITS = ("pi", "sqrt")


def _damped(a: Tensor, g: Tensor, damping: float, split: str) -> tuple[Tensor, Tensor]:
    """A + π√λ I and G + (√λ/π) I (π = 1 for ``split="sqrt"``)."""
    pi = 1.0
    if split == "pi":
        ta, tg = float(a.diagonal().mean()), float(g.diagonal().mean())
        if ta > 0 and tg > 0 and math.isfinite(ta / tg):
            pi = math.sqrt(ta / tg)
    s = math.sqrt(damping)
    eye_a = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    eye_g = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return a + (pi * s) * eye_a, g + (s / pi) * eye_g


def _pencil(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues λ and vectors V of x0 V = x1 V diag(λ) with Vᵀ x1 V = I (x1 SPD)."""
    chol = torch.linalg.cholesky(x1)
    eye = torch.eye(x1.shape[0], dtype=x1.dtype, device=x1.device)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    c = inv @ x0 @ inv.t()
    lam, q = torch.linalg.eigh(0.5 * (c + c.t()))
    return lam, inv.t() @ q


class KroneckerCurvature:
    """What K-FAC stores for one layer, in a dict of tensors (an optimizer's per-param state).

    Running averages A_g ← β A_g + (1 − β) A_g,new (and the same for G_g and the
    slot-row count n_g) for the groups g seen so far, and the damped inverse of
    Σ_g A_g ⊗ G_g: eigenbases ("VA", "lA", "VG", "lG", "shift") or Cholesky
    factors ("LA", "LG"). Inverses are computed in float64.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def groups(self) -> list[int]:
        return [k for k in (VALUE, JET) if f"A{k}" in self.state]

    def update(self, group: int, a: Tensor, g: Tensor, count: float, decay: float) -> None:
        st = self.state
        if f"A{group}" not in st:
            st[f"A{group}"], st[f"G{group}"], st[f"n{group}"] = a.clone(), g.clone(), count
            return
        st[f"A{group}"].mul_(decay).add_(a, alpha=1 - decay)
        st[f"G{group}"].mul_(decay).add_(g, alpha=1 - decay)
        st[f"n{group}"] = decay * st[f"n{group}"] + (1 - decay) * count

    def invert(self, damping: float, split: str, inverse: str) -> None:
        st = self.state
        factors = [(st[f"A{k}"].double(), st[f"G{k}"].double(), st[f"n{k}"]) for k in self.groups()]
        if not factors:
            return
        dtype = st[f"A{self.groups()[0]}"].dtype
        for key in ("VA", "lA", "VG", "lG", "shift", "LA", "LG"):
            st.pop(key, None)
        if inverse == "cholesky" or len(factors) == 1:
            count = sum(n for _, _, n in factors)
            a = sum(n * a for a, _, n in factors) / count
            g = sum(g for _, g, _ in factors)
            a, g = _damped(a, g, damping, split)
            if inverse == "cholesky":
                st["LA"] = torch.linalg.cholesky(a).to(dtype)
                st["LG"] = torch.linalg.cholesky(g).to(dtype)
                return
            la, va = torch.linalg.eigh(a)
            lg, vg = torch.linalg.eigh(g)
            shift = 0.0
        else:
            (a0, g0), (a1, g1) = (_damped(a, g, damping, split) for a, g, _ in factors)
            la, va = _pencil(a0, a1)
            lg, vg = _pencil(g0, g1)
            shift = 1.0
        st["VA"], st["lA"], st["VG"], st["lG"] = (t.to(dtype) for t in (va, la, vg, lg))
        st["shift"] = shift

    @property
    def inverted(self) -> bool:
        return "VA" in self.state or "LA" in self.state

    def solve(self, m: Tensor) -> Tensor:
        """X with Σ_g G_g X A_g = M for the damped factors (M of shape (O, I))."""
        st = self.state
        if "LA" in st:
            x = torch.cholesky_solve(m, st["LG"])
            return torch.cholesky_solve(x.t(), st["LA"]).t()
        va, vg = st["VA"], st["VG"]
        y = (vg.t() @ m @ va) / (torch.outer(st["lG"], st["lA"]) + st["shift"])
        return vg @ y @ va.t()

"""Self-similar blow-up of the inviscid Burgers equation: the exact profiles and rates.

u_t + u u_x = 0 with u = (1 − t)^λ U(y), y = x / (1 − t)^(1+λ) turns into the
profile equation

    −λ U + ((1 + λ) y + U) U' = 0.

Its solutions are y = −U − C U^(1 + 1/λ). They are smooth at y = 0 only when
1 + 1/λ is an odd integer 2n + 3, i.e. for λ_n = 1 / (2n + 2), n = 0, 1, 2, …;
with the scale fixed by C = 1 the profile of order n is the real root of

    U + U^(2n+3) = −y,

odd, with U'(0) = −1 and far field U ~ −sign(y) |y|^(1/(2n+3)). Differentiating
the implicit equation gives U' = −1 / (1 + k U^(k−1)) and U'' = k (k−1) U^(k−2) U'³
with k = 2n + 3. (Eggers & Fontelos, *Singularities: Formation, Structure, and
Propagation*, 2015, §3; used as the exactly solvable test case of Wang, Lai,
Gómez-Serrano & Buckmaster, *Discovery of unstable singularities*, 2025.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from pinnopt.blowup.equation import ProfileEquation, register_equation


def _check_order(n: int) -> None:
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"order n must be an integer >= 0, got {n!r}")


def burgers_lambda(n: int) -> float:
    """The admissible scaling rate λ_n = 1 / (2n + 2) of the order-n profile."""
    _check_order(n)
    return 1.0 / (2 * n + 2)


def burgers_exponent(n: int) -> int:
    """k = 2n + 3 = 1 + 1/λ_n, the power in U + U^k = −y."""
    _check_order(n)
    return 2 * n + 3


def burgers_profile(y: Tensor, n: int, max_iter: int = 200) -> tuple[Tensor, Tensor, Tensor]:
    """(U, U', U'') of the order-n profile at ``y``, U the real root of U + U^k = −y.

    Newton from U₀ = −sign(y)·min(|y|, |y|^(1/k)), which lies beyond the root
    (|U| + |U|^k = |y| bounds |U| by both); f(U) = U + U^k + y is convex on
    the root's side, so the iterates fall monotonically onto it: no overshoot, no
    damping. It stops when no iterate moves any more.
    """
    k = burgers_exponent(n)
    a = y.abs()
    u = -torch.sign(y) * torch.minimum(a, a ** (1.0 / k))
    for _ in range(max_iter):
        step = (u + u**k + y) / (1 + k * u ** (k - 1))
        new = u - step
        # monotone convergence: stop once the iterates stop shrinking in magnitude
        if bool((new.abs() >= u.abs()).all()):
            break
        u = torch.where(new.abs() < u.abs(), new, u)
    else:
        raise RuntimeError(f"Newton did not converge in {max_iter} iterations")
    du = -1.0 / (1 + k * u ** (k - 1))
    d2u = k * (k - 1) * u ** (k - 2) * du**3
    return u, du, d2u


def profile_residual(y: Tensor, u: Tensor, du: Tensor, lam: float | Tensor) -> Tensor:
    """−λ U + ((1 + λ) y + U) U', the self-similar Burgers equation."""
    return -lam * u + ((1 + lam) * y + u) * du


def project_lambda(y: Tensor, u: Tensor, du: Tensor) -> Tensor:
    """The λ that minimises ‖profile residual‖² for a given profile.

    The residual is linear in λ: r = λ a + b with a = y U' − U and b = (y + U) U',
    so λ* = −⟨a, b⟩ / ⟨a, a⟩.
    """
    a = y * du - u
    b = (y + u) * du
    return -(a * b).sum() / (a * a).sum()


def _burgers_residual(fields: dict[str, Tensor], y: Tensor, lam: Tensor) -> Tensor:
    return profile_residual(y, fields["f"], fields["df"], lam)


BURGERS = register_equation(
    ProfileEquation(
        name="burgers",
        description="inviscid Burgers: −λU + ((1+λ)y + U)U' = 0, λ_n = 1/(2n+2)",
        residual=_burgers_residual,
        decay=lambda lam: -lam / (1 + lam),  # U grows like |y|^(λ/(1+λ))
        slope=-1.0,
        ansatz="chebyshev",
        bracket=(0.05, 0.6),
    )
)

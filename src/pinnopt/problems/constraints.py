"""Exact (hard) constraints: an output transform u = g(x) + d(x)·N(x).

If d vanishes on a set Γ and g equals the boundary (or initial) data there, then u
equals the data on Γ whatever the network N is, and the terms that imposed it as a
penalty can be left out (Lagaris, Likas & Fotiadis 1998; Sukumar & Srivastava 2022).
The problem declares the constraint (``Problem.constraint``); the model that carries
it is :class:`pinnopt.models.transforms.OutputTransform`, and
``Problem.with_exact_constraint()`` puts it in force.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Constraint:
    """u = g(x) + d(x)·N(x), replacing the terms named in ``replaces``.

    ``g`` and ``d`` map points (N, d) to (N,) (the same for every component) or to
    (N, C) (one column per component); both must be smooth where the residuals are
    evaluated, since their derivatives enter the jet (computed with ``torch.func``).
    """

    g: Field
    d: Field
    replaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.g) or not callable(self.d):
            raise ValueError("constraint: g and d must be functions of the points x (N, d)")
        object.__setattr__(self, "replaces", tuple(self.replaces))


SIDES = ("lower", "upper")


def box_distance(lower: Sequence[float], upper: Sequence[float], faces: Sequence[tuple[int, str]]):
    """d(x) = Π over ``faces`` (dim, "lower"/"upper") of the scaled distance to that face.

    The distance to x_i = l_i is (x_i − l_i)/(u_i − l_i), to x_i = u_i it is
    (u_i − x_i)/(u_i − l_i): d is a polynomial, zero exactly on the listed faces,
    positive inside, and of order one. A face that the box does not have is refused.
    """
    dim = len(lower)
    checked = []
    for face in faces:
        if not (isinstance(face, tuple | list) and len(face) == 2):
            raise ValueError(f"constraint: a face is (dim, 'lower' or 'upper'), got {face!r}")
        i, side = face
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < dim:
            raise ValueError(
                f"constraint: face ({i!r}, {side!r}) does not exist; dims are 0..{dim - 1}"
            )
        if side not in SIDES:
            raise ValueError(
                f"constraint: face ({i}, {side!r}) does not exist; sides are 'lower', 'upper'"
            )
        checked.append((i, side))
    if not checked:
        raise ValueError("constraint: give at least one face")

    def d(x: Tensor) -> Tensor:
        out = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        for i, side in checked:
            width = upper[i] - lower[i]
            out = out * ((x[:, i] - lower[i]) if side == "lower" else (upper[i] - x[:, i])) / width
        return out

    return d

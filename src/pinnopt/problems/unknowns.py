"""Unknown physical parameters of an inverse problem.

An :class:`Unknown` (a viscosity ν, a diffusion coefficient, or a small field of
values) is declared on the problem with its initial value and, when known, the
truth. The model built for the problem holds it as a trainable parameter
(:class:`pinnopt.models.unknowns.WithUnknowns`), so it is part of θ for every
optimizer: Adam and L-BFGS see its gradient, Gauss–Newton its Jacobian column, and
K-FAC treats it as one dense block. A residual reads it as ``u.unknown("nu")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Unknown:
    """A trainable physical parameter: scalar or a small tensor, ``initial`` required."""

    initial: float | Sequence[float] | Tensor | None
    truth: float | Sequence[float] | Tensor | None = None

    def __post_init__(self) -> None:
        if self.initial is None:
            raise ValueError("unknown: initial value missing (Unknown(initial=...))")
        value = self.initial_tensor()
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"unknown: initial value must be finite, got {value.tolist()}")
        if self.truth is not None and self.truth_tensor().shape != value.shape:
            raise ValueError(
                f"unknown: truth has shape {tuple(self.truth_tensor().shape)}, the initial "
                f"value {tuple(value.shape)}"
            )

    def initial_tensor(self) -> Tensor:
        return torch.as_tensor(self.initial, dtype=torch.float64).clone()

    def truth_tensor(self) -> Tensor:
        return torch.as_tensor(self.truth, dtype=torch.float64).clone()

    def report(self, name: str, value: Tensor) -> dict[str, float]:
        """``param_<name>`` (a scalar's value, a field's first entries are not reported) and
        ``param_<name>_rel_error`` = ‖value − truth‖ / ‖truth‖ when the truth is known."""
        value = value.detach().to("cpu", torch.float64)
        out = {}
        if value.numel() == 1:
            out[f"param_{name}"] = float(value)
        if self.truth is not None:
            truth = self.truth_tensor()
            scale = float(truth.norm()) or 1.0
            out[f"param_{name}_rel_error"] = float((value - truth).norm()) / scale
        return out

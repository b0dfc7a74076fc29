"""Error of a model against a problem's exact or reference solution."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pinnopt.problems.base import Problem


class Evaluator:
    """Relative L2 and max-abs error on the problem's fixed evaluation points.

    rel_l2 = ‖u_θ - u*‖₂ / ‖u*‖₂ over the points (over all components together for a
    system, with ``rel_l2_<name>`` and ``max_abs_error_<name>`` per component as well).
    The reference u* is computed once (float64), which matters when it comes from
    quadrature (Burgers), and checked by :meth:`Problem.reference`: an ``exact`` of the
    wrong shape raises ValueError here. For an inverse problem the identified physical
    parameters are reported too: ``param_<name>`` (a scalar's value) and, when the
    truth is known, ``param_<name>_rel_error`` (:meth:`Unknown.report`).
    """

    def __init__(self, problem: Problem, points: Tensor | None = None) -> None:
        self.points = problem.evaluation_points() if points is None else points
        self.reference = problem.reference(self.points)
        self.components = problem.components
        self.unknowns = problem.unknowns

    @torch.no_grad()
    def predict(self, model: nn.Module, chunk: int = 65536) -> Tensor:
        """The model at the points: (N,) for one component, (N, C) for C."""
        p = next(model.parameters())
        x = self.points.to(dtype=p.dtype, device=p.device)
        c = len(self.components)
        out = [model(x[i : i + chunk])[:, :c] for i in range(0, len(x), chunk)]
        pred = torch.cat(out).to(device="cpu", dtype=torch.float64)
        return pred[:, 0] if c == 1 else pred

    def __call__(self, model: nn.Module) -> dict[str, float]:
        err = self.predict(model) - self.reference
        errors = {
            "rel_l2": float(err.norm() / self.reference.norm()),
            "max_abs_error": float(err.abs().max()),
        }
        if len(self.components) > 1:
            for k, name in enumerate(self.components):
                errors[f"rel_l2_{name}"] = float(err[:, k].norm() / self.reference[:, k].norm())
                errors[f"max_abs_error_{name}"] = float(err[:, k].abs().max())
        values = getattr(model, "unknowns", None) or {}
        for name, unknown in self.unknowns.items():
            if name in values:
                errors.update(unknown.report(name, values[name]))
        return errors

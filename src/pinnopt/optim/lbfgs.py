"""L-BFGS for high-precision least squares: torch's L-BFGS on a loss kept near 1.

``torch.optim.LBFGS`` stores a curvature pair (s, y) only when yᵀs > 1e-10, an
absolute threshold. As a PINN loss falls below about 1e-8, yᵀs falls below it,
the memory stops being updated and the method stalls far from machine
precision. This class runs the same iteration on the objective c·loss, with c
chosen at the start of each ``step`` call so that c·loss ≈ 1. When c changes by
a factor a the stored state is rescaled exactly — y ← a·y, ρ = 1/(yᵀs) ← ρ/a,
H₀ = yᵀs/yᵀy ← H₀/a, previous gradient and loss ← a·(…); s, the direction d and
the step t are unchanged — so the iteration is the one on the scaled objective
throughout, and ``tolerance_grad`` and ``tolerance_change`` act relative to the
loss. Everything else is ``torch.optim.LBFGS`` (Nocedal & Wright, Numerical
Optimization, Alg. 7.4, with a strong-Wolfe line search).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pinnopt.optim.registry import register_optimizer

RESCALE_BELOW = 1e-2  # rescale once the scaled loss has fallen below this


class LBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS`` with its loss rescaled to ≈ 1 between calls (see module doc).

    The scale lives in the optimizer state (``loss_scale``), so ``state_dict``
    round-trips it. ``step`` returns the unscaled loss at the starting point.
    ``step(closure, max_iter=k)`` runs at most k iterations in this call (with room for
    25 evaluations each, so that the line searches are never the reason to stop);
    ``iterations`` is how many the last call did: fewer than asked means the
    optimizer met its own tolerances. :meth:`objective_changed` starts the iteration
    afresh on a changed objective (new points or weights).
    """

    iterations: int = 0

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor], max_iter: int | None = None
    ) -> torch.Tensor:
        if closure is None:
            raise ValueError("LBFGS needs a closure that re-evaluates the loss")
        if max_iter is not None:
            for group in self.param_groups:
                group["max_iter"], group["max_eval"] = max_iter, max_iter * 25
        state = self.state[self._params[0]]
        before = state.get("n_iter", 0)
        if "loss_scale" not in state:
            with torch.enable_grad():
                start = float(closure().detach())
            state["loss_scale"] = 1.0 / start if start > 0 and start < float("inf") else 1.0
        elif state.get("prev_loss") is not None and 0 < state["prev_loss"] < RESCALE_BELOW:
            self._rescale(state, 1.0 / state["prev_loss"])
        scale = state["loss_scale"]

        def scaled() -> torch.Tensor:
            with torch.enable_grad():
                loss = closure()
            for p in self._params:
                if p.grad is not None:
                    p.grad.mul_(scale)
            return loss * scale

        loss = super().step(scaled) / scale
        self.iterations = state.get("n_iter", before + 1) - before
        return loss

    def objective_changed(self, what: str) -> None:
        """The objective changed (``what``: ``"points"`` or ``"weights"``): forget the
        iteration, keep the loss scale.

        The curvature pairs (s, y), the previous gradient and loss, the direction and
        step all describe the old objective, and a pair mixing two objectives is no
        curvature of either (yᵀs may even turn negative): they are dropped, so the next
        ``step`` starts like a first one (steepest descent, a cautious first step) on
        the new objective. ``loss_scale`` is kept: the new loss is usually of the same
        size, and the scale is re-set from ``prev_loss`` as usual once the loss falls.
        """
        for p in self._params:
            state = self.state.get(p)
            if state:
                scale = state.get("loss_scale")
                state.clear()
                if scale is not None:
                    state["loss_scale"] = scale

    def _rescale(self, state: dict, a: float) -> None:
        state["loss_scale"] *= a
        for y in state.get("old_dirs", []):
            y.mul_(a)
        if "ro" in state:
            state["ro"] = [r / a for r in state["ro"]]
        if isinstance(state.get("H_diag"), torch.Tensor | float | int):
            state["H_diag"] = state["H_diag"] / a
        if state.get("prev_flat_grad") is not None:
            state["prev_flat_grad"].mul_(a)
        state["prev_loss"] = state["prev_loss"] * a


# L-BFGS for PINNs: strong-Wolfe line search, a long history, and tolerances that
# (on the rescaled loss) act relative to the loss.
LBFGS_DEFAULTS = {
    "history_size": 100,
    "line_search_fn": "strong_wolfe",
    "tolerance_grad": 1e-12,
    "tolerance_change": 1e-14,
}


@register_optimizer(
    "lbfgs",
    1.0,
    closure="loss",
    description="L-BFGS, strong Wolfe, loss rescaled for precision",
    signature=LBFGS,
)
def lbfgs(params, lr, **options) -> LBFGS:
    """:class:`LBFGS` with :data:`LBFGS_DEFAULTS` under ``options``."""
    return LBFGS(params, lr=lr, **{**LBFGS_DEFAULTS, **options})

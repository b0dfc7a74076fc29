"""The PINN option for a Burgers profile: a network in place of the Chebyshev series, and
multi-stage refinement of the profile it finds.

The ansatz is :class:`~pinnopt.blowup.ansatz.BurgersAnsatz` with the series N replaced
by an MLP of the same compactified coordinate 2ζ − 1 ∈ [−1, 1]:

    U(y) = y (1 + y²)^((β − 1)/2) · (−1 + ζ (1 − ζ) N(2ζ − 1)),

so oddness, U'(0) = −1 and the far-field envelope |y|^β hold for any weights, as in
Wang, Lai, Gómez-Serrano & Buckmaster, *Discovery of unstable singularities* (2025),
whose networks also work in compactified coordinates under the far-field envelope.
The MLP's last layer starts at zero, so both ansätze start from the same guess, and
the least-squares problem, its collocation points and the Gauss–Newton solver (QR, λ
trainable) are those of :mod:`pinnopt.blowup.profile`: the two ansätze are compared on
the same equation and the same residual.

Multi-stage refinement (Wang & Lai, J. Comput. Phys. 504, 2024; the composite of
:class:`~pinnopt.train.multistage.NetworkSum`): once a stage stalls, its network is
frozen and a new one is added, scaled by ε:

    N = N_1 + ε_2 N_2 + … ,        ε_{k+1} = RMS over the collocation points of d0,

d0 = R / (1 + y²)^(β/2) being R relative to |U| (the module :mod:`pinnopt.blowup.profile`
explains the weights). The linearised profile operator has coefficients of order one in
these relative terms, so the relative error of U, and with it the size of the correction
N needs, is of the order of that RMS: the new network works at outputs of order one.
λ stays trainable in every stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.profile import ProfileResult, ProfileSolver
from pinnopt.models.mlp import MLP
from pinnopt.train.multistage import NetworkSum


def correction_mlp(width: int = 32, depth: int = 2, seed: int = 0) -> MLP:
    """A tanh MLP of one input in [−1, 1] whose output starts at zero (last layer zeroed)."""
    net = MLP(1, 1, width=width, depth=depth, seed=seed)
    last = net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return net


def find_network_profile(
    order: int,
    lam0: float,
    width: int = 32,
    depth: int = 2,
    stages: int = 2,
    points: int = 400,
    max_steps: int = 200,
    tol: float = 1e-28,
    damping: float = 1e-3,
    seed: int = 0,
    patience: int = 10,
    callback: Callable[[dict], None] | None = None,
) -> ProfileResult:
    """The order-``order`` profile and λ with an MLP ansatz, refined over ``stages`` stages.

    Each stage runs Gauss–Newton (λ trainable) until ``max_steps`` steps, a loss below
    ``tol`` or ``patience`` steps in a row that do not lower the loss (a network's
    Levenberg–Marquardt rejects steps while its damping adapts, so one such step is not
    yet a stall). ``result.stages`` holds one record per stage: stage, epsilon,
    parameters (trained in that stage), steps, lambda, seconds (since the start) and
    max_residual and profile_max_error on the check grid.
    ``callback`` sees each history record (step, loss, lambda, seconds, kind "stage K").
    """
    counts = {"order": (order, 0), "width": (width, 1), "depth": (depth, 1),
              "stages": (stages, 1), "points": (points, 1),
              "max_steps": (max_steps, 1), "patience": (patience, 1)}  # fmt: skip
    for name, (value, least) in counts.items():
        if not (isinstance(value, int) and value >= least):
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not (math.isfinite(lam0) and lam0 > 0):
        raise ValueError(f"lambda0 must be > 0, got {lam0}")
    model = BurgersAnsatz(order, lam0, network=correction_mlp(width, depth, seed))
    result = ProfileResult(order, "trainable", lam0, lam0, 0, 0.0, model)
    start = time.perf_counter()
    networks, scales = [model.network], [1.0]
    solver = None
    for stage in range(1, stages + 1):
        if stage > 1:
            with torch.no_grad():  # the last stage's d0 = R / (1 + y²)^(β/2) at its points
                d0 = solver.closure.objective.residuals()["d0"]
            epsilon = float(d0.square().mean().sqrt())
            if not epsilon > 0:
                break  # nothing left to fit
            networks.append(correction_mlp(width, depth, seed + stage - 1))
            scales.append(epsilon)
            model.network = NetworkSum(networks, scales)
        # the stage fits r / ε (its Jacobian is of order one), as Wang & Lai normalise it;
        # Levenberg–Marquardt's damping is absolute, so this is not a mere change of units
        weight = scales[-1] ** -2
        solver = ProfileSolver(model, points, damping, weight=weight)
        solver.loss = solver.current_loss()
        steps = idle = 0
        while steps < max_steps and not solver.loss < tol and idle < patience:
            solver.step()
            steps += 1
            entry = {"step": result.steps + steps, "loss": solver.loss / weight,
                     "lambda": model.lam.item(), "seconds": time.perf_counter() - start,
                     "kind": f"stage {stage}"}  # fmt: skip
            result.history.append(entry)
            if callback is not None:
                callback(entry)
            idle = idle + 1 if solver.stalled else 0
        result.steps += steps
        result.lam = model.lam.item()
        result.stages.append({
            "stage": stage, "epsilon": scales[-1], "steps": steps, "lambda": result.lam,
            "parameters": sum(p.numel() for p in solver.params),
            "seconds": time.perf_counter() - start, **result.check(),
        })  # fmt: skip
    result.seconds = time.perf_counter() - start
    return result

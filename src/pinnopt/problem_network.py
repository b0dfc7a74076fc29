"""The model for a problem: a network wrapped in what the problem declares.

    periodic inputs   N(x) becomes N(P(x)), P replacing each periodic coordinate by
                      its cos and sin (models.transforms.PeriodicInputs)
    exact constraint  u = g + d·N when the problem's constraint is in force
                      (Problem.with_exact_constraint; models.transforms.OutputTransform)
    unknowns          the physical parameters of an inverse problem, trainable
                      (models.unknowns.WithUnknowns)

Every place that builds a network for a problem (the solve job, multi-stage training,
loading a run) goes through :func:`network_for`, so the wrappers are the same there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pinnopt.models.transforms import OutputTransform, PeriodicInputs
from pinnopt.models.unknowns import WithUnknowns
from pinnopt.problems.base import Problem

# build(in_dim, lower, upper) -> a network with one output per component of the problem
NetworkBuilder = Callable[[int, Sequence[float], Sequence[float]], nn.Module]


def network_for(problem: Problem, build: NetworkBuilder, correction: bool = False) -> nn.Module:
    """``build``'s network for ``problem``, wrapped as the module docstring says.

    ``correction``: a further network of multi-stage training, added to the first:
    it must vanish where the constraint holds (g = 0) and carries no unknowns (the
    first network holds them).
    """
    domain = problem.domain
    lower, upper = tuple(domain.lower), tuple(domain.upper)
    if problem.periodic:
        periodic = PeriodicInputs(problem.dim, problem.periodic)
        inner_lower, inner_upper = periodic.bounds(lower, upper)
        network = build(len(inner_lower), inner_lower, inner_upper)
        model: nn.Module = nn.Sequential(periodic, network)
    else:
        model = build(problem.dim, lower, upper)
    if problem.constrained:
        c = problem.constraint
        g = _zero if correction else c.g
        model = OutputTransform(model, g, c.d, len(problem.components))
    if problem.unknowns and not correction:
        model = WithUnknowns(model, {k: u.initial_tensor() for k, u in problem.unknowns.items()})
    return model


def _zero(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

"""Learned and meta-learned optimizers: task families, episodes (and, to come, meta-training).

The hypergradient wrapper lives with the other optimizers
(:class:`pinnopt.optim.hypergradient.HypergradientOptimizer`, config name ``meta``).
"""

from pinnopt.learned.tasks import (
    FAMILIES,
    SPLITS,
    DigitsFamily,
    EpisodeSampler,
    PoissonFamily,
    QuadraticFamily,
    SinusoidFamily,
    Task,
    TaskFamily,
    build_family,
    load_digits,
)

__all__ = [
    "FAMILIES",
    "SPLITS",
    "DigitsFamily",
    "EpisodeSampler",
    "PoissonFamily",
    "QuadraticFamily",
    "SinusoidFamily",
    "Task",
    "TaskFamily",
    "build_family",
    "load_digits",
]

"""Problems by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pinnopt.problems.base import Problem
from pinnopt.registry import Registry

PROBLEMS: Registry[Callable[..., Problem]] = Registry("problem")
register_problem = PROBLEMS.register  # decorator adding a problem factory under a name


def get_problem(name: str, **params: float) -> Problem:
    """Build the problem ``name`` with its parameters; ValueError names what is wrong."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; allowed: {', '.join(sorted(PROBLEMS))}")
    factory = PROBLEMS[name]
    allowed = list(inspect.signature(factory).parameters)
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"unknown parameter {key!r} for problem {name}; allowed: {allowed or 'none'}"
            )
    return factory(**params)

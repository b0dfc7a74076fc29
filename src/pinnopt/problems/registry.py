"""Problems by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pinnopt.problems.base import Problem

PROBLEMS: dict[str, Callable[..., Problem]] = {}


def register_problem(name: str) -> Callable[[Callable[..., Problem]], Callable[..., Problem]]:
    """Decorator adding a problem factory to the registry under ``name``."""

    def add(factory: Callable[..., Problem]) -> Callable[..., Problem]:
        if name in PROBLEMS:
            raise ValueError(f"problem {name!r} is already registered")
        PROBLEMS[name] = factory
        return factory

    return add


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

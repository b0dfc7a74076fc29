"""The profile equations by name: the built-in ones (burgers, ccf) and any registered since."""

from __future__ import annotations

from pinnopt.blowup import burgers, ccf  # noqa: F401  (they register themselves)
from pinnopt.blowup.equation import EQUATIONS, ProfileEquation


def get_equation(name: str) -> ProfileEquation:
    """The registered equation ``name``; ValueError naming the known ones otherwise."""
    if name not in EQUATIONS:
        raise ValueError(f"unknown equation {name!r}; known: {', '.join(sorted(EQUATIONS))}")
    return EQUATIONS[name]

"""PDE problems: domains, residual terms and exact or reference solutions, by name."""

from pinnopt.problems import burgers, heat, helmholtz, lshape, poisson, wave  # noqa: F401
from pinnopt.problems.base import Box, Problem, Term
from pinnopt.problems.burgers import burgers_hopf_cole
from pinnopt.problems.registry import PROBLEMS, get_problem, register_problem

__all__ = [
    "PROBLEMS",
    "Box",
    "Problem",
    "Term",
    "burgers_hopf_cole",
    "get_problem",
    "register_problem",
]

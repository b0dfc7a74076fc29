"""Optimizers by name for the CLI, the config and Python."""

from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.optim.lbfgs import LBFGS
from pinnopt.optim.registry import (
    OPTIMIZERS,
    OptimizerSpec,
    Stage,
    build_optimizer,
    get_optimizer_spec,
    parse_chain,
    register_optimizer,
)

__all__ = [
    "LBFGS",
    "OPTIMIZERS",
    "GaussNewton",
    "OptimizerSpec",
    "Stage",
    "build_optimizer",
    "get_optimizer_spec",
    "parse_chain",
    "register_optimizer",
]

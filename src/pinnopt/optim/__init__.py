"""torch.optim-compatible optimizers, each registered by name beside its class.

Importing this package registers every optimizer family: PyTorch's own
(``adam``, ``adamw``, ``sgd``, ``rmsprop``, ``adagrad``), the Laplacian-smoothed
ones, L-BFGS, Gauss–Newton, K-FAC and the hypergradient wrapper. The learned
optimizer ``l2o`` registers itself in :mod:`pinnopt.learned`.
"""

from pinnopt.optim import torch_builtin  # noqa: F401  (registers adam, sgd, …)
from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.optim.hypergradient import HypergradientOptimizer
from pinnopt.optim.kfac import KFAC, KFACPreconditioner
from pinnopt.optim.laplacian_smoothed import LAdaGrad, LAdam, LRMSProp
from pinnopt.optim.lbfgs import LBFGS
from pinnopt.optim.quasi_newton import QuasiNewton  # noqa: F401  (registers bfgs, ssbfgs, …)
from pinnopt.optim.registry import (
    OPTIMIZERS,
    OptimizerSpec,
    build_optimizer,
    get_optimizer_spec,
    register_optimizer,
)

__all__ = [
    "KFAC",
    "LBFGS",
    "OPTIMIZERS",
    "GaussNewton",
    "HypergradientOptimizer",
    "KFACPreconditioner",
    "LAdaGrad",
    "LAdam",
    "LRMSProp",
    "OptimizerSpec",
    "build_optimizer",
    "get_optimizer_spec",
    "register_optimizer",
]

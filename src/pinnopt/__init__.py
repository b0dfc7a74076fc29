"""pinnopt: physics-informed neural networks trained to high precision.

The public API in one import::

    import pinnopt as po
    problem = po.get_problem("poisson2d")
"""

# imported for its registration: the learned optimizer l2o
from pinnopt import learned  # noqa: E402, F401, I001
from pinnopt.config import Config, ConfigError, load_config, make_config
from pinnopt.derivatives import Jet, jet
from pinnopt.evaluation import Evaluator
from pinnopt.models import MLP, ChebyKAN, build_model
from pinnopt.objective import Objective
from pinnopt.optim import OPTIMIZERS, build_optimizer, register_optimizer
from pinnopt.problem_network import network_for
from pinnopt.problems import (
    PROBLEMS,
    Annulus,
    Box,
    Constraint,
    Disk,
    Polygon,
    Problem,
    Term,
    Unknown,
    box_distance,
    get_problem,
    l_shape,
    observation_terms,
    register_problem,
    with_normals,
)
from pinnopt.train import (
    AdaptiveSampler,
    SamplingSettings,
    Trainer,
    TrainerSettings,
    TrainResult,
    parse_chain,
)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "AdaptiveSampler",
    "SamplingSettings",
    "OPTIMIZERS",
    "PROBLEMS",
    "Annulus",
    "Box",
    "Constraint",
    "Disk",
    "Polygon",
    "Unknown",
    "box_distance",
    "l_shape",
    "network_for",
    "observation_terms",
    "ChebyKAN",
    "Config",
    "ConfigError",
    "Evaluator",
    "Jet",
    "Objective",
    "Problem",
    "Term",
    "TrainResult",
    "Trainer",
    "TrainerSettings",
    "build_model",
    "build_optimizer",
    "get_problem",
    "jet",
    "load_config",
    "make_config",
    "parse_chain",
    "register_optimizer",
    "register_problem",
    "with_normals",
]

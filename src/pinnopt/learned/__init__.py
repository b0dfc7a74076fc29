"""Learned and meta-learned optimizers: task families, episodes, meta-training, and
meta-trained optimizers as ``torch.optim.Optimizer``, and the meta-training loop
(:func:`meta_train`, ``pinnopt meta-train``).

The hypergradient wrapper lives with the other optimizers
(:class:`pinnopt.optim.hypergradient.HypergradientOptimizer`, config name ``hypergradient``).
"""

from pinnopt.learned.learned_optimizer import LearnedOptimizer, load_learned
from pinnopt.learned.meta import (
    METHODS,
    Episode,
    MetaOptimizer,
    MetaOptimizerConfig,
    MetaOptTrainResult,
    build_rule,
    register_rule,
)
from pinnopt.learned.methods import (
    L2ORule,
    LSTMRule,
    MetaSGDRule,
    RuleState,
    preprocess_gradient,
)
from pinnopt.learned.pde_tasks import PDEMixFamily
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
    register_family,
)
from pinnopt.learned.train import meta_train

__all__ = [
    "FAMILIES",
    "METHODS",
    "SPLITS",
    "DigitsFamily",
    "Episode",
    "EpisodeSampler",
    "L2ORule",
    "LSTMRule",
    "LearnedOptimizer",
    "MetaOptTrainResult",
    "MetaOptimizer",
    "MetaOptimizerConfig",
    "MetaSGDRule",
    "PDEMixFamily",
    "PoissonFamily",
    "QuadraticFamily",
    "RuleState",
    "SinusoidFamily",
    "Task",
    "TaskFamily",
    "build_family",
    "build_rule",
    "load_digits",
    "load_learned",
    "meta_train",
    "preprocess_gradient",
    "register_family",
    "register_rule",
]

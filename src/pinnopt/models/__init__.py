"""Models for PINNs; every built-in model supports forward jets.

Importing a model module registers it (:mod:`pinnopt.models.registry`); ``mlp`` is
imported first so that it is listed first.
"""

from __future__ import annotations

from pinnopt.models.mlp import MLP

# isort: split
from pinnopt.models.chebykan import ChebyKAN, ChebyshevLayer
from pinnopt.models.init import INITIALIZERS, initialize
from pinnopt.models.layers import ACTIVATIONS, Activation, FourierFeatures, InputScaling
from pinnopt.models.registry import MODELS, build_model, register_model
from pinnopt.models.transforms import OutputTransform, PeriodicInputs

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "MODELS",
    "MLP",
    "Activation",
    "ChebyKAN",
    "ChebyshevLayer",
    "FourierFeatures",
    "InputScaling",
    "OutputTransform",
    "PeriodicInputs",
    "build_model",
    "initialize",
    "register_model",
]

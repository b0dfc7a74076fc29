"""Training: the loop, schedules, checkpoints, adaptive collocation, multi-stage training,
causal weights and time marching."""

from pinnopt.train.causal import CausalSettings, CausalWeights, causal_weights
from pinnopt.train.chain import Stage, chain_text, parse_chain
from pinnopt.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pinnopt.train.multistage import (
    MultiStageResult,
    NetworkSum,
    StageResult,
    analyze_residual,
    dominant_frequency,
    fit_stages,
    fourier_mlp,
)
from pinnopt.train.run_state import TrainerSettings, TrainResult, TrainState
from pinnopt.train.sampling import AdaptiveSampler, SamplingSettings
from pinnopt.train.schedulers import SCHEDULERS, build_scheduler
from pinnopt.train.time_marching import MarchResult, TimeMarching, TimeWindows, WindowResult
from pinnopt.train.trainer import Trainer
from pinnopt.train.weighting import LossBalancer, WeightingSettings

__all__ = [
    "SCHEDULERS",
    "AdaptiveSampler",
    "CausalSettings",
    "CausalWeights",
    "MarchResult",
    "TimeMarching",
    "TimeWindows",
    "WindowResult",
    "causal_weights",
    "LossBalancer",
    "SamplingSettings",
    "WeightingSettings",
    "CheckpointError",
    "Stage",
    "chain_text",
    "parse_chain",
    "MultiStageResult",
    "StageResult",
    "NetworkSum",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainerSettings",
    "analyze_residual",
    "build_scheduler",
    "dominant_frequency",
    "fit_stages",
    "fourier_mlp",
    "load_checkpoint",
    "save_checkpoint",
]

"""Training: the loop, schedules and checkpoints."""

from pinnopt.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pinnopt.train.schedulers import SCHEDULERS, build_scheduler
from pinnopt.train.trainer import Trainer, TrainerSettings, TrainResult, TrainState

__all__ = [
    "SCHEDULERS",
    "CheckpointError",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainerSettings",
    "build_scheduler",
    "load_checkpoint",
    "save_checkpoint",
]

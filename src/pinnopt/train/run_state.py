"""What a training run is told (:class:`TrainerSettings`), what its callbacks see after
every step (:class:`TrainState`) and what it returns (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainerSettings:
    """How long and how to train; see the module docstring."""

    steps: int = 5000
    time_limit: float | None = None  # seconds of wall time for this call of fit()
    lr: float | None = None  # first-order learning rate; None: each optimizer's default
    scheduler: str = "none"
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    clip_grad_norm: float | None = None
    amp: bool = False
    patience: int | None = None  # early stopping: steps without improvement
    min_delta: float = 0.0  # early stopping: improvement that counts
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 1000
    closure_iterations: int = 20
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        for name in ("eval_every", "log_every", "checkpoint_every", "closure_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TrainState:
    """What callbacks see after every step."""

    step: int
    stage: str
    loss: float
    elapsed: float
    trainer: Any  # the Trainer (not imported here: it imports this module)
    done: int = 1  # steps this call took (an L-BFGS call takes several)


@dataclass
class TrainResult:
    status: str  # completed | converged | time_limit | early_stopping | stopped | interrupted | nan
    steps: int
    wall_time_s: float
    final_loss: float
    loss_terms: dict[str, float]
    rel_l2: float
    max_abs_error: float
    history: list[dict[str, float | str]]
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)
    errors: dict[str, float] = field(default_factory=dict)  # all the evaluator's, per component

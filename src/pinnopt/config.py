"""Run configuration: typed sections, read from TOML, validated with one-line errors.

    [problem]   name, params, points (per-term counts), weights (per-term w_k),
                constraints ("soft" or "exact"), data (observation file), recipe (start
                from the problem's recipe when no optimizer is named)
    [model]     kind, width, depth, activation, init, degree, fourier_features, fourier_sigma
    [optim]     optimizer (name or chain), lr, scheduler, scheduler_options, clip_grad_norm,
                options (per optimizer name)
    [training]  steps, time_limit, seed, dtype, device, threads, amp, patience, min_delta,
                eval_every, log_every, checkpoint_every, networks (networks of multi-stage
                training, each with the full step and time budget)
    [sampling]  method (fixed, resample, rad, rar_d, r3), period, terms, pool, k, c, add,
                max_points: adaptive collocation
    [weighting] method (fixed, grad_norm, ntk, relobralo, sa, rba), period, alpha, terms,
                lr, gamma, temperature, expected_rho: loss balancing
    [causal]    method (none, weights), epsilon (a number or a list to anneal), slabs, period,
                delta: causal training; windows, warm_start: time marching
    [output]    out, quiet

Every field has a default, so an empty file is a valid config (``poisson2d``).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pinnopt.models import ACTIVATIONS, INITIALIZERS, MODELS
from pinnopt.problems import PROBLEMS
from pinnopt.recipes import with_recipe
from pinnopt.train.causal import METHODS as CAUSAL_METHODS
from pinnopt.train.chain import ChainOptionError, Stage, parse_chain
from pinnopt.train.sampling import METHODS as SAMPLING_METHODS
from pinnopt.train.schedulers import SCHEDULERS
from pinnopt.train.weighting import METHODS as WEIGHTING_METHODS


class ConfigError(ValueError):
    """Bad configuration; the message names the field and what is allowed."""


class Section(BaseModel):
    # strict: a TOML string "1000" is not a step count, nor true a thread count
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class ProblemConfig(Section):
    name: str = "poisson2d"
    params: dict[str, float] = Field(default_factory=dict)
    points: dict[str, int] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    # "exact": conditions the problem can impose exactly are (u = g + d·N), their terms left out
    constraints: Literal["soft", "exact"] = "soft"
    data: str = ""  # observations (CSV or NPZ) added as terms "data" / "data_<component>"
    # start from the problem's recipe (pinnopt.recipes) unless the run names an optimizer
    recipe: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PROBLEMS:
            raise ValueError(f"unknown problem {v!r}; allowed: {', '.join(sorted(PROBLEMS))}")
        return v

    @field_validator("points")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        for k, n in v.items():
            if n < 1:
                raise ValueError(f"points of term {k!r} must be >= 1, got {n}")
        return v


class ModelConfig(Section):
    kind: str = "mlp"
    width: int = Field(32, ge=1)
    depth: int = Field(2, ge=1)
    activation: str = "tanh"
    init: str = "xavier"
    degree: int = Field(5, ge=1)
    fourier_features: int = Field(0, ge=0)
    fourier_sigma: float = Field(1.0, gt=0)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return _one_of(v, MODELS, "model")

    @field_validator("activation")
    @classmethod
    def _activation(cls, v: str) -> str:
        return _one_of(v, ACTIVATIONS, "activation")

    @field_validator("init")
    @classmethod
    def _init(cls, v: str) -> str:
        return _one_of(v, INITIALIZERS, "init")


class OptimConfig(Section):
    optimizer: str = "adam:1000,lbfgs"
    lr: float | None = Field(None, gt=0)
    scheduler: str = "none"
    scheduler_options: dict[str, Any] = Field(default_factory=dict)
    clip_grad_norm: float | None = Field(None, gt=0)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _chain: list[Stage] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _parse_chain(self) -> OptimConfig:
        """The chain is parsed here, once per config; :attr:`chain` holds the result."""
        try:
            self._chain = parse_chain(self.optimizer, self.options)
        except ChainOptionError as e:
            raise ValueError(f"options: {e}") from None
        except ValueError as e:
            raise ValueError(f"optimizer: {e}") from None
        return self

    @property
    def chain(self) -> list[Stage]:
        """The optimizer chain, resolved (specs and options) when the config was validated."""
        return self._chain

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        return _one_of(v, SCHEDULERS, "scheduler")


class TrainingConfig(Section):
    steps: int = Field(5000, ge=0)
    time_limit: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    dtype: Literal["float64", "float32"] = "float64"
    device: str = "cpu"
    # CPU threads for torch; 0 keeps PyTorch's default (one per core). 1 by default: small
    # PINNs gain ~10 % from a second thread on an idle machine and lose 10x or more beside
    # a busy process (benchmarks/threads.py, docs/configuration.md)
    threads: int = Field(1, ge=0)
    amp: bool = False
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0)
    eval_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    networks: int = Field(1, ge=1)  # networks of multi-stage training (pinnopt.train.multistage)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "cpu" and not (v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())):
            raise ValueError(f"unknown device {v!r}; allowed: cpu, cuda, cuda:N")
        return v


class SamplingConfig(Section):
    """``[sampling]``: adaptive collocation (:mod:`pinnopt.train.sampling`)."""

    method: str = "fixed"
    period: int = Field(100, ge=1)
    terms: list[str] = Field(default_factory=list)
    pool: int = Field(10, ge=1)
    k: float | None = Field(None, ge=0)
    c: float | None = Field(None, ge=0)
    add: float = Field(0.1, gt=0)
    max_points: int = Field(0, ge=0)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _one_of(v, SAMPLING_METHODS, "method")


class WeightingConfig(Section):
    """``[weighting]``: loss balancing (:mod:`pinnopt.train.weighting`)."""

    method: str = "fixed"
    period: int | None = Field(None, ge=1)  # None: 1 for sa and rba, else 100
    alpha: float | None = Field(None, ge=0, lt=1, allow_inf_nan=False)  # None: per method
    terms: list[str] = Field(default_factory=list)  # sa, rba; empty: the PDE terms
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)  # sa η, rba η*; None: per method
    gamma: float = Field(0.999, ge=0, lt=1, allow_inf_nan=False)  # rba
    temperature: float = Field(0.1, gt=0, allow_inf_nan=False)  # relobralo
    expected_rho: float = Field(0.999, ge=0, le=1, allow_inf_nan=False)  # relobralo

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _one_of(v, WEIGHTING_METHODS, "method")


class CausalConfig(Section):
    """``[causal]``: causal weights (:mod:`pinnopt.train.causal`) and time marching
    (:mod:`pinnopt.train.time_marching`) of a time-dependent problem."""

    method: str = "none"  # "weights": causal weights on the PDE residual
    epsilon: float | list[float] = 1.0  # ε, or a list annealed through (min weight > delta)
    slabs: int = Field(32, ge=1)  # M time slabs
    period: int = Field(1, ge=1)  # steps between weight updates
    delta: float = Field(0.99, gt=0, le=1)  # move to the next ε when min_j w_j > delta
    windows: int = Field(1, ge=1)  # time windows; 1: no marching
    warm_start: bool = True  # window k starts from window k − 1's network

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _one_of(v, CAUSAL_METHODS, "method")

    @field_validator("epsilon", mode="before")
    @classmethod
    def _epsilon(cls, v: Any) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        ok = bool(values) and all(
            isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) and e > 0
            for e in values
        )
        if not ok:
            raise ValueError(f"must be a number > 0 or a non-empty list of them, got {v!r}")
        return [float(e) for e in v] if isinstance(v, list) else float(v)


class OutputConfig(Section):
    out: str = ""  # empty: a new runs/<problem>-N (pinnopt.solve.output_config)
    quiet: bool = False


class Config(Section):
    problem: ProblemConfig = Field(default_factory=ProblemConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    weighting: WeightingConfig = Field(default_factory=WeightingConfig)
    causal: CausalConfig = Field(default_factory=CausalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def out_dir(self) -> Path:
        """The run directory; ``pinnopt.solve.output_config`` chooses one when out is empty."""
        if not self.output.out:
            raise ConfigError("output.out: no run directory chosen yet")
        return Path(self.output.out)


# keys that were renamed: the old spelling gets an error naming the new one
RENAMED_KEYS = {"training.stages": "training.networks"}


def _one_of(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(allowed))}")
    return value


def _describe(error: ValidationError) -> str:
    """The first validation error as one line: ``field: what is wrong``."""
    e = error.errors()[0]
    field = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    sub, _, rest = msg.partition(": ")
    section = _section_of(e["loc"])
    if e["type"] == "value_error" and section is not None and sub in section.model_fields:
        return f"{field}.{sub}: {rest}"  # a section's own check, naming its field
    if e["type"] == "extra_forbidden":
        section = _section_of(e["loc"][:-1])
        new = RENAMED_KEYS.get(field)
        if new is not None:
            return f"{field}: renamed; use {new}"
        allowed = ", ".join(section.model_fields) if section else ""
        return f"{field}: unknown key; allowed: {allowed}"
    if e["type"].endswith("_type"):  # a wrong type: show what was given
        return f"{field}: {msg}, got {e['input']!r} ({type(e['input']).__name__})"
    return f"{field}: {msg}"


def _section_of(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        if not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def make_config(data: dict[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a Config; ConfigError on bad input.

    With ``[problem] recipe = true`` and no optimizer named, ``data`` goes on top of the
    problem's recipe (:func:`pinnopt.recipes.with_recipe`)."""
    try:
        return Config.model_validate(with_recipe(data))
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def load_config(
    path: str | Path,
    overrides: dict[str, dict[str, Any]] | None = None,
    base: dict[str, dict[str, Any]] | None = None,
) -> Config:
    """Read a TOML config file and apply ``overrides`` (section -> key -> value) on top;
    ``base`` holds values the file itself may override (the command line's defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    if base:
        data = merge(base, {k: v for k, v in data.items() if isinstance(v, dict)}) | {
            k: v for k, v in data.items() if not isinstance(v, dict)
        }
    return make_config(merge(data, overrides or {}))


def merge(data: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Copy of ``data`` with ``overrides`` applied section by section."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for section, values in overrides.items():
        current = out.get(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"{section}: must be a table")
        out[section] = {**current, **values}
    return out


def dump_config(config: Config) -> str:
    """The fully resolved config as TOML (fields that are None are left out)."""
    return tomli_w.dumps(config.model_dump(exclude_none=True))

"""The solve job: config → problem + model + objective → optimizers → trainer → run directory.

A run directory holds ``config.toml`` (fully resolved), ``metrics.json``,
``history.csv``, ``loss.png``, ``solution.png`` and ``checkpoint.pt``
(:mod:`pinnopt.train.run_directory`). With no ``output.out``, a run takes a new
folder ``runs/<problem>-N``; a folder that already holds a run is refused unless
``overwrite`` is given.

With ``training.networks`` N > 1 the trainer is stage 1 of multi-stage training
(:mod:`pinnopt.train.multistage`): N − 1 more networks follow, each an MLP of the
model's width and depth on Fourier features, with the full step and time budget.
The run directory holds the same files: ``metrics.json`` describes the final
composite and adds ``stages`` (one entry per network), ``history.csv`` gains a
``network`` column, and ``checkpoint.pt`` holds the composite
(:func:`load_model` rebuilds it). Such a run cannot be resumed.

With ``causal.method = "weights"`` the trainer gets a
:class:`~pinnopt.train.causal.CausalWeights` callback; with ``causal.windows`` K > 1
the run marches in time (:mod:`pinnopt.train.time_marching`): K windows, each with the
full step and time budget, in one run directory. ``metrics.json`` describes the
stitched model on the whole domain and adds ``windows`` (one entry per window),
``history.csv`` gains a ``window`` column, and ``checkpoint.pt``, written after every
window (the windows write no run files of their own), holds the stitched
:class:`~pinnopt.train.time_marching.TimeWindows` so far (:func:`load_model` rebuilds
it). Such a run cannot be resumed either. Both are checked against the problem (a time
axis, …) by :func:`check_causal` before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pinnopt.config import Config, ConfigError, dump_config, load_config
from pinnopt.evaluation import Evaluator
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.plots import plot_points
from pinnopt.problem_network import network_for
from pinnopt.problems import Problem, get_problem
from pinnopt.problems.observations import with_observations
from pinnopt.train.causal import CausalSettings, CausalWeights, interior_terms, time_axis
from pinnopt.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pinnopt.train.distributed import Sync
from pinnopt.train.multistage import MultiStageResult, NetworkSum, fit_stages, fourier_mlp
from pinnopt.train.point_weights import POINT_METHODS
from pinnopt.train.run_directory import check_fresh, clear_run, next_run_dir, write_run_files
from pinnopt.train.sampling import AdaptiveSampler, SamplingSettings
from pinnopt.train.time_marching import TimeMarching, TimeWindows
from pinnopt.train.trainer import CHECKPOINT_NAME, Trainer, TrainerSettings
from pinnopt.train.weighting import LossBalancer, WeightingSettings

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _field(name: str, fn, *args, **kwargs):
    """Call ``fn``; a ValueError becomes a ConfigError naming the config field."""
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None


def build_trainer(
    config: Config,
    out_dir: Path | None = None,
    problem: Problem | None = None,
    network: torch.nn.Module | None = None,
) -> Trainer:
    """Everything a run needs, from a validated config; ConfigError names a bad field.

    ``problem`` and ``network`` replace the configured problem and a fresh network
    (time marching trains each window's problem this way)."""
    t = config.training
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    if t.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {t.device} requested but CUDA is not available")
    device = torch.device(t.device)
    dtype = DTYPES[t.dtype]
    problem = build_problem(config) if problem is None else problem
    model = _build_model(config, problem) if network is None else network
    model = model.to(device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(t.seed)
    points = _field("problem.points", problem.sample, generator, config.problem.points)
    points = {k: v.to(device=device, dtype=dtype) for k, v in points.items()}
    sync = Sync()
    points, counts = _field("problem.points", sync.shard, points)  # this process's share
    objective = _field("problem.weights", Objective, problem, model, points,
                       config.problem.weights, counts)  # fmt: skip
    o = config.optim
    settings = _field(
        "training",
        TrainerSettings,
        steps=t.steps,
        time_limit=t.time_limit,
        lr=o.lr,
        scheduler=o.scheduler,
        scheduler_options=o.scheduler_options,
        clip_grad_norm=o.clip_grad_norm,
        amp=t.amp,
        patience=t.patience,
        min_delta=t.min_delta,
        eval_every=t.eval_every,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        quiet=config.output.quiet,
    )
    stages = o.chain  # parsed once, when the config was validated
    metadata = {"model": config.model.kind, "seed": t.seed}
    callbacks = []
    if config.sampling.method != "fixed":
        sampling = SamplingSettings(**config.sampling.model_dump(), seed=t.seed)
        callbacks.append(_field("sampling", AdaptiveSampler, objective, sampling))
    if config.weighting.method != "fixed":
        weighting = _field(
            "weighting", WeightingSettings, **config.weighting.model_dump(), seed=t.seed
        )
        callbacks.append(_field("weighting", LossBalancer, objective, weighting))
    if config.causal.method == "weights":
        callbacks.append(_field("causal.method", CausalWeights, objective, causal_settings(config)))
    trainer = _field(
        "optim", Trainer, objective, stages, settings, Evaluator(problem), out_dir, callbacks,
        metadata,
    )  # fmt: skip
    # fail now, not after training, on bad optimizer values or scheduler options
    for index, stage in enumerate(stages):
        optimizer = _field(f"optim.options.{stage.name}", trainer.build_optimizer, index)
        _field("optim.scheduler_options", trainer.build_scheduler, index, optimizer)
    return trainer


def causal_settings(config: Config) -> CausalSettings:
    """The causal-weight part of ``[causal]``."""
    c = config.causal
    return _field("causal", CausalSettings, c.epsilon, c.slabs, c.period, c.delta)


def check_causal(config: Config) -> TimeMarching | None:
    """Check ``[causal]`` against the configured problem (a time axis; for time marching
    soft constraints, no observations, one network): ConfigError naming the field.
    Called before a run directory is touched. Returns the time-marching plan, if any."""
    c = config.causal
    if c.method == "none" and c.windows == 1:
        return None
    problem = build_problem(config)
    if c.method != "none":
        causal_settings(config)
        _field("causal.method", time_axis, problem)
        if not interior_terms(problem):
            raise ConfigError(
                f"causal.method: problem {problem.name!r} has no term inside the domain to weight"
            )
        if config.weighting.method in POINT_METHODS:
            raise ConfigError(
                f"causal.method: causal weights and weighting.method = "
                f"{config.weighting.method!r} both set per-point weights; use one of them"
            )
    if c.windows == 1:
        return None
    if config.training.networks > 1:
        raise ConfigError(
            "causal.windows: time marching cannot be combined with training.networks > 1 "
            f"(got {config.training.networks}); use one of them"
        )
    return _field("causal.windows", TimeMarching, problem, c.windows)


def build_problem(config: Config) -> Problem:
    """The configured problem: its parameters, exact constraints if asked for
    (``problem.constraints = "exact"``) and observations from ``problem.data``."""
    c = config.problem
    problem = _field("problem.params", get_problem, c.name, **c.params)
    if c.constraints == "exact":
        problem = _field("problem.constraints", problem.with_exact_constraint)
    if c.data:
        problem = _field("problem.data", with_observations, problem, c.data)
    return problem


def _build_model(config: Config, problem: Problem) -> torch.nn.Module:
    """The configured network for ``problem`` (:func:`network_for` adds what it declares)."""
    m = config.model

    def build(in_dim, lower, upper) -> torch.nn.Module:
        return build_model(
            m.kind, in_dim, lower, upper, out_dim=len(problem.components), width=m.width,
            depth=m.depth, activation=m.activation, init=m.init, degree=m.degree,
            fourier_features=m.fourier_features, fourier_sigma=m.fourier_sigma,
            seed=config.training.seed,
        )  # fmt: skip

    return _field("model", network_for, problem, build)


def stage_network(config: Config, problem, index: int, frequency: float) -> torch.nn.Module:
    """Network ``index`` (2, 3, …) of a multi-stage run: the model's width and depth on
    Fourier features for ``frequency`` (:func:`pinnopt.train.multistage.fourier_mlp`)."""
    m = config.model
    return _field(
        "model",
        fourier_mlp,
        problem,
        frequency,
        m.width,
        m.depth,
        m.activation,
        m.init,
        seed=config.training.seed + index - 1,
    )


def multistage_metrics(run: MultiStageResult) -> dict[str, Any]:
    """Metrics of the final composite; ``steps`` and ``wall_time_s`` summed over the networks."""
    metrics = run.trainer.metrics(run.final)
    metrics["final_loss"] = run.stages[-1].final_loss
    metrics["loss_terms"] = run.stages[-1].loss_terms
    metrics["n_params"] = sum(p.numel() for p in run.model.parameters())
    metrics["steps"] = sum(s.result.steps for s in run.stages)
    metrics["wall_time_s"] = round(sum(s.result.wall_time_s for s in run.stages), 3)
    metrics["stages"] = [s.summary() for s in run.stages]
    return metrics


def output_config(config: Config, overwrite: bool = False) -> Config:
    """``config`` with its run directory chosen: ``output.out`` if set (refused when it
    already holds a run, unless ``overwrite``), else a new ``runs/<problem>-N``. Nothing
    is removed here: :func:`solve` replaces an old run only once the new one is built."""
    if not config.output.out:
        config = config.model_copy(deep=True)
        config.output.out = str(next_run_dir("runs", config.problem.name))
        return config
    try:
        check_fresh(config.out_dir())
    except ValueError as e:
        if not overwrite:
            raise ConfigError(f"output.out: {e} (--overwrite)") from None
    return config


def solve(config: Config, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run ``config`` and write its run directory (see :func:`output_config` for which);
    with ``resume`` continue from the checkpoint in its run directory."""
    networks = config.training.networks
    if resume and networks > 1:
        raise ConfigError(
            f"--resume: runs with training.networks > 1 cannot be resumed (this one has "
            f"{networks}); start a new run"
        )
    windows = config.causal.windows
    if resume and windows > 1:
        raise ConfigError(
            f"--resume: time-marching runs (causal.windows > 1) cannot be resumed (this one has "
            f"{windows}); start a new run"
        )
    marching = check_causal(config)  # before the run directory is touched
    sync = Sync()  # several processes (torchrun): rank 0 picks the folder and writes the files
    if not resume:
        config = on_main(sync, output_config, config, overwrite)
    out = config.out_dir()
    if marching is None:
        trainer = build_trainer(config, out)
    else:  # windows write no run files of their own: the march writes one set at the end
        trainer = build_trainer(config, None, marching.window(0))
    if resume:
        trainer.load_state_dict(load_checkpoint(out / CHECKPOINT_NAME))
        if trainer.finished:
            raise ConfigError(
                f"training.steps: the run in {out} already did {trainer.step} steps and "
                f"{'converged' if trainer.converged else 'used its budget'}; nothing would run "
                f"(give more --steps than {trainer.step} to continue)"
            )
    if sync.is_main:
        if overwrite and not resume:  # the new run is built: only now may the old one go
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(dump_config(config))
    if marching is not None:

        def saved(model: torch.nn.Module) -> None:  # the stitched model after each window
            if sync.is_main:
                save_checkpoint(out / CHECKPOINT_NAME, {"model": model.state_dict()})

        march = marching.run(
            trainer, lambda p, net: build_trainer(config, None, p, net),
            lambda: _build_model(config, marching.problem), config.causal.warm_start, saved,
        )  # fmt: skip
        metrics, trainer = march.metrics(), march.trainer
        if sync.is_main:
            write_run_files(out, metrics, march.history, march.model, marching.problem)
    elif networks > 1:
        problem = trainer.objective.problem
        run = fit_stages(trainer, networks, lambda k, f: stage_network(config, problem, k, f))
        metrics = multistage_metrics(run)
        if sync.is_main:
            write_run_files(out, metrics, run.history, run.trainer.model, problem)
    else:
        metrics = trainer.metrics(trainer.fit())  # fit() wrote the run directory
    if config.sampling.method != "fixed" and sync.is_main:
        plot_points(trainer.objective.points, trainer.objective.problem, out / "points.png")
    return metrics


def on_main(sync: Sync, fn, *args):
    """``fn(*args)`` on rank 0, its result (or its ConfigError) handed to every rank."""
    outcome = None
    if sync.is_main:
        try:
            outcome = fn(*args)
        except ConfigError as e:
            outcome = e
    outcome = sync.broadcast(outcome)
    if isinstance(outcome, ConfigError):
        raise outcome
    return outcome


def load_model(run_dir: str | Path) -> torch.nn.Module:
    """The trained model of a run directory (its config.toml and checkpoint.pt), in eval mode.

    A multi-stage run gives its :class:`~pinnopt.train.multistage.NetworkSum`
    with as many networks as the checkpoint holds.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.toml")
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)["model"]
    problem = build_problem(config)
    model = _build_model(config, problem)
    if "boundaries" in state:  # TimeWindows of a time-marching run: networks.k.…, boundaries
        parts = [model] + [_build_model(config, problem) for _ in state["boundaries"]]
        model = TimeWindows(parts, state["boundaries"].tolist(), problem.time_axis)
    elif "scales" in state:  # a NetworkSum: networks.0.…, networks.1.…, scales
        count = len(state["scales"])
        parts = [model] + [stage_network(config, problem, k, 1.0) for k in range(2, count + 1)]
        model = NetworkSum(parts, [1.0] * count)
    model = model.to(dtype=DTYPES[config.training.dtype])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint does not match the model: {e}") from None
    return model.eval()


def resume_config(run_dir: str | Path, overrides: dict[str, dict[str, Any]]) -> Config:
    """The config of an earlier run, with ``overrides``, writing back to the same directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: no run directory {run_dir}")
    overrides = {**overrides, "output": {**overrides.get("output", {}), "out": str(run_dir)}}
    return load_config(run_dir / "config.toml", overrides)

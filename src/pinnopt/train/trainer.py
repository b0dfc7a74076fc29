"""The training loop: a chain of optimizers over one objective.

The trainer knows the objective contract and the optimizer registry, nothing
else: ``adam:2000,lbfgs`` runs Adam for 2000 steps, then L-BFGS for the rest of
the step budget. First-order stages get gradient clipping, AMP and a learning
rate schedule; closure optimizers get a closure: one that re-evaluates the loss
(L-BFGS) or one that returns the residual vector and its Jacobian (Gauss–Newton,
:class:`~pinnopt.objective.ResidualClosure`). A step is one optimizer iteration;
L-BFGS runs ``closure_iterations`` iterations per call and the trainer counts
each; a closure stage ends early when the optimizer stops short of its
iterations (its own tolerances are met) or the loss no longer decreases.

Stops: step budget, wall-clock budget, early stopping, a converged closure
optimizer, a callback asking to stop, Ctrl-C or SIGTERM, or a non-finite loss.
On a non-finite loss the model is put back to the last parameters with a finite
loss and the last good checkpoint on disk is left untouched. Ctrl-C or SIGTERM
stops the run at the next step boundary (:mod:`pinnopt.train.interrupts`), with
status ``interrupted``: the checkpoint is written there, so ``--resume`` goes on
as if nothing had happened. A second signal stops at once and leaves the last
checkpoint on disk as it was.

With an ``out_dir``, :meth:`Trainer.fit` leaves a whole run directory there
(:mod:`pinnopt.train.run_directory`): a checkpoint before the first step and
then periodically, and at the end history.csv, loss.png, solution.png and
metrics.json, whatever the status.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import Tensor

from pinnopt.evaluation import Evaluator
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim.registry import build_optimizer
from pinnopt.train.chain import Stage, chain_text, stage_bounds
from pinnopt.train.checkpoint import CheckpointError, callback_state, save_checkpoint
from pinnopt.train.distributed import Sync, check_stages
from pinnopt.train.interrupts import StopRequest, signal_name
from pinnopt.train.run_directory import write_run_files
from pinnopt.train.run_state import TrainerSettings, TrainResult, TrainState
from pinnopt.train.schedulers import build_scheduler, scheduler_step

CHECKPOINT_NAME = "checkpoint.pt"


class Trainer:
    """Runs a chain of optimizers on an objective; writes checkpoints to ``out_dir``."""

    def __init__(
        self,
        objective: Objective,
        stages: list[Stage],
        settings: TrainerSettings | None = None,
        evaluator: Evaluator | None = None,
        out_dir: str | Path | None = None,
        callbacks: list[Callable[[TrainState], bool | None]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """``metadata`` adds entries to the run's metrics.json (e.g. the model kind, seed)."""
        if not stages:
            raise ValueError("at least one optimizer stage is needed")
        self.objective = objective
        self.model = objective.model
        self.stages = stages
        self.settings = settings or TrainerSettings()
        self.evaluator = evaluator
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = callbacks or []
        self.metadata = dict(metadata or {})
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.sync = Sync()  # the other processes of this solve, if torchrun started several
        if self.sync.active:
            check_stages(stages)
        self.device = self.params[0].device
        self.dtype = self.params[0].dtype
        s = self.settings
        if s.amp and self.dtype != torch.float32:
            raise ValueError("amp needs dtype float32 (float64 runs are not autocast)")
        for stage in stages:
            if s.amp and stage.spec.closure:
                raise ValueError(f"amp is not supported with closure optimizer {stage.optimizer}")
        self.bounds = stage_bounds(stages, s.steps)
        # progress of the run, all saved in checkpoints
        self.step = 0
        self.stage_index = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float | str]] = []
        self.log_values: dict[str, float] = {}  # the next history row takes these (sampling)
        self.best_loss = math.inf
        self.bad_steps = 0
        self.prev_loss = math.inf
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=s.amp and self.device.type == "cuda")
        self._pending_state: dict[str, Any] | None = None
        self._good = [p.detach().clone() for p in self.params]
        self._checkpoint_due = False
        self._closure_converged = False
        objective.subscribe(self._objective_changed)
        unreached = self.unreached_stages()
        if unreached:
            names = ", ".join(st.optimizer for st in unreached)
            warnings.warn(
                f"the step budget of {s.steps} steps ends before stage(s) {names} of the chain "
                f"{chain_text(stages)}: they will not run (raise steps to reach them)",
                stacklevel=2,
            )
        given = {"lr": s.lr, "scheduler": s.scheduler}
        unused = [k for k, v in given.items() if v not in (None, "none")]
        if unused and all(st.spec.closure for st in stages):  # only first-order stages use them
            warnings.warn(
                f"{' and '.join(unused)} set, but the chain {chain_text(stages)} has no "
                "first-order stage to use it: L-BFGS, gn and kfac set their own step",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ building

    def _current_stage(self) -> Stage:
        return self.stages[self.stage_index]

    @property
    def converged(self) -> bool:
        """Every stage has ended (the last one's optimizer stopped moving)."""
        return self.stage_index >= len(self.stages)

    @property
    def finished(self) -> bool:
        """Nothing is left to do: converged, or the step budget is spent."""
        return self.converged or self.step >= self.settings.steps

    def unreached_stages(self) -> list[Stage]:
        """The stages that the step budget never reaches (it ends in an earlier stage)."""
        total = self.settings.steps
        return [st for st, (start, _) in zip(self.stages, self.bounds) if start >= total > 0]

    def build_optimizer(self, index: int) -> torch.optim.Optimizer:
        """A fresh optimizer of chain stage ``index``; ValueError on bad options."""
        stage = self.stages[index]
        lr = None if stage.spec.closure else self.settings.lr
        return build_optimizer(stage.optimizer, self.params, lr, self.model, **stage.options)

    def build_scheduler(self, index: int, optimizer: torch.optim.Optimizer) -> Any:
        """The lr schedule of chain stage ``index`` over ``optimizer``: None for closure
        optimizers; ValueError on bad scheduler options."""
        if self.stages[index].spec.closure:
            return None
        start, end = self.bounds[index]
        s = self.settings
        return build_scheduler(s.scheduler, optimizer, max(end - start, 1), **s.scheduler_options)

    def build_stage(self, index: int) -> tuple[torch.optim.Optimizer, Any]:
        """A fresh optimizer and scheduler (None for closure optimizers) of chain stage
        ``index``, as the trainer runs it; ValueError on bad options."""
        optimizer = self.build_optimizer(index)
        return optimizer, self.build_scheduler(index, optimizer)

    def _build_stage(self) -> None:
        self.optimizer, self.scheduler = self.build_stage(self.stage_index)
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])

    def _objective_changed(self, what: str) -> None:
        """The points or weights changed (:meth:`Objective.subscribe`): the optimizer in
        charge decides what of its state to keep (``objective_changed(what)``, when it has
        one), and a closure stage does not end because the new loss is above the old."""
        if self.optimizer is not None and hasattr(self.optimizer, "objective_changed"):
            self.optimizer.objective_changed(what)
        self.prev_loss = math.inf

    def _autocast(self):
        if not self.settings.amp:
            return contextlib.nullcontext()
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    # ------------------------------------------------------------------ steps

    def _first_order_step(self) -> tuple[float, dict[str, float], int]:
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss, parts = self.objective.loss_terms()
        total, parts = self.sync.losses(loss, parts)  # this shard's part, summed over ranks
        value = float(total.detach())
        if not math.isfinite(value):
            return value, {}, 0
        self._on_finite_loss()
        self.scaler.scale(loss).backward()
        self.sync.gradients(self.params)
        if self.settings.clip_grad_norm is not None:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.params, self.settings.clip_grad_norm)
        self.scaler.step(opt)
        self.scaler.update()
        scheduler_step(self.scheduler, value)
        return value, {k: v.detach() for k, v in parts.items()}, 1

    def _closure_step(self, end: int) -> tuple[float, dict[str, Tensor], int]:
        """One ``step(closure)`` call: L-BFGS iterations (``loss``) or one Gauss–Newton step.

        The closure's first evaluation is the step's starting point: its loss is the
        one reported, and once seen finite the parameters are remembered (and a due
        checkpoint written) before the optimizer moves them.
        """
        opt = self.optimizer
        kind = self._current_stage().spec.closure
        first: dict[str, Any] = {}

        def observe(loss: Tensor, parts: dict[str, Tensor]) -> None:
            if first:
                return
            first.update(loss=float(loss), parts={k: v.detach() for k, v in parts.items()})
            if math.isfinite(first["loss"]):
                self._on_finite_loss()

        if kind == "residuals":
            objective = self.objective

            def seen(r: Tensor) -> None:  # r is this process's share of the residual
                observe(*self.sync.losses(objective.loss_of(r), objective.term_losses(r)))

            closure = ResidualClosure(objective, seen)
            opt.step(self.sync.residual_closure(closure, opt))
            done, self._closure_converged = 1, False
        else:
            start = self.bounds[self.stage_index][0]
            offset = (self.step - start) % self.settings.closure_iterations
            chunk = min(self.settings.closure_iterations - offset, end - self.step)

            def closure() -> Tensor:
                opt.zero_grad(set_to_none=True)
                loss, parts = self.objective.loss_terms()
                total, parts = self.sync.losses(loss, parts)
                observe(total.detach(), parts)
                loss.backward()
                self.sync.gradients(self.params)
                return total  # ``loss`` itself in a single process

            opt.step(closure, max_iter=chunk)  # a "loss" optimizer's contract (LBFGS)
            done = opt.iterations
            # fewer iterations than asked: the optimizer met its own tolerances
            self._closure_converged = done < chunk
        value = first.get("loss", math.nan)
        if not math.isfinite(value):
            return value, {}, 0
        return value, first["parts"], done

    def _remember_good(self) -> None:
        with torch.no_grad():
            for g, p in zip(self._good, self.params):
                g.copy_(p)

    def _on_finite_loss(self) -> None:
        """The parameters have a finite loss: remember them and checkpoint if one is due.

        Checkpointing here, before the update, means a checkpoint never holds
        parameters whose loss was not seen to be finite.
        """
        self._remember_good()
        if self._checkpoint_due:
            self._checkpoint_due = False
            self.save()

    def _restore_good(self) -> None:
        with torch.no_grad():
            for g, p in zip(self._good, self.params):
                p.copy_(g)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The run so far. On several processes the points (and point weights) are the
        global ones, gathered from every rank: call it on all ranks together."""
        gather = self.sync.gather_rows
        # a resumed stage whose optimizer is not built yet still has its state to keep
        pending = self._pending_state or {"optimizer": None, "scheduler": None}
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else pending["optimizer"],
            "scheduler": self.scheduler.state_dict() if self.scheduler else pending["scheduler"],
            "scaler": self.scaler.state_dict(),
            "points": {k: gather(v.detach()).cpu() for k, v in self.objective.points.items()},
            "weights": dict(self.objective.weights),
            "point_weights": {k: gather(v).cpu() for k, v in self.objective.point_weights.items()},
            "callbacks": [callback_state(cb) for cb in self.callbacks],
            "stages": [(s.optimizer, s.steps) for s in self.stages],
            "step": self.step,
            "stage_index": self.stage_index,
            "elapsed": self.elapsed,
            "history": self.history,
            "best_loss": self.best_loss,
            "bad_steps": self.bad_steps,
            "prev_loss": self.prev_loss,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same configuration."""
        stages = [tuple(s) for s in state.get("stages", [])]
        if stages != [(s.optimizer, s.steps) for s in self.stages]:
            raise CheckpointError(f"checkpoint was written by optimizer chain {stages}")
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"checkpoint does not match the model: {e}") from None
        points = {k: v.to(device=self.device, dtype=self.dtype) for k, v in state["points"].items()}
        self.objective.set_points(*self.sync.shard(points))  # this rank's share of them
        self.objective.set_weights(state.get("weights", {}))
        point_weights = state.get("point_weights", {})  # global, like the points
        self.objective.set_point_weights(
            {k: self.sync.shard_rows(v) for k, v in point_weights.items()}
        )
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", [])):
            if cb_state is not None:
                cb.load_state_dict(cb_state)
        self.step = int(state["step"])
        self.stage_index = int(state["stage_index"])
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        self.best_loss = float(state["best_loss"])
        self.bad_steps = int(state["bad_steps"])
        self.prev_loss = float(state["prev_loss"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.optimizer = None
        if state["optimizer"] is not None:
            self._pending_state = {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}
        self._remember_good()

    def save(self) -> None:
        if self.out_dir is not None:
            state = self.state_dict()  # on every rank: it gathers the points
            if self.sync.is_main:
                save_checkpoint(self.out_dir / CHECKPOINT_NAME, state)

    # ------------------------------------------------------------------ loop

    def _log(self, loss: float, parts: dict[str, Tensor], errors: dict[str, float] | None) -> None:
        """One history row; the per-term losses become floats only here, not every step."""
        row: dict[str, float | str] = {
            "step": self.step,
            "time": round(self.elapsed, 4),
            "stage": self._current_stage().optimizer,
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": loss,
        }
        row.update({f"loss_{k}": float(v) for k, v in parts.items()})
        row.update(errors or {})
        row.update(self.log_values)
        self.log_values = {}
        self.history.append(row)

    def _early_stop(self, loss: float) -> bool:
        if self.settings.patience is None:
            return False
        if loss < self.best_loss - self.settings.min_delta:
            self.best_loss, self.bad_steps = loss, 0
        else:
            self.bad_steps += 1
        return self.bad_steps >= self.settings.patience

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3e}"),
            TimeElapsedColumn(),
            disable=self.settings.quiet or not self.sync.is_main,
            transient=False,
        )

    def fit(self) -> TrainResult:
        """Train until a stop condition; returns the final errors and the history.

        With an ``out_dir``, the run directory is written (see the module docstring).
        After a Ctrl-C or SIGTERM the run is saved first; then, unless the caller listens
        for stops itself (an enclosing :class:`~pinnopt.train.interrupts.StopRequest`, as
        the command line has), the signal takes its usual course: ``KeyboardInterrupt``
        for Ctrl-C, the end of the process for SIGTERM.
        """
        request = StopRequest()
        with request as stop:
            status, forced = self._loop(stop)
            if forced:  # the step it cut short may have moved some parameters only
                self._restore_good()
            loss, parts = self._final_loss()
            if not math.isfinite(loss):
                self._restore_good()
                status = "nan"
                loss, parts = self._final_loss()
            if status != "nan" and not forced:  # a forced stop may be mid-step: keep the last
                self.save()
            result = self._result(status, loss, parts)
            if status == "interrupted":
                result.signal = stop.signum
            if self.out_dir is not None and self.sync.is_main:
                self.write_run(result)
        if stop is request:  # nobody above this run handles the stop: hand the signal on
            request.pass_on()
        return result

    def _loop(self, stop: StopRequest) -> tuple[str, bool]:
        """The steps of :meth:`fit`: (status, whether a second signal cut a step short)."""
        s = self.settings
        status = "completed"
        start = time.perf_counter()
        elapsed0 = self.elapsed
        next_log, next_eval = self.step, self.step
        last_ckpt = self.step // s.checkpoint_every
        if self.step == 0 and self._pending_state is None:
            self.save()  # a run killed before its first periodic checkpoint can still resume
        with self._progress() as progress:
            task = progress.add_task("train", total=s.steps, completed=self.step, loss=math.nan)
            try:
                while self.stage_index < len(self.stages) and status == "completed":
                    stage_start, end = self.bounds[self.stage_index]
                    self.step = max(self.step, stage_start)
                    if self.optimizer is None and self.step < end:
                        self._build_stage()
                    name = self._current_stage().optimizer
                    closure = self._current_stage().spec.closure
                    stage_done = False
                    while self.step < end:
                        over_time = (
                            s.time_limit is not None and time.perf_counter() - start >= s.time_limit
                        )
                        # agreed by all ranks: none may stop alone and leave the others waiting
                        interrupted, over_time = self.sync.agree([stop.requested, over_time])
                        if interrupted:  # Ctrl-C or SIGTERM: stop between two steps
                            status = "interrupted"
                            break
                        if over_time:
                            status = "time_limit"
                            break
                        # errors are measured at the parameters the step starts from
                        errors = None
                        if self.evaluator is not None and self.step >= next_eval:
                            errors = self.evaluator(self.model)
                            next_eval = (self.step // s.eval_every + 1) * s.eval_every
                        if closure:
                            loss, parts, done = self._closure_step(end)
                        else:
                            loss, parts, done = self._first_order_step()
                        self.elapsed = elapsed0 + time.perf_counter() - start
                        if not math.isfinite(loss):
                            self._restore_good()
                            status = "nan"
                            break
                        if errors is not None or self.step >= next_log:
                            self._log(loss, parts, errors)
                            next_log = (self.step // s.log_every + 1) * s.log_every
                        stage_done = closure and (self._closure_converged or loss >= self.prev_loss)
                        self.prev_loss = loss
                        self.step += max(done, 1)
                        progress.update(task, completed=self.step, loss=loss, description=name)
                        if self.step // s.checkpoint_every > last_ckpt:
                            last_ckpt = self.step // s.checkpoint_every
                            self._checkpoint_due = True  # written once the loss is seen finite
                        state = TrainState(self.step, name, loss, self.elapsed, self, max(done, 1))
                        if any([bool(cb(state)) for cb in self.callbacks]):
                            status = "stopped"
                            break
                        if self._early_stop(loss):
                            status = "early_stopping"
                            break
                        if stage_done:  # a closure optimizer that no longer moves
                            break
                    if status != "completed" or not (stage_done or self.step >= end):
                        continue
                    if not stage_done and (
                        self.stage_index == len(self.stages) - 1 or self.step >= s.steps
                    ):
                        # budget spent (in the last stage or before its end): keep the
                        # stage's state, so a resume with a larger --steps continues it
                        break
                    self.stage_index += 1
                    self.optimizer, self.scheduler = None, None
                    self._pending_state = None  # it belonged to the finished stage
                    self.prev_loss = math.inf
                    if stage_done and self.stage_index == len(self.stages):
                        status = "converged"
            except KeyboardInterrupt:  # a second signal: stop now, whatever the step was doing
                status = "forced"
        self.elapsed = elapsed0 + time.perf_counter() - start
        if status == "forced":
            return "interrupted", True
        return status, False

    # ------------------------------------------------------------------ run directory

    def metrics(self, result: TrainResult) -> dict[str, Any]:
        """What metrics.json says of ``result``, with the trainer's ``metadata`` added."""
        metrics = {
            "problem": self.objective.problem.name,
            "optimizer": chain_text(self.stages),
            "n_params": sum(p.numel() for p in self.params),
            "dtype": str(self.dtype).removeprefix("torch."),
            **self.metadata,
            "status": result.status,
            "steps": result.steps,
            "wall_time_s": round(result.wall_time_s, 3),
            "final_loss": result.final_loss,
            "loss_terms": result.loss_terms,
            "rel_l2": result.rel_l2,
            "max_abs_error": result.max_abs_error,
            **{k: v for k, v in result.errors.items() if k not in ("rel_l2", "max_abs_error")},
        }
        if result.signal is not None:
            metrics["signal"] = signal_name(result.signal)
        return metrics

    def write_run(self, result: TrainResult, out_dir: str | Path | None = None) -> Path:
        """Write history.csv, loss.png, solution.png and metrics.json of ``result`` to
        ``out_dir`` (default: the trainer's); returns the folder."""
        out = Path(out_dir) if out_dir is not None else self.out_dir
        if out is None:
            raise ValueError("write_run needs an out_dir (the trainer has none)")
        write_run_files(
            out, self.metrics(result), result.history, self.model, self.objective.problem
        )
        return out

    def _final_loss(self) -> tuple[float, dict[str, float]]:
        loss, parts = self.sync.losses(*self.objective.loss_terms())
        return float(loss.detach()), {k: float(v.detach()) for k, v in parts.items()}

    def _result(self, status: str, loss: float, parts: dict[str, float]) -> TrainResult:
        errors = self.evaluator(self.model) if self.evaluator else {}
        if status != "nan" and (not self.history or self.history[-1]["step"] != self.step):
            row = {"step": self.step, "time": round(self.elapsed, 4), "loss": loss}
            row["stage"] = self.stages[min(self.stage_index, len(self.stages) - 1)].optimizer
            row.update({f"loss_{k}": v for k, v in parts.items()})
            self.history.append({**row, **errors, **self.log_values})
            self.log_values = {}
        return TrainResult(
            status=status,
            steps=self.step,
            wall_time_s=self.elapsed,
            final_loss=loss,
            loss_terms=parts,
            rel_l2=errors.get("rel_l2", math.nan),
            max_abs_error=errors.get("max_abs_error", math.nan),
            history=self.history,
            errors=errors,
        )

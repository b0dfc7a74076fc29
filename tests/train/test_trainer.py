import copy
import math

import pytest
import torch

from pinnopt.config import make_config
from pinnopt.derivatives import Jet
from pinnopt.evaluation import Evaluator
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term, get_problem
from pinnopt.solve import build_trainer
from pinnopt.train import Trainer, TrainerSettings, load_checkpoint
from pinnopt.train.chain import parse_chain
from pinnopt.train.trainer import CHECKPOINT_NAME, stage_bounds


def small_config(out, chain="adam:30,lbfgs", steps=100, **training):
    return make_config(
        {
            "problem": {"name": "poisson1d", "points": {"pde": 64}},
            "model": {"width": 8},
            "optim": {"optimizer": chain, "lr": 1e-2, "scheduler": "cosine"},
            "training": {"steps": steps, "checkpoint_every": 10, "eval_every": 25, **training},
            "output": {"out": str(out), "quiet": True},
        }
    )


def params_of(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.params])


def test_stage_bounds():
    stages = parse_chain("adam:30,lbfgs:50,sgd")
    assert stage_bounds(stages, 100) == [(0, 30), (30, 80), (80, 100)]
    assert stage_bounds(stages, 40) == [(0, 30), (30, 40), (40, 40)]


def test_adam_then_lbfgs_reduces_loss_and_records_stages(tmp_path):
    trainer = build_trainer(small_config(tmp_path), tmp_path)
    first = float(trainer.objective.loss().detach())
    result = trainer.fit()
    assert result.status == "completed"
    assert result.steps == 100
    assert result.final_loss < 1e-3 * first
    stages = [row["stage"] for row in result.history]
    assert stages[0] == "adam" and stages[-1] == "lbfgs"
    assert {row["step"] for row in result.history if row["stage"] == "adam"} <= set(range(30))
    assert math.isfinite(result.rel_l2) and result.rel_l2 < 0.05
    assert any("rel_l2" in row for row in result.history[:-1])
    assert (tmp_path / CHECKPOINT_NAME).is_file()


@pytest.mark.parametrize(("chain", "stop_at"), [("adam:30,lbfgs", 20), ("adam:30,lbfgs", 40),
                                                 ("adam:50,lbfgs:30,adam", 80),
                                                 ("adam:20,gn", 50), ("adam:20,kfac", 50),
                                                 ("kfac:30,adam", 40)])  # fmt: skip
def test_resume_repeats_uninterrupted_run_bit_for_bit(tmp_path, chain, stop_at):
    full = build_trainer(small_config(tmp_path / "a", chain), tmp_path / "a")
    ra = full.fit()
    part = build_trainer(small_config(tmp_path / "b", chain), tmp_path / "b")
    part.callbacks.append(lambda state: state.step >= stop_at)
    assert part.fit().status == "stopped"
    resumed = build_trainer(small_config(tmp_path / "b", chain), tmp_path / "b")
    resumed.load_state_dict(load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME))
    rb = resumed.fit()
    assert rb.steps == ra.steps == 100
    assert torch.equal(params_of(full), params_of(resumed))
    assert rb.final_loss == ra.final_loss
    assert [r["loss"] for r in rb.history] == [r["loss"] for r in ra.history]


def test_time_limit_stops_and_can_resume(tmp_path):
    trainer = build_trainer(small_config(tmp_path, "adam", steps=10**6, time_limit=0.5), tmp_path)
    result = trainer.fit()
    assert result.status == "time_limit"
    assert 0 < result.steps < 10**6
    assert result.wall_time_s < 5
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["step"] == result.steps


def test_early_stopping_with_patience(tmp_path):
    # lr 0: the loss never improves, so patience runs out exactly
    cfg = small_config(tmp_path, "sgd", steps=1000, patience=7)
    cfg.optim.lr = 1e-300
    result = build_trainer(cfg, tmp_path).fit()
    assert result.status == "early_stopping"
    assert result.steps == 8  # the first step sets the best loss, 7 more without improvement


def _constant_problem(nan_above: float = math.inf) -> Problem:
    """Fit u = 5; the residual is NaN wherever |u| exceeds ``nan_above``."""
    box = Box([0.0], [1.0])

    def target(u: Jet, x: torch.Tensor) -> torch.Tensor:
        r = u.u - 5.0
        return torch.where(u.u.abs().max() > nan_above, torch.full_like(r, math.nan), r)

    return Problem("blowup", box, [Term("data", box.interior, target, order=0, n=16)],
                   exact=lambda x: torch.full((len(x),), 5.0, dtype=x.dtype))  # fmt: skip


def _constant_trainer(chain, nan_above=math.inf, out_dir=None, **settings):
    problem = _constant_problem(nan_above)
    model = build_model("mlp", 1, [0.0], [1.0], width=4, depth=1)
    points = problem.sample(torch.Generator().manual_seed(0))
    settings = TrainerSettings(quiet=True, **settings)
    return Trainer(Objective(problem, model, points), parse_chain(chain), settings, out_dir=out_dir)


def test_lbfgs_that_meets_its_tolerances_ends_the_run_converged():
    result = _constant_trainer("lbfgs", steps=100000).fit()
    assert result.status == "converged"
    assert result.steps < 1000
    assert result.final_loss < 1e-20


def test_gauss_newton_that_no_longer_moves_ends_the_run_converged():
    result = _constant_trainer("gn", steps=100000).fit()
    assert result.status == "converged"
    assert result.steps < 1000
    assert result.final_loss < 1e-20
    assert [row["stage"] for row in result.history] == ["gn"] * len(result.history)


def test_gauss_newton_stage_reaches_high_accuracy_and_logs_terms(tmp_path):
    result = build_trainer(small_config(tmp_path, "adam:10,gn", steps=200), tmp_path).fit()
    assert result.rel_l2 < 1e-5
    gn_rows = [row for row in result.history if row["stage"] == "gn"]
    assert gn_rows and all("loss_pde" in row and "loss_bc" in row for row in gn_rows)
    row = gn_rows[0]
    assert row["loss"] == pytest.approx(row["loss_pde"] + row["loss_bc"], rel=1e-12)


def test_nan_guard_restores_last_good_parameters_and_keeps_checkpoint(tmp_path):
    # plain SGD with a large lr overshoots u = 5, and |u| > 20 makes the residual NaN
    trainer = _constant_trainer("sgd", 20.0, tmp_path, steps=1000, lr=2.0, checkpoint_every=1)
    objective, model = trainer.objective, trainer.model
    result = trainer.fit()
    assert result.status == "nan"
    assert result.steps < 1000
    assert math.isfinite(result.final_loss)
    assert torch.isfinite(params_of(trainer)).all()
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    model.load_state_dict(saved["model"])
    assert math.isfinite(float(objective.loss().detach()))


def test_gradient_clipping_bounds_the_update(tmp_path):
    cfg = small_config(tmp_path, "sgd", steps=1)
    cfg.optim.lr = 1.0
    cfg.optim.clip_grad_norm = 1e-3
    cfg.optim.scheduler = "none"
    trainer = build_trainer(cfg, tmp_path)
    before = params_of(trainer).clone()
    trainer.fit()
    assert float((params_of(trainer) - before).norm()) == pytest.approx(1e-3, rel=1e-6)


def test_amp_on_cpu_runs_bfloat16_autocast(tmp_path):
    cfg = small_config(tmp_path, "adam", steps=20, dtype="float32", amp=True)
    result = build_trainer(cfg, tmp_path).fit()
    assert result.status == "completed" and math.isfinite(result.final_loss)


def test_amp_needs_float32_and_first_order(tmp_path):
    with pytest.raises(ValueError, match="amp needs dtype float32"):
        build_trainer(small_config(tmp_path, "adam", amp=True), tmp_path)
    with pytest.raises(ValueError, match="amp is not supported with closure optimizer lbfgs"):
        build_trainer(small_config(tmp_path, "adam:5,lbfgs", dtype="float32", amp=True), tmp_path)


def test_settings_validation_names_the_field():
    with pytest.raises(ValueError, match="steps must be >= 0"):
        TrainerSettings(steps=-1)
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        TrainerSettings(time_limit=0)
    with pytest.raises(ValueError, match="clip_grad_norm must be > 0"):
        TrainerSettings(clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="eval_every must be >= 1"):
        TrainerSettings(eval_every=0)


def test_trainer_in_python_with_user_problem():
    problem = get_problem("poisson1d")
    torch.manual_seed(0)
    model = build_model("chebykan", 1, [0.0], [1.0], width=4, depth=1, degree=4).double()
    points = {k: v.double() for k, v in problem.sample(torch.Generator().manual_seed(1)).items()}
    trainer = Trainer(
        Objective(problem, model, points),
        parse_chain("lbfgs"),
        TrainerSettings(steps=400, quiet=True),
        Evaluator(problem),
    )
    result = trainer.fit()
    assert result.rel_l2 < 1e-3


def test_trainer_with_out_dir_writes_the_run_directory_a_cli_run_writes(tmp_path):
    import json

    problem = get_problem("poisson1d")
    trainer = Trainer(
        tiny_objective(problem),
        parse_chain("adam"),
        TrainerSettings(steps=5, quiet=True),
        Evaluator(problem),
        out_dir=tmp_path / "run",
        metadata={"note": "from a script"},
    )
    result = trainer.fit()
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"checkpoint.pt", "metrics.json", "history.csv", "loss.png", "solution.png"}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["problem"] == "poisson1d" and metrics["optimizer"] == "adam"
    assert metrics["steps"] == 5 and metrics["rel_l2"] == result.rel_l2
    assert metrics["note"] == "from a script" and metrics["status"] == "completed"


def test_python_and_cli_share_one_eval_every_default():
    from pinnopt.config import TrainingConfig

    assert TrainerSettings().eval_every == TrainingConfig().eval_every == 100


def test_options_for_an_optimizer_outside_the_chain_are_refused():
    options = {"lbfgs": {"history_size": 3}}
    with pytest.raises(ValueError, match="options for lbfgs, which the chain adam:2,gn does not"):
        parse_chain("adam:2,gn", options)
    stages = parse_chain("adam:2,gn", {"gn": {"solver": "cg"}})
    trainer = Trainer(tiny_objective(get_problem("poisson1d")), stages, TrainerSettings(steps=5))
    assert trainer.build_optimizer(1).param_groups[0]["solver"] == "cg"  # it reaches gn


def tiny_objective(problem):
    model = build_model("mlp", 1, [0.0], [1.0], width=4, depth=1).double()
    points = {k: v.double() for k, v in problem.sample(torch.Generator().manual_seed(1)).items()}
    return Objective(problem, model, points)


@pytest.mark.parametrize("chain", ["lbfgs", "adam:5,lbfgs"])
def test_new_points_mid_run_reach_the_optimizer_once_and_lbfgs_goes_on(chain, monkeypatch):
    from pinnopt.optim.lbfgs import LBFGS

    calls: list[tuple[str, dict]] = []
    original = LBFGS.objective_changed

    def spy(self, what):
        original(self, what)
        calls.append((what, dict(self.state[self._params[0]])))

    monkeypatch.setattr(LBFGS, "objective_changed", spy)
    problem = get_problem("poisson1d")
    objective = tiny_objective(problem)
    settings = TrainerSettings(steps=200, closure_iterations=10, quiet=True)
    trainer = Trainer(objective, parse_chain(chain), settings)
    fresh = {k: v.double() for k, v in problem.sample(torch.Generator().manual_seed(7)).items()}
    changed: dict[str, float] = {}

    def resample(state):
        if not changed and state.step >= 40:
            trainer.objective.set_points(fresh)
            changed.update(step=state.step, loss=float(trainer.objective.loss().detach()))

    trainer.callbacks.append(resample)
    result = trainer.fit()
    assert [what for what, _ in calls] == ["points"]  # once, to the L-BFGS in charge
    ((_, state_after),) = calls
    assert set(state_after) == {"loss_scale"}  # history dropped, loss scale kept
    assert trainer.objective.points["pde"] is fresh["pde"]
    # the run goes on over the new points: more steps, and the loss falls well below the
    # new objective's loss at the change
    assert result.status in ("completed", "converged") and result.steps > changed["step"]
    assert math.isfinite(result.final_loss) and result.final_loss < 1e-2 * changed["loss"]
    assert any(row["step"] > changed["step"] for row in result.history)


def test_first_order_optimizers_keep_their_state_on_a_change():
    trainer = Trainer(
        tiny_objective(get_problem("poisson1d")),
        parse_chain("adam"),
        TrainerSettings(steps=6, quiet=True),
    )
    seen = {}

    def reweigh(state):
        if state.step == 3:
            seen["before"] = copy.deepcopy(trainer.optimizer.state_dict())
            trainer.objective.set_weights({"bc": 10.0})
            seen["after"] = copy.deepcopy(trainer.optimizer.state_dict())

    trainer.callbacks.append(reweigh)
    assert trainer.fit().status == "completed"
    for k, v in seen["before"]["state"].items():
        for name, t in v.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(seen["after"]["state"][k][name]))
    assert trainer.objective.weights["bc"] == 10.0

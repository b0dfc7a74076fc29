"""warp_grad (preconditioned steps, trajectory-free meta-training) and the learned
learning-rate schedule (the ``schedule`` rule and ``scheduler = "learned"``)."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from pinnopt.learned import (
    EpisodeSampler,
    LearnedOptimizer,
    MetaOptimizer,
    MetaOptimizerConfig,
    QuadraticFamily,
)
from pinnopt.learned.learned_optimizer import load_schedule
from pinnopt.learned.methods import RuleState, ScheduleRule, WarpGradRule
from pinnopt.learned.tasks import Task
from pinnopt.learned.train import validate
from pinnopt.train.schedulers import build_scheduler

F64 = torch.float64


def test_warp_step_is_minus_alpha_omega_omega_t_times_the_gradient():
    weight, bias = torch.zeros(2, 3, dtype=F64), torch.zeros(2, dtype=F64)
    rule = WarpGradRule([weight, bias], inner_lr=0.5)
    omega = torch.tensor([[1.0, 2.0], [0.0, 3.0]], dtype=F64)
    with torch.no_grad():
        rule.warps[0].copy_(omega)
    g_w = torch.tensor([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]], dtype=F64)
    g_b = torch.tensor([1.0, -1.0], dtype=F64)
    (u_w, u_b), state = rule([g_w, g_b], RuleState())
    # ω ωᵀ = [[5, 6], [6, 9]]
    expected_w = -0.5 * torch.tensor([[5 + 12, 6, -5], [6 + 18, 9, -6]], dtype=F64)
    torch.testing.assert_close(u_w, expected_w, rtol=0, atol=1e-15)
    torch.testing.assert_close(u_b, -0.5 * g_b, rtol=0, atol=1e-15)  # its ω is still I
    assert state.step_count == 1
    with pytest.raises(ValueError, match="warp_grad: parameter shapes"):
        rule([g_b, g_w], RuleState())


class _Point(nn.Module):
    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())


def _diagonal_task(seed: int, split: str = "train") -> Task:
    """½ Σ λ_i (θ_i − θ*_i)² with λ = (1, 0.01) for every task, θ* random: SGD is slow
    along the second axis, and a shared preconditioner can fix that."""
    lam = torch.tensor([1.0, 0.01], dtype=F64)
    target = torch.randn(2, generator=torch.Generator().manual_seed(seed), dtype=F64)

    def loss(model):
        return 0.5 * (lam * (model.theta - target) ** 2).sum()

    return Task("diag", split, seed, lambda: _Point(torch.zeros(2, dtype=F64)), loss,
                lambda m: float(loss(m)), "loss")  # fmt: skip


def test_warp_grad_meta_training_learns_the_shared_preconditioner(tmp_path):
    train = [_diagonal_task(3 * i) for i in range(40)]
    val = [_diagonal_task(3 * i + 1, "val") for i in range(4)]
    cfg = MetaOptimizerConfig(method="warp_grad", inner_lr=1.0, inner_steps=10, meta_lr=0.3)
    mo = MetaOptimizer(train[0].init_model(), cfg)
    before = validate(mo, val)
    for k in range(20):
        result = mo.meta_train_step(train[2 * k : 2 * k + 2])
        assert not result.exploded and result.steps == 1
    assert validate(mo, val) < 0.1 * before
    warp = mo.rule.warps[0].detach()
    p = warp @ warp.T
    assert p[1, 1] > 5 * p[0, 0]  # the slow axis gets the longer step
    mo.save(tmp_path / "warp.pt")
    model = val[0].init_model()
    opt = LearnedOptimizer(model.parameters(), tmp_path / "warp.pt")
    grad = torch.tensor([0.3, -0.2], dtype=F64)
    model.theta.grad = grad.clone()
    opt.step()
    torch.testing.assert_close(model.theta.detach(), -(p @ grad), rtol=1e-14, atol=1e-15)


def test_warp_grad_rule_refuses_a_model_of_other_shapes(tmp_path):
    model = nn.Linear(3, 2).double()
    MetaOptimizer(model, MetaOptimizerConfig(method="warp_grad")).save(tmp_path / "w.pt")
    with pytest.raises(ValueError, match="warp_grad: parameter shapes"):
        LearnedOptimizer(nn.Linear(2, 2).double().parameters(), tmp_path / "w.pt")


def test_schedule_multiplier_interpolates_its_knots():
    rule = ScheduleRule(knots=3, lr=1.0, horizon=10)
    with torch.no_grad():
        rule.log_multipliers.copy_(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float32))
    for fraction, s in [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 0.0), (1.0, -1.0),
                        (2.0, -1.0), (-1.0, 0.0)]:  # fmt: skip
        assert rule.multiplier(fraction).item() == pytest.approx(torch.tensor(s).exp().item())


def test_meta_trained_schedule_beats_its_constant_start_and_drives_a_scheduler(tmp_path):
    family = QuadraticFamily(dim=6, condition=50.0)
    train = EpisodeSampler(family, "train")
    val = EpisodeSampler(family, "val").take(6)
    cfg = MetaOptimizerConfig(method="schedule", inner_lr=0.1, inner_steps=30, unroll_steps=30,
                              meta_lr=0.1, meta_objective="log_loss", schedule_knots=4)  # fmt: skip
    mo = MetaOptimizer(train.task(0).init_model(), cfg)
    before = validate(mo, val)
    for k in range(15):
        mo.meta_train_step(train.take(2, start=2 * k))
    assert validate(mo, val) < 0.5 * before
    mo.save(tmp_path / "schedule.pt")
    multiplier = load_schedule(tmp_path / "schedule.pt")
    assert multiplier(0.0) == pytest.approx(mo.rule.multiplier(0.0).item())

    w = nn.Parameter(torch.zeros(3, dtype=F64))
    sgd = torch.optim.SGD([w], lr=0.5)
    sched = build_scheduler("learned", sgd, 20, path=str(tmp_path / "schedule.pt"))
    lrs = []
    for _ in range(20):
        lrs.append(sgd.param_groups[0]["lr"])
        sgd.step()
        sched.step()
    expected = [0.5 * mo.rule.multiplier(k / 20).item() for k in range(20)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert max(lrs) / min(lrs) > 1.1  # a schedule, not a constant


def test_learned_scheduler_errors(tmp_path):
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="needs the option path"):
        build_scheduler("learned", sgd, 10)
    MetaOptimizer(nn.Linear(2, 1), MetaOptimizerConfig(method="l2o")).save(tmp_path / "l2o.pt")
    with pytest.raises(ValueError, match="not a learned schedule"):
        build_scheduler("learned", sgd, 10, path=str(tmp_path / "l2o.pt"))


def test_a_learned_schedule_drives_a_solve_from_a_config_file(tmp_path):
    from pinnopt.cli import main

    rule = tmp_path / "sched"
    assert main(["meta-train", "--family", "quadratic", "--method", "schedule", "--out",
                 str(rule), "--meta-steps", "2", "--inner-steps", "6", "--unroll-steps", "3",
                 "--episodes", "1", "--val-episodes", "1", "--meta-lr", "0.5",
                 "--quiet"]) == 0  # fmt: skip
    config = tmp_path / "sched.toml"
    config.write_text(
        '[optim]\noptimizer = "adam"\nlr = 0.01\nscheduler = "learned"\n'
        f'scheduler_options = {{ path = "{rule / "optimizer.pt"}" }}\n'
    )
    out = tmp_path / "run"
    code = main(["solve", "poisson1d", "--config", str(config), "--steps", "6", "--width", "8",
                 "--depth", "1", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    lrs = [float(r["lr"]) for r in csv.DictReader((out / "history.csv").open()) if r["lr"]]
    multiplier = load_schedule(rule / "optimizer.pt")
    assert multiplier(0.0) != pytest.approx(1.0)  # meta-training moved the schedule
    # the history's first row is written after the first step and its schedule step
    assert lrs[0] == pytest.approx(0.01 * multiplier(1 / 6), rel=1e-9)

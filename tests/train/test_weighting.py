"""Loss balancing: grad_norm on a toy objective whose gradient norms are known."""

import pytest
import torch
from torch import nn

from pinnopt.config import ConfigError, make_config
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term
from pinnopt.solve import resume_config, solve
from pinnopt.train.weighting import (
    LossBalancer,
    WeightingSettings,
    grad_norm_weights,
    gradient_norms,
)


class Constant(nn.Module):
    """u(x) = θ everywhere: one parameter."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value], dtype=torch.float64))

    def forward(self, x):
        return self.theta.expand(x.shape[0], 1)


def two_terms(a: float = 3.0, b: float = 1.0, theta: float = 0.5) -> Objective:
    """r_a = a θ, r_b = b θ: L_a = ½ a² θ², so ‖∇L_a‖ = a² |θ| and ‖∇L_b‖ = b² |θ|."""
    box = Box([0.0], [1.0])
    terms = [
        Term("a", box.interior, lambda u, x: a * u.u, order=0, n=10),
        Term("b", box.interior, lambda u, x: b * u.u, order=0, n=30),
    ]
    problem = Problem("toy", box, terms, lambda x: 0 * x[:, 0])
    return Objective(problem, Constant(theta), problem.sample(torch.Generator().manual_seed(0)))


def test_gradient_norms_are_the_hand_computed_ones():
    norms = gradient_norms(two_terms())
    assert norms["a"] == pytest.approx(9 * 0.5, rel=1e-12)
    assert norms["b"] == pytest.approx(1 * 0.5, rel=1e-12)


def test_grad_norm_weights_equalise_the_weighted_gradient_norms():
    w = grad_norm_weights({"a": 4.5, "b": 0.5})
    assert w == {"a": pytest.approx(5 / 4.5), "b": pytest.approx(10.0)}
    assert w["a"] * 4.5 == pytest.approx(w["b"] * 0.5)


def test_balancer_averages_with_alpha_and_tells_the_objective():
    objective = two_terms()
    seen = []
    objective.subscribe(seen.append)
    values = LossBalancer(objective, WeightingSettings("grad_norm", alpha=0.5)).update()
    assert objective.weights["a"] == pytest.approx(0.5 * 1 + 0.5 * 5 / 4.5)
    assert objective.weights["b"] == pytest.approx(0.5 * 1 + 0.5 * 10.0)
    assert values == {"weight_a": objective.weights["a"], "weight_b": objective.weights["b"]}
    assert seen == ["weights"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "ntkk"}, "method: unknown 'ntkk'; allowed: fixed, grad_norm"),
        ({"period": 0}, "period must be >= 1"),
        ({"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        WeightingSettings(**settings)
    if "method" in settings:
        with pytest.raises(ConfigError, match="weighting.method: unknown method"):
            make_config({"weighting": settings})


@pytest.mark.parametrize("optimizer", ["adam", "gn"])
def test_a_run_logs_its_weights(tmp_path, optimizer):
    cfg = make_config({
        "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": 8, "log_every": 1},
        "weighting": {"method": "grad_norm", "period": 4},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    solve(cfg)
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"weight_pde", "weight_bc", "weight_ic"} <= set(header)
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert [r["step"] for r in rows if r["weight_pde"]] == ["4", "8"]


@pytest.mark.parametrize("optimizer", ["adam:1000,lbfgs", "gn"])
def test_a_resumed_balanced_run_continues_with_its_weights(tmp_path, optimizer):
    """gn: the weights come back from the checkpoint; adam:1000,lbfgs: a stage cut short by
    the step budget is continued, not skipped, by a resume with more steps."""

    def config(where, steps):
        return make_config({
            "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
            "model": {"width": 6, "depth": 1},
            "optim": {"optimizer": optimizer},
            "training": {"steps": steps, "log_every": 1, "checkpoint_every": 6},
            "weighting": {"method": "grad_norm", "period": 4, "alpha": 0.0},
            "output": {"out": str(where / "run"), "quiet": True},
        })  # fmt: skip

    whole = solve(config(tmp_path / "a", 10))
    solve(config(tmp_path / "b", 6))  # weights set at step 4, next update at step 8
    resumed = solve(resume_config(tmp_path / "b" / "run", {"training": {"steps": 10}}), resume=True)
    assert resumed["final_loss"] == whole["final_loss"]

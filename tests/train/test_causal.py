"""Causal weights: exact weights on a toy residual with known slab losses, annealing of ε,
the objective seam, runs with every kind of optimizer, and bad input."""

import math
import re

import pytest
import torch
from torch import nn

from pinnopt.cli import main
from pinnopt.config import ConfigError, make_config
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term
from pinnopt.solve import build_trainer, resume_config, solve
from pinnopt.train.causal import (
    CausalSettings,
    CausalWeights,
    causal_weights,
    slab_index,
    slab_losses,
)


class Constant(nn.Module):
    """u(x) = θ everywhere: one parameter."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value], dtype=torch.float64))

    def forward(self, x):
        return self.theta.expand(x.shape[0], 1)


def toy(levels: list[float], n: int = 400) -> Objective:
    """Time only, t ∈ [0, 2]: r(t) = u + sqrt(c_j) on slab j of len(levels), so with u = 0
    the slab losses are exactly L_j = c_j (every point of slab j has r² = c_j)."""
    box = Box([0.0], [2.0])
    m = len(levels)
    roots = torch.tensor(levels, dtype=torch.float64).sqrt()

    def residual(u, x):
        return u.u + roots[slab_index(x[:, 0], 0.0, 2.0, m)]

    problem = Problem("toy", box, [Term("pde", box.interior, residual, order=0, n=n)],
                      lambda x: 0 * x[:, 0], ("t",))  # fmt: skip
    return Objective(problem, Constant(), problem.sample(torch.Generator().manual_seed(0)))


def test_weights_are_exp_of_minus_eps_times_the_earlier_slab_losses():
    levels = [0.5, 0.2, 1.0, 0.1]
    objective = toy(levels)
    CausalWeights(objective, CausalSettings(epsilon=0.7, slabs=4))
    expected = [math.exp(-0.7 * sum(levels[:j])) for j in range(4)]
    t = objective.points["pde"][:, 0]
    m = objective.point_weights["pde"]
    for j in range(4):
        rows = slab_index(t, 0.0, 2.0, 4) == j
        assert rows.any()
        assert torch.allclose(m[rows] ** 2, torch.full_like(m[rows], expected[j]), rtol=1e-12)
    # the loss is ½ (w/N) Σ_i w_{j(i)} r_i² = ½ w Σ_j (N_j/N) w_j L_j
    counts = torch.bincount(slab_index(t, 0.0, 2.0, 4), minlength=4).double()
    want = 0.5 * sum(counts[j] / len(t) * expected[j] * levels[j] for j in range(4))
    assert float(objective.loss()) == pytest.approx(float(want), rel=1e-12)


def test_weights_are_non_increasing_in_time_and_respond_to_the_residual():
    for levels in ([0.0, 3.0, 0.0, 2.0, 5.0], [1.0] * 5, [4.0, 0.0, 0.0, 0.0, 1.0]):
        w = causal_weights(torch.tensor(levels, dtype=torch.float64), 2.0)
        assert w[0] == 1.0
        assert bool((w[1:] <= w[:-1]).all())
    # a large early residual silences the later slabs; no residual leaves all weights at 1
    w = causal_weights(torch.tensor([10.0, 0.0, 0.0]), 1.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(-10), math.exp(-10)])
    assert causal_weights(torch.zeros(3), 5.0).tolist() == [1.0, 1.0, 1.0]


def test_slab_losses_are_means_per_slab_and_empty_slabs_count_zero():
    r = torch.tensor([1.0, 3.0, 2.0])
    losses, occupied = slab_losses([r], [torch.tensor([0, 0, 2])], 3)
    assert losses.tolist() == [5.0, 0.0, 4.0]  # (1 + 9) / 2, nothing, 4
    assert occupied.tolist() == [True, False, True]


def test_annealing_moves_to_the_next_epsilon_when_every_weight_exceeds_delta():
    levels = [0.001, 0.001, 0.001, 0.001]  # Σ_{l<3} L_l = 0.003
    objective = toy(levels)
    causal = CausalWeights(objective, CausalSettings(epsilon=[1.0, 100.0, 1000.0], slabs=4))
    # at construction: ε = 1 gives min w = e^-0.003 > 0.99: moved on to ε = 100 at once
    assert causal.epsilon == 100.0
    values = causal.update()  # ε = 100: min w = e^-0.3 < 0.99: stays
    assert values == {"causal_min_weight": pytest.approx(math.exp(-0.3)), "causal_epsilon": 100.0}
    assert float(objective.point_weights["pde"].min() ** 2) == pytest.approx(math.exp(-0.3))
    # a looser δ: one move per update, and the last ε stays
    causal.settings.delta = 0.5
    assert causal.update()["causal_epsilon"] == 1000.0
    assert causal.update()["causal_epsilon"] == 1000.0
    assert causal.state_dict() == {"index": 2}


def test_new_points_get_their_weights_at_once():
    objective = toy([1.0, 1.0])
    CausalWeights(objective, CausalSettings(epsilon=1.0, slabs=2))
    fresh = objective.problem.sample(torch.Generator().manual_seed(1), {"pde": 50})
    objective.set_points(fresh)  # drops the old point weights; the callback sets new ones
    m = objective.point_weights["pde"]
    assert m.shape == (50,)
    late = fresh["pde"][:, 0] >= 1.0
    assert torch.allclose(m[late] ** 2, torch.full_like(m[late], math.exp(-1.0)))
    assert bool((m[~late] == 1.0).all())


def run_config(tmp_path, optimizer, steps=6, **causal):
    return make_config({
        "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": steps, "log_every": 1, "checkpoint_every": 4},
        "causal": {"method": "weights", "slabs": 8, **causal},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "gn", "lbfgs", "kfac"])
def test_a_run_applies_and_logs_causal_weights(tmp_path, optimizer):
    trainer = build_trainer(run_config(tmp_path, optimizer), tmp_path / "run")
    result = trainer.fit()
    assert math.isfinite(result.final_loss)
    m = trainer.objective.point_weights["pde"]
    t = trainer.objective.points["pde"][:, 1]
    order = torch.argsort(t)
    assert bool((m[order][1:] <= m[order][:-1]).all()) and float(m.max()) == 1.0
    assert set(trainer.objective.point_weights) == {"pde"}  # bc and ic are not weighted
    rows = [r for r in result.history if "causal_min_weight" in r]
    assert rows and rows[-1]["step"] == result.steps
    assert all(0 < r["causal_min_weight"] <= 1 and r["causal_epsilon"] == 1.0 for r in rows)
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"causal_min_weight", "causal_epsilon"} <= set(header)


def test_a_resumed_causal_run_continues_with_its_weights_and_epsilon(tmp_path):
    def config(where, steps):
        return run_config(where, "gn", steps, epsilon=[1.0, 10.0, 100.0], delta=0.5)

    whole = solve(config(tmp_path / "a", 8))
    solve(config(tmp_path / "b", 4))
    resumed = solve(resume_config(tmp_path / "b" / "run", {"training": {"steps": 8}}), resume=True)
    assert resumed["final_loss"] == whole["final_loss"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epsilon": []}, "epsilon must be a number > 0 or a non-empty list"),
        ({"epsilon": [1.0, -1.0]}, "epsilon must be finite and > 0, got -1.0"),
        ({"slabs": 0}, "slabs must be >= 1"),
        ({"period": 0}, "period must be >= 1"),
        ({"delta": 1.5}, r"delta must be in \(0, 1\]"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        CausalSettings(**settings)


@pytest.mark.parametrize(
    ("causal", "message"),
    [
        ({"method": "causal"}, "causal.method: unknown method 'causal'; allowed: none, weights"),
        ({"epsilon": [0.1, "a"]}, r"causal.epsilon: must be a number > 0 or a non-empty list"),
        ({"epsilon": 0}, "causal.epsilon: must be a number > 0"),
        ({"slabs": 0}, "causal.slabs: Input should be greater than or equal to 1"),
        ({"delta": 0}, "causal.delta: Input should be greater than 0"),
    ],
)
def test_bad_config(causal, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"causal": causal})


def test_a_problem_without_time_is_refused_before_the_run_directory_is_touched(tmp_path):
    no_time = "causal.method: problem 'poisson2d' has no time axis (inputs x, y); causal "
    no_time += "training needs an input named t"
    out = tmp_path / "run"
    assert main(["solve", "poisson1d", "--steps", "2", "--width", "4", "--depth", "1",
                 "--quiet", "--out", str(out)]) == 0  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main(["solve", "poisson2d", "--causal", "1", "--out", str(out), "--overwrite"])
    assert code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost
    with pytest.raises(ConfigError, match=f"^{re.escape(no_time)}$"):
        solve(make_config({"causal": {"method": "weights"}, "output": {"out": str(out)}}), False,
              True)  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["solve", "poisson2d", "--causal", "1", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: causal.method: problem 'poisson2d' has no time axis")
    assert main(["solve", "heat1d", "--causal", "1,x", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == "error: --causal: expected a number or comma-separated numbers, got '1,x'\n"
    assert main(["solve", "heat1d", "--causal", "0", "--out", out]) == 2
    assert capsys.readouterr().err.startswith("error: causal.epsilon: must be a number > 0")
    assert not (tmp_path / "run").exists()


def test_cli_flag_runs_causal_weights(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["solve", "heat1d", "--causal", "1,10", "--optimizer", "gn", "--steps", "3",
                 "--width", "4", "--depth", "1", "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    config = (out / "config.toml").read_text()
    assert 'method = "weights"' in config and "epsilon = [" in config
    assert "causal_epsilon" in (out / "history.csv").read_text().splitlines()[0]

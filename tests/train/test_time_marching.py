"""Time marching: window problems, the matching conditions, the stitched model, a marched
heat1d run against a single one, and what is refused."""

import json
import re

import pytest
import torch
from torch import nn

from pinnopt.cli import main
from pinnopt.config import ConfigError, make_config
from pinnopt.derivatives import jet, jet_autograd
from pinnopt.evaluation import Evaluator
from pinnopt.models.mlp import MLP
from pinnopt.objective import term_residuals
from pinnopt.problems import get_problem
from pinnopt.solve import build_trainer, load_model, solve
from pinnopt.train.time_marching import TimeMarching, TimeWindows


def mlp(seed: int) -> nn.Module:
    return MLP(2, 1, 6, 2, "tanh", "xavier", [0.0, 0.0], [1.0, 1.0], seed=seed)


def test_windows_draw_every_term_inside_the_window():
    plan = TimeMarching(get_problem("heat1d"), 4)
    assert plan.edges() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert plan.initial == ["ic"]
    window = plan.window(2, mlp(0))
    assert window.domain.lower == (0.0, 0.5) and window.domain.upper == (1.0, 0.75)
    points = window.sample(torch.Generator().manual_seed(0))
    t = points["pde"][:, 1]
    assert float(t.min()) >= 0.5 and float(t.max()) <= 0.75 and float(t.max()) > 0.74
    assert set(points["bc"][:, 0].tolist()) == {0.0, 1.0}
    assert float(points["bc"][:, 1].min()) >= 0.5 and float(points["bc"][:, 1].max()) <= 0.75
    assert points["ic"].shape[1] == 3 and bool((points["ic"][:, 1] == 0.5).all())
    first = plan.window(0).sample(torch.Generator().manual_seed(0))
    assert first["ic"].shape[1] == 2 and bool((first["ic"][:, 1] == 0.0).all())


def test_window_zero_keeps_the_initial_condition_and_later_ones_match_the_previous_network():
    problem = get_problem("heat1d")
    plan = TimeMarching(problem, 2)
    previous, other = mlp(0), mlp(1)
    ic = plan.window(1, previous).term("ic")
    x = plan.window(1, previous).sample(torch.Generator().manual_seed(0))["ic"]
    assert ic.data_columns == 1
    # the matching condition u − u_prev vanishes for u = u_prev and is u − u_prev otherwise
    assert float(term_residuals(ic, previous, x).abs().max()) < 1e-15
    with torch.no_grad():
        diff = other(x[:, :2])[:, 0] - previous(x[:, :2])[:, 0]
    assert torch.allclose(term_residuals(ic, other, x), diff, atol=1e-14)
    # window 0: the problem's own u(x, 0) = sin(πx)
    x0 = plan.window(0).sample(torch.Generator().manual_seed(0))["ic"]
    exact = problem.reference(x0)
    assert (
        float(term_residuals(plan.window(0).term("ic"), fixed_values(exact), x0).abs().max())
        < 1e-15
    )


def fixed_values(values: torch.Tensor) -> nn.Module:
    """A 'network' returning fixed values at the points it is given (for order-0 terms)."""

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x):
            return (values + 0 * self.p).unsqueeze(1)

    return Fixed()


def test_a_velocity_condition_matches_the_previous_networks_time_derivative():
    plan = TimeMarching(get_problem("wave1d"), 2)
    assert plan.initial == ["ic", "ic_t"]
    previous, other = mlp(0), mlp(1)
    window = plan.window(1, previous)
    x = window.sample(torch.Generator().manual_seed(0))["ic_t"]
    assert bool((x[:, 1] == 0.5).all())
    term = window.term("ic_t")
    assert float(term_residuals(term, previous, x).abs().max()) < 1e-14
    want = (
        jet_autograd(other, x[:, :2], 1).grad[:, 1, 0]
        - jet_autograd(previous, x[:, :2], 1).grad[:, 1, 0]
    )
    assert torch.allclose(term_residuals(term, other, x), want.detach(), atol=1e-12)


def test_stitched_model_routes_each_time_to_its_window():
    a, b, c = mlp(0), mlp(1), mlp(2)
    model = TimeWindows([a, b, c], [0.25, 0.5], axis=1)
    x = torch.tensor([[0.3, 0.0], [0.3, 0.2499], [0.3, 0.25], [0.7, 0.4], [0.7, 0.5], [0.1, 1.0]],
                     dtype=torch.float64)  # fmt: skip
    assert model.window_of(x).tolist() == [0, 0, 1, 1, 2, 2]
    with torch.no_grad():
        want = torch.cat([a(x[:2]), b(x[2:4]), c(x[4:])])
        assert torch.equal(model(x), want)
    # the jet (forward propagation) is each window's network's jet
    j = jet(model, x, 2)
    parts = [jet(net, x[rows], 2) for net, rows in ((a, slice(0, 2)), (b, slice(2, 4)),
                                                    (c, slice(4, 6)))]  # fmt: skip
    assert torch.allclose(j.grad, torch.cat([p.grad for p in parts]), atol=1e-14)
    assert torch.allclose(j.hess_diag, torch.cat([p.hess_diag for p in parts]), atol=1e-14)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("poisson2d", {}, "problem 'poisson2d' has no time axis (inputs x, y); time marching "
                          "needs an input named t"),
        ("burgers1d_inverse", {}, "does not support observation terms or unknown parameters"),
        ("heat1d", {"constraints": "exact"}, "does not compose with exact constraints"),
    ],
)  # fmt: skip
def test_problems_that_cannot_be_marched_are_refused(tmp_path, name, options, message):
    config = make_config({
        "problem": {"name": name, **options}, "causal": {"windows": 2},
        "output": {"out": str(tmp_path / "run")},
    })  # fmt: skip
    with pytest.raises(ConfigError, match=f"^causal.windows: .*{re.escape(message)}"):
        solve(config)
    assert not (tmp_path / "run").exists()


def test_bad_window_counts_and_combinations_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="causal.windows: Input should be greater than or equal"):
        make_config({"causal": {"windows": 0}})
    with pytest.raises(ValueError, match="windows must be an integer >= 1, got 0"):
        TimeMarching(get_problem("heat1d"), 0)
    config = make_config({"problem": {"name": "heat1d"}, "causal": {"windows": 2},
                          "training": {"networks": 2}})  # fmt: skip
    with pytest.raises(ConfigError, match="causal.windows: time marching cannot be combined"):
        solve(config)
    out = str(tmp_path / "run")
    assert main(["solve", "heat1d", "--windows", "0", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == "error: causal.windows: Input should be greater than or equal to 1\n"
    assert main(["solve", "poisson2d", "--windows", "3", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: causal.windows: problem 'poisson2d' has no time axis")
    assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def heat(out, windows: int):
    return make_config({
        "problem": {"name": "heat1d", "points": {"pde": 200, "bc": 40, "ic": 40}},
        "model": {"width": 8, "depth": 2},
        "optim": {"optimizer": "gn"},
        "training": {"steps": 40, "log_every": 10},
        "causal": {"windows": windows},
        "output": {"out": str(out), "quiet": True},
    })  # fmt: skip


def test_a_marched_heat_run_matches_a_single_run(tmp_path):
    """2 windows of 40 Gauss–Newton steps each against one run of 40 steps (measured:
    rel_l2 3.6e-4 single, 3.9e-4 marched; with window 2 re-imposing u(x, 0.5) = sin(πx)
    instead of matching window 1, the stitched rel_l2 is 0.68)."""
    single = solve(heat(tmp_path / "one", 1))
    marched = solve(heat(tmp_path / "two", 2))
    assert single["rel_l2"] < 1e-3 and marched["rel_l2"] < 1e-3
    assert 1 / 3 < marched["rel_l2"] / single["rel_l2"] < 3
    # metrics.json: the stitched model on the whole domain, and one entry per window
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["steps"] == 80 and metrics["status"] == "completed"
    windows = metrics["windows"]
    assert [(w["window"], w["t_start"], w["t_end"], w["steps"]) for w in windows] == [
        (1, 0.0, 0.5, 40), (2, 0.5, 1.0, 40)
    ]  # fmt: skip
    assert all(w["rel_l2"] < 2e-3 for w in windows)
    assert metrics["final_loss"] == pytest.approx(sum(w["final_loss"] for w in windows))
    # the checkpoint holds the stitched model: its error is the one reported
    model = load_model(tmp_path / "two")
    assert isinstance(model, TimeWindows) and len(model.networks) == 2
    assert Evaluator(get_problem("heat1d"))(model)["rel_l2"] == pytest.approx(metrics["rel_l2"])
    # history.csv: a window column, steps running on across the windows
    lines = (tmp_path / "two" / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert {r["window"] for r in rows} == {"1", "2"}
    assert [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)
    assert int(rows[-1]["step"]) == 80
    assert {p.name for p in (tmp_path / "two").iterdir()} == {
        "config.toml", "checkpoint.pt", "metrics.json", "history.csv", "loss.png", "solution.png"
    }  # fmt: skip


def test_cold_windows_and_causal_weights_inside_windows(tmp_path):
    config = make_config({
        "problem": {"name": "wave1d", "points": {"pde": 60, "bc": 20, "ic": 20, "ic_t": 20}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": "adam"},
        "training": {"steps": 4, "log_every": 1},
        "causal": {"windows": 3, "warm_start": False, "method": "weights", "slabs": 4},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    metrics = solve(config)
    assert [w["t_start"] for w in metrics["windows"]] == pytest.approx([0.0, 1 / 3, 2 / 3])
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"window", "causal_min_weight", "loss_ic_t"} <= set(header)
    assert len(load_model(tmp_path / "run").networks) == 3


@pytest.mark.parametrize("warm_start", [True, False])
def test_warm_start_copies_the_trained_network_and_cold_start_takes_a_fresh_one(warm_start):
    config = make_config({
        "problem": {"name": "heat1d", "points": {"pde": 40, "bc": 10, "ic": 10}},
        "optim": {"optimizer": "adam"}, "training": {"steps": 3},
        "output": {"quiet": True},
    })  # fmt: skip
    plan = TimeMarching(get_problem("heat1d"), 2)
    started = []

    def next_trainer(problem, net):
        started.append({k: v.clone() for k, v in net.state_dict().items()})
        return build_trainer(config, None, problem, net)

    first = build_trainer(config, None, plan.window(0), mlp(0))
    run = plan.run(first, next_trainer, lambda: mlp(5), warm_start)
    trained = run.model.networks[0].state_dict()
    want = trained if warm_start else mlp(5).state_dict()
    assert started[0].keys() == want.keys()
    assert all(torch.equal(started[0][k], want[k]) for k in want)
    assert not torch.equal(trained["1.weight"], mlp(0).state_dict()["1.weight"])  # it trained
    assert [w.result.steps for w in run.windows] == [3, 3]

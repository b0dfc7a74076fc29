"""Adaptive collocation: RAD's density, RAR-D's additions, R3's retention, and runs."""

import json

import pytest
import torch

from pinnopt.config import ConfigError, make_config
from pinnopt.models import MLP
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term
from pinnopt.solve import resume_config, solve
from pinnopt.train.sampling import AdaptiveSampler, SamplingSettings, residual_density


def toy_objective(n: int = 2000) -> Objective:
    """A term whose residual is r(x) = x on [0, 1], whatever the network."""
    box = Box([0.0], [1.0])
    term = Term("pde", box.interior, lambda u, x: x[:, 0] + 0 * u.u, order=0, n=n)
    bc = Term("bc", box.boundary(), lambda u, x: u.u, order=0, n=2)
    problem = Problem("toy", box, [term, bc], lambda x: 0 * x[:, 0])
    model = MLP(1, 1, 4, 1, lower=[0.0], upper=[1.0])
    return Objective(problem, model, problem.sample(torch.Generator().manual_seed(0)))


def rad(method="rad", **options) -> SamplingSettings:
    return SamplingSettings(method, terms=("pde",), **options)


def test_density_formula():
    r = torch.tensor([0.0, 1.0, 3.0])
    p = residual_density(r, k=1.0, c=1.0)  # |r|/mean + 1 = [1, 1.75, 3.25] / 6
    assert torch.allclose(p, torch.tensor([1.0, 1.75, 3.25], dtype=torch.float64) / 6.0)
    assert torch.allclose(residual_density(torch.zeros(4), 2.0, 0.0), torch.full((4,), 0.25,
                          dtype=torch.float64))  # fmt: skip


@pytest.mark.parametrize(
    ("k", "c", "mean"), [(1.0, 0.0, 2 / 3), (1.0, 1.0, 7 / 12), (2.0, 0.0, 3 / 4)]
)
def test_rad_draws_from_its_density(k, c, mean):
    """p ∝ x^k / mean + c on [0, 1]: E[x] = 2/3 (k=1, c=0), 7/12 (k=1, c=1), 3/4 (k=2, c=0)."""
    objective = toy_objective()
    sampler = AdaptiveSampler(objective, rad(k=k, c=c, pool=50))
    stats = sampler.round(1)
    x = objective.points["pde"][:, 0]
    assert x.shape == (2000,)
    # 2000 draws: the standard error of the mean is about 0.3 / sqrt(2000) = 0.007
    assert float(x.mean()) == pytest.approx(mean, abs=0.025)
    assert stats["points_pde"] == 2000.0
    assert stats["pool_mean_pde"] == pytest.approx(0.5, abs=0.01)  # mean |r| of the pool
    assert stats["pool_p99_pde"] == pytest.approx(0.99, abs=0.01)
    assert torch.equal(objective.points["bc"], toy_objective().points["bc"])  # not sampled


def test_rad_rounds_are_deterministic():
    a, b = toy_objective(), toy_objective()
    AdaptiveSampler(a, rad(seed=3)).round(7)
    AdaptiveSampler(b, rad(seed=3)).round(7)
    assert torch.equal(a.points["pde"], b.points["pde"])


def test_rar_d_adds_the_points_with_the_largest_residuals_up_to_the_cap():
    objective = toy_objective(200)
    before = objective.points["pde"].clone()
    sampler = AdaptiveSampler(objective, rad("rar_d", k=60.0, add=0.1, pool=20, max_points=230))
    sampler.round(1)
    after = objective.points["pde"]
    assert torch.equal(after[:200], before) and after.shape[0] == 220
    added = after[200:, 0]
    # drawn with p ∝ x^60: the pool's largest residuals, all in its top 10 % (near x = 1)
    assert float(added.min()) > 0.9 and float(added.mean()) > 0.97
    sampler.round(2)
    assert objective.points["pde"].shape[0] == 230  # capped by max_points
    sampler.round(3)
    assert objective.points["pde"].shape[0] == 230


def test_r3_retains_the_high_residual_points_and_refills():
    objective = toy_objective(400)
    before = objective.points["pde"][:, 0].clone()
    AdaptiveSampler(objective, rad("r3")).round(1)
    after = objective.points["pde"][:, 0]
    kept = before[before > before.mean()]
    assert after.shape == (400,)
    assert torch.equal(after[: kept.numel()], kept)
    assert not torch.equal(after, before)


def test_resample_draws_fresh_points_of_the_same_count():
    objective = toy_objective(300)
    before = objective.points["pde"].clone()
    AdaptiveSampler(objective, rad("resample")).round(1)
    assert objective.points["pde"].shape == before.shape
    assert not torch.equal(objective.points["pde"], before)


def test_sampler_tells_the_optimizer_through_the_objective():
    objective = toy_objective(50)
    seen = []
    objective.subscribe(seen.append)
    AdaptiveSampler(objective, rad()).round(1)
    assert seen == ["points"]


def test_default_terms_are_those_of_the_highest_order():
    from pinnopt.problems import get_problem

    problem = get_problem("heat1d")
    model = MLP(2, 1, 4, 1)
    objective = Objective(problem, model, problem.sample(torch.Generator().manual_seed(0)))
    assert [t.name for t in AdaptiveSampler(objective, SamplingSettings("rad")).terms] == ["pde"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "rand"}, "method: unknown 'rand'; allowed: fixed, resample, rad, rar_d, r3"),
        ({"period": 0}, "period must be >= 1"),
        ({"pool": 0}, "pool must be >= 1"),
        ({"k": -1.0}, "k must be >= 0"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**settings)


def test_bad_terms():
    with pytest.raises(ValueError, match="terms: unknown term 'pdf'; allowed: pde, bc"):
        AdaptiveSampler(toy_objective(10), SamplingSettings("rad", terms=("pdf",)))


def config(tmp_path, optimizer="gn", steps=12, **sampling):
    return make_config({
        "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": steps, "log_every": 1, "checkpoint_every": 5},
        "sampling": {"method": "rad", "period": 4, **sampling},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "gn", "kfac"])
def test_every_optimizer_runs_with_sampling(tmp_path, optimizer):
    metrics = solve(config(tmp_path, optimizer))
    assert metrics["steps"] == 12
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"points_pde", "pool_mean_pde", "pool_max_pde", "pool_p99_pde"} <= set(header)
    assert (tmp_path / "run" / "points.png").is_file()


def test_a_resumed_sampled_run_continues_the_same_trajectory(tmp_path):
    whole = solve(config(tmp_path / "a", steps=12))
    solve(config(tmp_path / "b", steps=6))
    resumed = solve(resume_config(tmp_path / "b" / "run", {"training": {"steps": 12}}), resume=True)
    assert resumed["final_loss"] == whole["final_loss"]
    a = json.loads((tmp_path / "a" / "run" / "metrics.json").read_text())
    assert a["rel_l2"] == resumed["rel_l2"]


def test_bad_sampling_config_names_the_field():
    with pytest.raises(ConfigError, match="sampling.method: unknown method 'rand'"):
        make_config({"sampling": {"method": "rand"}})
    with pytest.raises(ConfigError, match="sampling.period: Input should be greater than"):
        make_config({"sampling": {"period": 0}})

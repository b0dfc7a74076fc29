"""The pde_mix task family: its manufactured sources are right, tasks are seeded."""

from __future__ import annotations

import pytest
import torch

from pinnopt.learned import EpisodeSampler, build_family
from pinnopt.learned.pde_tasks import KINDS
from pinnopt.learned.tasks import _Exact
from pinnopt.objective import Objective


@pytest.mark.parametrize("kind", KINDS)
def test_the_manufactured_solution_has_zero_residual(kind):
    """The source is the operator applied to the series, written out by hand; the
    objective differentiates the exact solution itself: they must agree."""
    family = build_family("pde_mix", kinds=(kind,), n_pde=32, n_bc=8)
    task = family.sample(5)
    problem, points = task.info["problem"], task.info["points"]
    exact = _Exact(problem.exact)
    assert float(Objective(problem, exact, points).loss()) < 1e-24
    assert task.info["kind"] == kind
    wrong = _Exact(lambda x: 1.01 * problem.exact(x))
    assert float(Objective(problem, wrong, points).loss()) > 1e-8


def test_tasks_mix_kinds_and_networks_and_repeat_by_seed():
    family = build_family("pde_mix")
    tasks = EpisodeSampler(family, "train").take(24)
    kinds = {t.info["kind"] for t in tasks}
    archs = {tuple(sorted(t.info["arch"].items())) for t in tasks}
    assert kinds == {"poisson", "helmholtz", "burgers", "heat"}
    assert len(archs) == 4
    again = family.sample(tasks[3].seed)
    a, b = tasks[3].init_model(), again.init_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert tasks[3].loss(a).item() == again.loss(b).item()


@pytest.mark.parametrize(
    ("options", "match"),
    [({"kinds": ("wave",)}, "Invalid kinds"), ({"archs": ({"model": "cnn"},)}, "Invalid archs"),
     ({"modes": 0}, "Invalid modes"), ({"decay": -1.0}, "Invalid decay")],
)  # fmt: skip
def test_bad_options_name_the_field(options, match):
    with pytest.raises(ValueError, match=match):
        build_family("pde_mix", **options)


def test_pde_fit_tasks_observe_the_solution_of_their_pde():
    family = build_family("pde_fit", k_shot=3, n_pde=16)
    for seed in range(3):
        task = family.sample(seed)
        problem, points = task.info["problem"], task.info["points"]
        assert points["data"].shape == (3, 1) and points["pde"].shape == (16, 1)
        exact = _Exact(problem.exact)
        assert Objective(problem, exact, points).loss().item() < 1e-24
        assert task.evaluate(exact) < 1e-28  # the query set holds values of u
        xs, ys = task.info["support"]
        torch.testing.assert_close(ys, problem.exact(xs))
    with pytest.raises(ValueError, match="Invalid kinds: .*allowed: poisson, helmholtz"):
        build_family("pde_fit", kinds=("heat",))

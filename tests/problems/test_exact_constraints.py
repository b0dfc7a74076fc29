"""Exact constraints of the registered problems: the conditions hold before any training."""

import pytest
import torch

from pinnopt.config import ConfigError, make_config
from pinnopt.derivatives import jet
from pinnopt.models import MLP
from pinnopt.models.transforms import OutputTransform
from pinnopt.problem_network import network_for
from pinnopt.problems import PROBLEMS, get_problem
from pinnopt.solve import build_problem, load_model, solve
from pinnopt.train.multistage import fourier_mlp

CONSTRAINED = sorted(n for n in PROBLEMS if get_problem(n).constraint is not None)


def random_network(problem, seed=0):
    return network_for(
        problem, lambda d, lo, hi: MLP(d, len(problem.components), 16, 2, lower=lo, upper=hi,
                                       seed=seed)
    )  # fmt: skip


def test_the_classic_problems_declare_constraints():
    assert {"burgers1d", "heat1d", "helmholtz2d", "poisson1d", "poisson2d", "wave1d"} <= set(
        CONSTRAINED
    )


@pytest.mark.parametrize("name", CONSTRAINED)
def test_replaced_terms_hold_to_round_off_before_training(name):
    declared = get_problem(name)
    problem = declared.with_exact_constraint()
    replaced = [declared.term(t) for t in declared.constraint.replaces]
    assert not {t.name for t in problem.terms} & {t.name for t in replaced}
    hard, soft = random_network(problem), random_network(declared)
    assert isinstance(hard, OutputTransform)
    g = torch.Generator().manual_seed(1)
    for term in replaced:
        x = term.sampler(64, g)
        assert float(term.evaluate(hard, x).detach().abs().max()) <= 1e-14, term.name
        assert float(term.evaluate(soft, x).detach().abs().max()) > 1e-3, term.name  # could fail
    x = declared.domain.interior(64, g)  # inside, u − g is not forced to zero
    with torch.no_grad():
        assert (
            float((hard(x)[:, 0] - declared.constraint.g(x).reshape(64, -1)[:, 0]).abs().max())
            > 1e-3
        )


def test_correction_network_of_multistage_vanishes_on_the_constraint():
    problem = get_problem("heat1d").with_exact_constraint()
    net = fourier_mlp(problem, 3.0, width=8, depth=1)
    x = get_problem("heat1d").term("ic").sampler(32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(net(x).abs().max()) == 0.0


def test_exact_constraints_from_the_config(tmp_path):
    cfg = make_config({"problem": {"name": "poisson2d", "constraints": "exact"}})
    assert [t.name for t in build_problem(cfg).terms] == ["pde"]
    cfg = make_config({"problem": {"name": "poisson5d", "constraints": "exact"}})
    with pytest.raises(ConfigError, match="problem.constraints: problem 'poisson5d' declares no"):
        build_problem(cfg)
    with pytest.raises(ConfigError, match="problem.constraints"):
        make_config({"problem": {"constraints": "hard"}})


def test_solve_with_exact_constraints_trains_and_reloads(tmp_path):
    cfg = make_config({
        "problem": {"name": "poisson1d", "constraints": "exact", "points": {"pde": 40}},
        "model": {"width": 8, "depth": 1},
        "optim": {"optimizer": "gn"},
        "training": {"steps": 40},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    metrics = solve(cfg)
    assert metrics["rel_l2"] < 1e-4
    assert list(metrics["loss_terms"]) == ["pde"]
    model = load_model(tmp_path / "run")
    ends = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    with torch.no_grad():
        assert float(model(ends).abs().max()) <= 1e-15


def test_jets_of_a_constrained_network_are_exact():
    problem = get_problem("wave1d").with_exact_constraint()
    model = random_network(problem)
    x = problem.domain.interior(16, torch.Generator().manual_seed(0))
    from pinnopt.derivatives import jet_autograd

    fast, ref = jet(model, x, 2), jet_autograd(model, x, 2)
    for a, b in zip(fast.parts[:3], ref.parts[:3]):
        assert torch.allclose(a, b, rtol=0, atol=1e-11)

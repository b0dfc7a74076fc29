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


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        ([(2, "lower")], r"face \(2, 'lower'\) does not exist; dims are 0..1"),
        ([(0, "left")], r"face \(0, 'left'\) does not exist; sides are 'lower', 'upper'"),
        ([0], r"a face is \(dim, 'lower' or 'upper'\)"),
        ([], "at least one face"),
    ],
)
def test_a_constraint_on_a_face_that_does_not_exist_is_refused(faces, message):
    from pinnopt.problems import box_distance

    with pytest.raises(ValueError, match=message):
        box_distance([0.0, 0.0], [1.0, 1.0], faces)


def test_problem_checks_its_periodic_inputs_and_constraint():
    from pinnopt.problems import Box, Constraint, Problem, Term

    box = Box([0.0, 0.0], [1.0, 1.0])
    term = Term("pde", box.interior, lambda u, x: u.u, order=0)
    with pytest.raises(ValueError, match=r"periodic input 2 does not exist; inputs are 0..1"):
        Problem("p", box, [term], lambda x: x[:, 0], periodic={2: 1.0})
    with pytest.raises(ValueError, match="period of input 0 must be > 0"):
        Problem("p", box, [term], lambda x: x[:, 0], periodic={0: 0.0})
    zero = Constraint(lambda x: 0 * x[:, 0], lambda x: x[:, 0], replaces=("bc",))
    with pytest.raises(ValueError, match=r"replaces term\(s\) \['bc'\], which the problem"):
        Problem("p", box, [term], lambda x: x[:, 0], constraint=zero)
    with pytest.raises(ValueError, match="declares no exact constraint"):
        Problem("p", box, [term], lambda x: x[:, 0]).with_exact_constraint()
    with pytest.raises(ValueError, match="g and d must be functions"):
        Constraint(1.0, lambda x: x[:, 0])


@pytest.mark.parametrize("name", ["poisson1d", "convection1d"])
@pytest.mark.parametrize("optimizer", ["kfac", "lbfgs", "adam"])
def test_every_optimizer_runs_on_constrained_and_periodic_models(tmp_path, name, optimizer):
    constraints = "exact" if name == "poisson1d" else "soft"
    cfg = make_config({
        "problem": {"name": name, "constraints": constraints,
                    "points": {"pde": 40} | ({"ic": 20} if name == "convection1d" else {})},
        "model": {"width": 8, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": 10},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    metrics = solve(cfg)
    first = json_first_loss(tmp_path / "run")
    assert metrics["final_loss"] < first


def json_first_loss(run) -> float:
    import csv

    with (run / "history.csv").open() as f:
        return float(next(csv.DictReader(f))["loss"])

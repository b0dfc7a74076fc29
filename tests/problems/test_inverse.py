"""Inverse problems: unknown physical parameters in θ, observation terms, data files."""

import math

import numpy as np
import pytest
import torch

from pinnopt.derivatives import Jet
from pinnopt.evaluation import Evaluator
from pinnopt.models import MLP
from pinnopt.models.unknowns import WithUnknowns
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim import build_optimizer
from pinnopt.problem_network import network_for
from pinnopt.problems import Box, Problem, Term, get_problem
from pinnopt.problems.observations import (
    observation_terms,
    read_observations,
    with_observations,
)
from pinnopt.problems.unknowns import Unknown

PI = math.pi
KAPPA = 2.0  # the truth of the toy problem: kappa u'' + pi^2 sin(pi x) = 0, u = sin(pi x) / kappa


def toy_problem(initial: float = 0.5, n_obs: int = 40) -> Problem:
    box = Box([0.0], [1.0])

    def exact(x):
        return torch.sin(PI * x[:, 0]) / KAPPA

    def pde(u: Jet, x):
        return u.unknown("kappa") * u.d2(0) + PI**2 * torch.sin(PI * x[:, 0])

    points = torch.linspace(0.0, 1.0, n_obs, dtype=torch.float64)[:, None]
    data = observation_terms(points, exact(points))
    return Problem(
        "toy_inverse", box, [Term("pde", box.interior, pde, n=60), *data], exact, ("x",),
        unknowns={"kappa": Unknown(initial, truth=KAPPA)},
    )  # fmt: skip


def toy_objective(seed: int = 0, width: int = 12) -> Objective:
    problem = toy_problem()
    model = network_for(
        problem, lambda d, lo, hi: MLP(d, 1, width, 1, lower=lo, upper=hi, seed=seed)
    )
    points = problem.sample(torch.Generator().manual_seed(seed))
    return Objective(problem, model, points)


def kappa_error(objective: Objective) -> float:
    return Evaluator(objective.problem)(objective.model)["param_kappa_rel_error"]


def test_unknown_is_a_trainable_parameter_of_the_model():
    objective = toy_objective()
    model = objective.model
    assert isinstance(model, WithUnknowns)
    names = [n for n, _ in model.named_parameters()]
    assert "unknowns.kappa" in names
    assert model.unknowns["kappa"].item() == 0.5
    assert "unknowns.kappa" in model.state_dict()


def test_jacobian_column_of_the_unknown_matches_autograd():
    objective = toy_objective()
    kappa = objective.model.unknowns["kappa"]
    _, J = objective.jacobian([kappa])
    r = objective.residual_vector()
    (g,) = torch.autograd.grad(r.sum(), kappa)
    assert J.shape == (r.numel(), 1)
    assert torch.allclose(J.sum(), g, rtol=1e-12, atol=0)
    # the data rows do not depend on kappa, the pde rows do
    data_rows = J[objective.pass_sizes()[0] :]
    assert float(data_rows.abs().max()) == 0.0
    assert float(J[: objective.pass_sizes()[0]].abs().min()) > 0.0


def test_gauss_newton_identifies_the_unknown():
    objective = toy_objective(width=20)
    assert kappa_error(objective) == pytest.approx(0.75)
    opt = build_optimizer("gn", list(objective.model.parameters()))
    closure = ResidualClosure(objective)
    for _ in range(60):
        opt.step(closure)
    assert kappa_error(objective) < 5e-5
    assert Evaluator(objective.problem)(objective.model)["rel_l2"] < 5e-5


@pytest.mark.parametrize("name", ["adam", "lbfgs", "kfac"])
def test_other_optimizers_move_the_unknown_towards_the_truth(name):
    objective = toy_objective()
    params = list(objective.model.parameters())
    if name == "kfac":
        opt = build_optimizer(name, params, model=objective.model)
        closure = ResidualClosure(objective)
        steps = 30
    else:
        opt = build_optimizer(name, params, lr=1e-2 if name == "adam" else 1.0)

        def closure():
            opt.zero_grad()
            loss = objective.loss()
            loss.backward()
            return loss

        steps = 300 if name == "adam" else 20
    for _ in range(steps):
        opt.step(closure)
    assert kappa_error(objective) < {"adam": 0.4, "lbfgs": 0.4, "kfac": 0.15}[name]  # from 0.75


def test_kfac_dense_block_of_the_unknown_is_its_gauss_newton_block():
    from pinnopt.optim.kfac.optimizer import _dense_block
    from pinnopt.optim.least_squares import MatrixFreeJacobian

    objective = toy_objective()
    kappa = objective.model.unknowns["kappa"]
    _, column = objective.jacobian([kappa])
    r = objective.residual_vector()
    block = _dense_block(MatrixFreeJacobian(r, [kappa]))
    assert torch.allclose(block, column.t() @ column, rtol=1e-12, atol=0)


def test_observation_terms_carry_values_and_subsample():
    points = torch.rand(30, 2, dtype=torch.float64)
    values = {"u": torch.arange(30.0), "v": -torch.arange(30.0)}
    terms = observation_terms(points, values, ("u", "v", "p"))
    assert [t.name for t in terms] == ["data_u", "data_v"]
    rows = terms[1].sampler(30, torch.Generator())
    assert torch.equal(rows[:, :2], points) and torch.equal(rows[:, 2], values["v"].double())
    subset = terms[0].sampler(10, torch.Generator().manual_seed(0))
    assert subset.shape == (10, 3)
    assert all(any(torch.equal(r, q) for q in terms[0].sampler(30, None)) for r in subset)
    with pytest.raises(ValueError, match="points must be <= 30"):
        terms[0].sampler(31, torch.Generator())


def test_noise_has_the_asked_relative_size_and_is_seeded():
    points = torch.rand(20000, 1, dtype=torch.float64)
    clean = torch.sin(6 * points[:, 0])
    (term,) = observation_terms(points, clean, noise=0.01, seed=3)
    noisy = term.sampler(20000, None)[:, -1]
    assert float((noisy - clean).std() / clean.std()) == pytest.approx(0.01, rel=0.03)
    (again,) = observation_terms(points, clean, noise=0.01, seed=3)
    assert torch.equal(again.sampler(20000, None), term.sampler(20000, None))


def test_observation_residual_is_prediction_minus_value():
    problem = toy_problem()
    model = network_for(problem, lambda d, lo, hi: MLP(d, 1, 8, 1, lower=lo, upper=hi))
    x = problem.term("data").sampler(40, None)
    r = problem.term("data").evaluate(model, x)
    with torch.no_grad():
        expected = model(x[:, :1])[:, 0] - x[:, 1]
    assert torch.allclose(r, expected, rtol=0, atol=1e-15)


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))


def test_read_csv_and_npz(tmp_path):
    write_csv(tmp_path / "obs.csv", ["t", "x", "u"], [[0.5, 0.1, 1.0], [0.25, -0.2, 2.0]])
    points, values = read_observations(tmp_path / "obs.csv", ("x", "t"), ("u",))
    assert points.tolist() == [[0.1, 0.5], [-0.2, 0.25]]  # columns by name, not position
    assert values["u"].tolist() == [1.0, 2.0]
    np.savez(tmp_path / "obs.npz", x=np.array([0.1]), t=np.array([0.5]), u=np.array([3.0]))
    points, values = read_observations(tmp_path / "obs.npz", ("x", "t"), ("u", "v"))
    assert points.tolist() == [[0.1, 0.5]] and list(values) == ["u"]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["x", "t", "w"], [[0, 0, 1]], r"unknown column\(s\) \['w'\]"),
        (["x", "u"], [[0, 1]], r"missing input column\(s\) \['t'\]"),
        (["x", "t"], [[0, 0]], "no observed component"),
        (["x", "t", "u"], [[0, 0, "nan"]], "column 'u' has 1 non-finite"),
        (["x", "t", "u"], [[0, 0]], "line 2 has 2 values"),
        (["x", "t", "u"], [[0, 0, "a"]], "line 2 holds a non-number"),
    ],
)
def test_bad_observation_files_are_refused(tmp_path, header, rows, message):
    write_csv(tmp_path / "obs.csv", header, rows)
    with pytest.raises(ValueError, match=message):
        read_observations(tmp_path / "obs.csv", ("x", "t"), ("u",))


def test_observation_file_errors_without_reading(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_observations(tmp_path / "none.csv", ("x",), ("u",))
    (tmp_path / "obs.txt").write_text("x,u\n0,1\n")
    with pytest.raises(ValueError, match=r"must end in \.csv or \.npz"):
        read_observations(tmp_path / "obs.txt", ("x",), ("u",))


def test_with_observations_replaces_a_term_of_the_same_name(tmp_path):
    problem = get_problem("burgers1d_inverse", observations=50)
    write_csv(tmp_path / "obs.csv", ["x", "t", "u"], [[0.0, 0.5, 0.0], [0.5, 0.5, -0.3]])
    extended = with_observations(problem, tmp_path / "obs.csv")
    assert [t.name for t in extended.terms] == ["pde", "data"]
    assert extended.term("data").n == 2
    extended = with_observations(get_problem("burgers1d"), tmp_path / "obs.csv")
    assert [t.name for t in extended.terms] == ["pde", "bc", "ic", "data"]


def test_unknown_needs_an_initial_value_and_a_declared_name():
    with pytest.raises(ValueError, match="initial value missing"):
        Unknown(None)
    with pytest.raises(ValueError, match="must be finite"):
        Unknown(float("nan"))
    with pytest.raises(ValueError, match="truth has shape"):
        Unknown([1.0, 2.0], truth=1.0)
    with pytest.raises(ValueError, match="must be an Unknown"):
        Problem("p", Box([0.0], [1.0]), [], lambda x: x[:, 0], unknowns={"nu": 0.1})
    u = Jet(torch.zeros(1, 1), unknowns={"nu": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="unknown parameter 'mu'; allowed: nu"):
        u.unknown("mu")


def test_field_unknown_reports_its_relative_error():
    report = Unknown([1.0, 1.0], truth=[1.0, 2.0]).report("k", torch.tensor([1.0, 1.0]))
    assert report == {"param_k_rel_error": pytest.approx(1 / math.sqrt(5))}


def test_burgers_inverse_problem_reports_nu():
    problem = get_problem("burgers1d_inverse", observations=100, noise=0.01)
    assert [t.name for t in problem.terms] == ["pde", "data"]
    assert problem.unknowns["nu"].truth == pytest.approx(0.01 / PI)
    with pytest.raises(ValueError, match="observations must be an integer"):
        get_problem("burgers1d_inverse", observations=10.5)


def test_multistage_keeps_the_unknown_of_the_first_network(tmp_path):
    from pinnopt.config import make_config
    from pinnopt.solve import solve

    cfg = make_config({
        "problem": {"name": "burgers1d_inverse", "params": {"observations": 40},
                    "points": {"pde": 40}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": "gn"},
        "training": {"steps": 3, "networks": 2},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    metrics = solve(cfg)
    assert [s["network"] for s in metrics["stages"]] == [1, 2]
    import csv

    with (tmp_path / "run" / "history.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["param_nu"]]
    first = [float(r["param_nu"]) for r in rows if r["network"] == "1"]
    second = {float(r["param_nu"]) for r in rows if r["network"] == "2"}
    assert first[0] == 0.0 and first[-1] != 0.0  # trained by network 1
    assert second == {first[-1]} == {metrics["param_nu"]}  # then held by it

"""Gauss–Newton / Levenberg–Marquardt: convergence, back ends, damping, state, NaN steps."""

from __future__ import annotations

import math

import pytest
import torch

from pinnopt.models import build_model
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim import build_optimizer
from pinnopt.optim.gauss_newton import GaussNewton, choose_solver, conjugate_gradient
from pinnopt.problems import get_problem

DTYPE = torch.float64


def rosenbrock(w):
    """Rosenbrock's function as residuals: ½‖r‖² with r = (10(y − x²), 1 − x); minimum (1, 1)."""
    return lambda: torch.stack([10 * (w[1] - w[0] ** 2), 1 - w[0]])


@pytest.mark.parametrize("solver", ["dense", "woodbury", "cg", "qr"])
def test_rosenbrock_converges_to_machine_precision(solver):
    w = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=DTYPE))
    opt = GaussNewton([w], solver=solver)
    for _ in range(50):
        opt.step(rosenbrock(w))
    assert torch.allclose(w.detach(), torch.ones(2, dtype=DTYPE), atol=1e-12, rtol=0)
    assert float(0.5 * rosenbrock(w)().detach().square().sum()) < 1e-24


def regression_problem(seed=0, n=20, width=6):
    """A small random nonlinear least-squares problem: fit a tanh net to random data."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("mlp", 2, width=width, depth=2, seed=seed)
    x = torch.rand(n, 2, generator=g, dtype=DTYPE)
    y = torch.randn(n, generator=g, dtype=DTYPE)
    return model, lambda: (model(x)[:, 0] - y) / math.sqrt(n)


def one_step(solver, damping=1e-2, **options):
    model, closure = regression_problem()
    params = list(model.parameters())
    before = torch.cat([p.detach().flatten() for p in params])
    opt = GaussNewton(params, solver=solver, damping=damping, cg_tol=1e-15, **options)
    opt.step(closure)
    after = torch.cat([p.detach().flatten() for p in params])
    return after - before, opt


def test_three_back_ends_give_the_same_step():
    steps = {s: one_step(s) for s in ("dense", "woodbury", "cg", "qr")}
    dense, opt = steps["dense"]
    assert (
        opt.state[opt.param_groups[0]["params"][0]]["rejected"] == 0 and dense.norm() > 1e-3
    )  # a real, accepted step
    for solver in ("woodbury", "cg", "qr"):
        delta, _ = steps[solver]
        torch.testing.assert_close(delta, dense, atol=1e-10, rtol=0)


def test_objective_jacobian_matches_autograd_jacobian_in_the_step():
    problem = get_problem("heat1d")
    points = problem.sample(torch.Generator().manual_seed(0), {"pde": 30, "bc": 8, "ic": 8})
    steps = []
    for use_objective_jacobian in (True, False):
        model = build_model("mlp", 2, problem.domain.lower, problem.domain.upper, width=6)
        objective = Objective(problem, model, points)
        closure = ResidualClosure(objective)
        if not use_objective_jacobian:
            closure = objective.residual_vector  # a plain closure: J by autograd
        opt = GaussNewton(model.parameters(), solver="dense")
        opt.step(closure)
        steps.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(steps[0], steps[1], atol=1e-12, rtol=0)


def test_linear_least_squares_is_solved_in_one_step_and_damping_falls():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 5, generator=g, dtype=DTYPE)
    b = torch.randn(30, generator=g, dtype=DTYPE)
    w = torch.nn.Parameter(torch.zeros(5, dtype=DTYPE))
    opt = GaussNewton([w], damping=1e-10)
    opt.step(lambda: a @ w - b)
    expected = torch.linalg.lstsq(a, b.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(w.detach(), expected, atol=1e-8, rtol=0)
    assert opt.state[w]["damping"] < 1e-10  # gain ratio 1: μ ← μ/3


def test_damping_rises_after_a_rejected_step_and_falls_after_good_ones():
    # sin is flat near π/2, so the undamped step overshoots far and raises the loss
    w = torch.nn.Parameter(torch.tensor([1.5], dtype=DTYPE))
    opt = GaussNewton([w], damping=1e-8)
    closure = lambda: 10 * torch.sin(w) - 9.0  # noqa: E731
    loss0 = float(0.5 * closure().detach().square().sum())
    opt.step(closure)
    state = opt.state[w]
    assert state["rejected"] >= 1
    assert state["damping"] > 1e-8
    high = state["damping"]
    assert float(0.5 * closure().detach().square().sum()) < loss0  # the retried step is accepted
    for _ in range(20):
        opt.step(closure)
    assert state["damping"] < high
    assert float(0.5 * closure().detach().square().sum()) < 1e-25


def test_a_step_that_produces_nan_is_rejected_not_applied():
    w = torch.nn.Parameter(torch.tensor([0.0], dtype=DTYPE))

    def closure():  # r = w − 5, undefined beyond w = 2
        return torch.where(w > 2, torch.full_like(w, math.nan), w - 5)

    opt = GaussNewton([w], damping=1e-6)
    opt.step(closure)
    assert opt.state[w]["rejected"] >= 1
    assert torch.isfinite(w).all() and 0 < float(w.detach()) <= 2


def test_nan_at_the_start_leaves_parameters_alone():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=DTYPE))
    opt = GaussNewton([w])
    loss = opt.step(lambda: w * math.nan)
    assert not math.isfinite(float(loss))
    assert w.detach().tolist() == [1.0, 2.0]


def test_state_dict_round_trips_exactly():
    def run(opt, model, closure, n):
        for _ in range(n):
            opt.step(closure)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    model_a, closure_a = regression_problem()
    opt_a = GaussNewton(model_a.parameters())
    run(opt_a, model_a, closure_a, 3)
    saved = opt_a.state_dict()
    model_b, closure_b = regression_problem()
    model_b.load_state_dict(model_a.state_dict())
    opt_b = GaussNewton(model_b.parameters(), damping=0.5)
    opt_b.load_state_dict(saved)
    assert opt_b.state_dict() == saved
    torch.testing.assert_close(run(opt_a, model_a, closure_a, 4), run(opt_b, model_b, closure_b, 4),
                               atol=0, rtol=0)  # fmt: skip


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 0.0}, "Invalid lr: 0.0"),
        ({"damping": -1.0}, "Invalid damping"),
        ({"damping": 1e20}, "Invalid damping"),
        ({"solver": "svd"}, "Invalid solver: 'svd'; allowed: auto, dense, woodbury, cg, qr"),
        ({"max_retries": -1}, "Invalid max_retries: -1"),
        ({"line_search_steps": 0}, "Invalid line_search_steps: 0"),
        ({"cg_tol": 0.0}, "Invalid cg_tol: 0.0"),
        ({"cg_max_iter": 0}, "Invalid cg_max_iter: 0"),
    ],
)
def test_bad_hyperparameters_are_named(options, match):
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=match):
        GaussNewton([w], **options)


def test_one_parameter_group_only():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="one parameter group"):
        GaussNewton([{"params": [a]}, {"params": [b]}])


def test_line_search_keeps_the_best_scaled_step():
    w = torch.nn.Parameter(torch.tensor([1.5], dtype=DTYPE))
    opt = GaussNewton([w], damping=1e-8, line_search=True)
    closure = lambda: 10 * torch.sin(w) - 9.0  # noqa: E731
    for _ in range(30):
        opt.step(closure)
    assert float(0.5 * closure().detach().square().sum()) < 1e-25


def test_auto_solver_by_size():
    assert choose_solver(1200, 129) == "dense"
    assert choose_solver(500, 5000) == "woodbury"
    assert choose_solver(4000, 50_000) == "cg"
    assert choose_solver(10**6, 100) == "cg"


def test_auto_solver_is_recorded_in_state():
    _, opt = one_step("auto")
    assert opt.solver == "woodbury"  # 20 residuals, 67 parameters
    assert opt.state[opt.param_groups[0]["params"][0]]["n_residuals"] == 20


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(8, 8, generator=g, dtype=DTYPE)
    a = m @ m.t() + 0.1 * torch.eye(8, dtype=DTYPE)
    b = torch.randn(8, generator=g, dtype=DTYPE)
    x = conjugate_gradient(lambda v: a @ v, b, 1e-14, 100)
    torch.testing.assert_close(a @ x, b, atol=1e-12, rtol=0)


def test_registered_as_gn_with_residual_closure():
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=DTYPE))
    opt = build_optimizer("gn", [w], solver="cg")
    assert isinstance(opt, GaussNewton) and opt.param_groups[0]["solver"] == "cg"

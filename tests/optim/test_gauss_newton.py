"""Gauss–Newton / Levenberg–Marquardt: convergence, back ends, damping, state, NaN steps,
and the normal equations summed over blocks of points (the ``chunked`` back end)."""

from __future__ import annotations

import math

import pytest
import torch

from pinnopt.models import build_model
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim import build_optimizer, gauss_newton
from pinnopt.optim.gauss_newton import GaussNewton, choose_solver, conjugate_gradient
from pinnopt.problems import get_problem

DTYPE = torch.float64


def rosenbrock(w):
    """Rosenbrock's function as residuals: ½‖r‖² with r = (10(y − x²), 1 − x); minimum (1, 1)."""
    return lambda: torch.stack([10 * (w[1] - w[0] ** 2), 1 - w[0]])


@pytest.mark.parametrize("solver", ["dense", "chunked", "woodbury", "cg", "qr"])
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


def test_all_back_ends_give_the_same_step():
    steps = {s: one_step(s) for s in ("dense", "chunked", "woodbury", "cg", "qr")}
    dense, opt = steps["dense"]
    assert (
        opt.state[opt.param_groups[0]["params"][0]]["rejected"] == 0 and dense.norm() > 1e-3
    )  # a real, accepted step
    for solver in ("chunked", "woodbury", "cg", "qr"):
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


@pytest.mark.parametrize("solver", ["auto", "chunked"])
def test_state_dict_round_trips_exactly(solver):
    def run(opt, model, closure, n):
        for _ in range(n):
            opt.step(closure)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    model_a, closure_a = regression_problem()
    opt_a = GaussNewton(model_a.parameters(), solver=solver)
    run(opt_a, model_a, closure_a, 3)
    saved = opt_a.state_dict()
    model_b, closure_b = regression_problem()
    model_b.load_state_dict(model_a.state_dict())
    opt_b = GaussNewton(model_b.parameters(), damping=0.5, solver=solver)
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
        (
            {"solver": "svd"},
            "Invalid solver: 'svd'; allowed: auto, dense, woodbury, cg, qr, chunked$",
        ),
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
    # J too large to hold (M·P > 2²⁵) but P small enough to factor: JᵀJ from blocks of rows
    assert choose_solver(10**6, 100) == "chunked"
    assert choose_solver(200_000, 1185) == "chunked"
    assert choose_solver(10**5, 6000) == "chunked" and choose_solver(10**5, 6001) == "cg"


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


# --------------------------------------------------------------------------- chunked


def _weighted_objective(name="wave1d"):
    """An objective with term weights and per-point weights on two of its terms."""
    problem = get_problem(name)
    counts = {t.name: 10 + 3 * i for i, t in enumerate(problem.terms)}
    points = problem.sample(torch.Generator().manual_seed(0), counts)
    model = build_model("mlp", problem.dim, problem.domain.lower, problem.domain.upper,
                        width=6, depth=2, seed=1)  # fmt: skip
    objective = Objective(problem, model, points, weights={problem.terms[0].name: 2.5})
    g = torch.Generator().manual_seed(3)
    objective.set_point_weights(
        {t.name: 2 * torch.rand(counts[t.name], generator=g, dtype=DTYPE)
         for t in problem.terms[:2]}
    )  # fmt: skip
    return objective


@pytest.mark.parametrize("chunk", [None, 3, 1])
def test_normal_equations_are_those_of_the_jacobian(chunk):
    objective = _weighted_objective()
    params = list(objective.model.parameters())[::-1]  # columns follow the order asked for
    r_ref, J = objective.jacobian(params)
    r, gram, grad = objective.normal_equations(params, chunk=chunk)  # 3, 1 < 10 points a term
    torch.testing.assert_close(r, r_ref, atol=1e-15, rtol=1e-12)  # batch size: rounding
    gram_ref, grad_ref = J.t() @ J, J.t() @ r_ref
    assert float((gram - gram_ref).abs().max()) <= 1e-12 * float(gram_ref.abs().max())
    assert float((grad - grad_ref).abs().max()) <= 1e-12 * float(grad_ref.abs().max())
    # the per-point weights are in: without them the matrix is another one
    objective.set_point_weights({t.name: None for t in objective.problem.terms})
    _, plain, _ = objective.normal_equations(params, chunk=chunk)
    assert float((plain - gram_ref).abs().max()) > 1e-3 * float(gram_ref.abs().max())


def test_normal_equations_through_the_closure_observe_the_whole_residual():
    objective = _weighted_objective("heat1d")
    seen = []
    closure = ResidualClosure(objective, observe=seen.append)
    params = list(objective.model.parameters())
    r, gram, grad = closure.normal_equations(params)
    assert len(seen) == 1 and seen[0] is r and r.shape == (sum(objective.pass_sizes()),)
    torch.testing.assert_close(r, objective.residual_vector().detach(), atol=1e-15, rtol=1e-12)
    value = closure.without_graph()
    assert len(seen) == 2 and seen[1] is value and not value.requires_grad
    torch.testing.assert_close(value, r, atol=1e-15, rtol=1e-12)
    objective.points = dict(reversed(objective.points.items()))  # terms keep r's order
    torch.testing.assert_close(closure.without_graph(), r, atol=1e-15, rtol=1e-12)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        objective.normal_equations(params, chunk=0)
    with pytest.raises(ValueError, match="not parameters of the objective's model"):
        objective.normal_equations([torch.nn.Parameter(torch.zeros(2))])


def _objective_step(solver, closure_kind="residual", **options):
    """δ of one step on heat1d (term and point weights set) through the given closure kind."""
    objective = _weighted_objective("heat1d")
    params = list(objective.model.parameters())
    closure = ResidualClosure(objective)
    if closure_kind == "plain":  # autograd only
        closure = objective.residual_vector
    elif closure_kind == "jacobian":  # J whole, no normal_equations

        class WithJacobian:
            def __call__(self):
                return objective.residual_vector()

            def jacobian(self, params):
                return objective.jacobian(params)

        closure = WithJacobian()
    before = torch.cat([p.detach().flatten() for p in params])
    opt = GaussNewton(params, solver=solver, damping=1e-2, **options)
    opt.step(closure)
    assert opt.solver == solver and opt.state[params[0]]["rejected"] == 0
    return torch.cat([p.detach().flatten() for p in params]) - before


@pytest.mark.parametrize("closure_kind", ["residual", "jacobian", "plain"])
def test_chunked_step_is_the_dense_step(closure_kind, monkeypatch):
    dense = _objective_step("dense")
    assert dense.norm() > 1e-3  # a real step
    # blocks of 5 points: smaller than every term (10, 13, 16 points), so sums cross terms
    for name in ("JACOBIAN_CHUNK_ENTRIES", "NORMAL_EQUATIONS_CHUNK_ENTRIES"):
        monkeypatch.setattr(f"pinnopt.objective.{name}", 5 * dense.numel())
    chunked = _objective_step("chunked", closure_kind)
    torch.testing.assert_close(chunked, dense, atol=1e-10, rtol=0)


def test_chunked_never_forms_the_whole_jacobian(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the whole Jacobian was formed")

    monkeypatch.setattr(Objective, "jacobian", refuse)
    assert _objective_step("chunked").norm() > 1e-3


def test_trial_losses_are_evaluated_without_a_graph():
    objective = _weighted_objective("heat1d")
    calls = []

    class Recording(ResidualClosure):
        def __call__(self):
            calls.append(("call", torch.is_grad_enabled()))
            return super().__call__()

        def without_graph(self):
            calls.append(("without_graph", torch.is_grad_enabled()))
            return super().without_graph()

    opt = GaussNewton(objective.model.parameters(), solver="chunked", line_search=True)
    opt.step(Recording(objective))
    assert len(calls) >= 8 and set(calls) == {("without_graph", False)}  # 8 step sizes a try
    # a plain closure is called, under no_grad
    calls.clear()
    plain = Recording(objective)
    opt.step(lambda: plain())
    assert len(calls) >= 9 and set(calls[1:]) == {("call", False)}  # calls[0]: r with graph


def test_auto_picks_chunked_when_the_jacobian_is_too_large(monkeypatch):
    objective = _weighted_objective("heat1d")
    params = list(objective.model.parameters())
    n_params, n_residuals = sum(p.numel() for p in params), sum(objective.pass_sizes())
    assert choose_solver(n_residuals, n_params) == "woodbury"  # J forms, by default
    monkeypatch.setattr(gauss_newton, "MAX_JACOBIAN_ENTRIES", n_params * n_residuals - 1)
    calls = []
    monkeypatch.setattr(Objective, "jacobian", lambda *a: calls.append("jacobian"))

    class Recording(ResidualClosure):
        def __call__(self):  # r with its graph: all M points at once
            calls.append("call")
            return super().__call__()

    opt = GaussNewton(params)
    closure = Recording(objective)
    loss0 = float(objective.loss())
    for _ in range(3):
        opt.step(closure)
    # M from the closure's pass_sizes: neither J nor a graph of r, not even at the first step
    assert opt.solver == "chunked" and calls == []
    assert opt.state[params[0]]["n_residuals"] == n_residuals
    assert float(objective.loss()) < loss0
    # with P above the factor limit as well, auto runs CG
    monkeypatch.setattr(gauss_newton, "MAX_FACTOR", n_params - 1)
    opt.step(closure)
    assert opt.solver == "cg"


def test_gn_memory_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("gn_memory")
    out = tmp_path / "table.md"
    # one fresh process (chunked); dense is skipped: 8·(600·105 + 2·105²) B ≈ 0.66 MB > 1e-4 GB
    rows = module.main(["--smoke", "--max-gb", "1e-4", "--out", str(out)])
    assert [(r["solver"], r["M"], r["P"]) for r in rows] == [
        ("chunked", 600, 105),
        ("dense", 600, 105),
    ]
    assert rows[0]["seconds"] > 0 and rows[0]["peak_mb"] >= rows[0]["start_mb"] > 10
    assert rows[1]["skipped"] == "needs ~0.0 GB > 0.0001 GB"
    assert module.matrix_mb("dense", 600, 105) == pytest.approx(
        8 * (600 * 105 + 2 * 105**2) / 2**20
    )
    text = out.read_text()
    assert "`python benchmarks/gn_memory.py --smoke --max-gb 1e-4" in text
    assert "| chunked | 600 | 105 |" in text and "| dense | 600 | 105 |" in text

"""The contract: r(θ) = [sqrt(w_k / N_k) r_k], loss = ½‖r‖² = Σ_k ½ w_k mean r_k²."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from pinnopt.derivatives import jet_autograd
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term, get_problem

DTYPE = torch.float64


def _setup(name: str = "wave1d", counts: dict[str, int] | None = None):
    problem = get_problem(name)
    counts = counts or {t.name: 10 + 3 * i for i, t in enumerate(problem.terms)}
    points = problem.sample(torch.Generator().manual_seed(0), counts)
    model = build_model(
        "mlp", problem.dim, problem.domain.lower, problem.domain.upper, width=8, depth=2
    ).to(DTYPE)
    return problem, model, points


def _reference_residuals(problem: Problem, model: nn.Module, points: dict[str, Tensor]):
    """Residuals through the slow nested-autograd jet, independent of the objective."""
    return {
        t.name: t.residual(jet_autograd(model, points[t.name], t.order), points[t.name])
        for t in problem.terms
    }


def test_loss_is_half_squared_norm_and_sum_of_terms():
    problem, model, points = _setup()
    objective = Objective(problem, model, points, weights={"bc": 3.0, "ic_t": 0.5})
    r = objective.residual_vector()
    loss, parts = objective.loss_terms()
    assert r.shape == (sum(p.shape[0] for p in points.values()),)
    assert list(parts) == ["pde", "bc", "ic", "ic_t"]
    torch.testing.assert_close(loss, 0.5 * r.square().sum(), atol=0, rtol=1e-14)
    torch.testing.assert_close(loss, sum(parts.values()), atol=0, rtol=1e-14)
    torch.testing.assert_close(objective.loss(), loss, atol=0, rtol=0)
    ref = _reference_residuals(problem, model, points)
    for name, part in parts.items():
        w = objective.weights[name]
        expected = 0.5 * w * ref[name].square().mean()
        torch.testing.assert_close(part, expected, atol=1e-14, rtol=1e-10)
        assert float(part.detach()) > 0, name  # every term of a random network is non-zero


def test_residual_vector_entries_are_scaled_residuals():
    problem, model, points = _setup()
    weights = {"pde": 2.0, "ic": 0.0}
    objective = Objective(problem, model, points, weights=weights)
    residuals = objective.residuals()
    ref = _reference_residuals(problem, model, points)
    assert list(residuals) == [t.name for t in problem.terms]
    pieces = []
    for t in problem.terms:
        n = points[t.name].shape[0]
        assert residuals[t.name].shape == (n,)
        torch.testing.assert_close(residuals[t.name], ref[t.name], atol=1e-11, rtol=1e-9)
        w = weights.get(t.name, t.weight)
        pieces.append(math.sqrt(w / n) * ref[t.name])
    torch.testing.assert_close(
        objective.residual_vector(), torch.cat(pieces), atol=1e-12, rtol=1e-9
    )
    # the ic block (weight 0) is exactly zero
    n_pde, n_bc, n_ic = (points[k].shape[0] for k in ("pde", "bc", "ic"))
    block = objective.residual_vector()[n_pde + n_bc : n_pde + n_bc + n_ic]
    assert torch.count_nonzero(block) == 0


def test_weights_default_to_terms_and_override_scales_parts():
    problem, model, points = _setup("poisson2d", counts={"pde": 20, "bc": 12})
    default = Objective(problem, model, points)
    assert default.weights == {"pde": 1.0, "bc": 1.0}
    heavy = Objective(problem, model, points, weights={"bc": 10.0})
    assert heavy.weights == {"pde": 1.0, "bc": 10.0}
    _, p_default = default.loss_terms()
    _, p_heavy = heavy.loss_terms()
    torch.testing.assert_close(p_heavy["bc"], 10 * p_default["bc"], atol=0, rtol=1e-14)
    torch.testing.assert_close(p_heavy["pde"], p_default["pde"], atol=0, rtol=0)


def test_term_weight_is_the_default():
    box = Box([0.0], [1.0])
    terms = [
        Term("a", box.interior, lambda u, x: u.u - 1.0, order=0, n=4, weight=4.0),
        Term("b", box.interior, lambda u, x: u.u + 1.0, order=0, n=9),
    ]
    problem = Problem("weights", box, terms, lambda x: x[:, 0])
    points = {"a": torch.rand(4, 1, dtype=DTYPE), "b": torch.rand(9, 1, dtype=DTYPE)}

    class Zero(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.zeros(x.shape[0], 1, dtype=x.dtype)

    objective = Objective(problem, Zero(), points)
    assert objective.weights == {"a": 4.0, "b": 1.0}
    # r_a = -1 at 4 points, r_b = +1 at 9 points
    r = objective.residual_vector()
    expected = torch.cat(
        [torch.full((4,), -1.0, dtype=DTYPE), torch.full((9,), 1 / 3, dtype=DTYPE)]
    )
    torch.testing.assert_close(r, expected, atol=1e-15, rtol=0)
    loss, parts = objective.loss_terms()
    assert float(parts["a"]) == pytest.approx(2.0, rel=1e-15)  # ½ · 4 · mean(1)
    assert float(parts["b"]) == pytest.approx(0.5, rel=1e-15)
    assert float(loss) == pytest.approx(2.5, rel=1e-15)


def test_unknown_term_in_weights_raises():
    problem, model, points = _setup("heat1d")
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['pdf'\] in weights; allowed"):
        Objective(problem, model, points, weights={"pdf": 1.0})


def test_missing_points_raise():
    problem, model, points = _setup("heat1d")
    del points["ic"]
    with pytest.raises(ValueError, match=r"points missing for term\(s\) \['ic'\]"):
        Objective(problem, model, points)


@pytest.mark.parametrize("bad", [-1.0, -1e-12, float("nan"), float("inf")])
def test_invalid_weight_raises(bad):
    problem, model, points = _setup("heat1d")
    with pytest.raises(ValueError, match="weight of term 'bc' must be finite and >= 0"):
        Objective(problem, model, points, weights={"bc": bad})


def test_exact_solution_gives_zero_loss():
    problem = get_problem("poisson3d")
    points = problem.sample(torch.Generator().manual_seed(1), {"pde": 30, "bc": 20})

    class Exact(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return problem.exact(x).unsqueeze(1)

    objective = Objective(problem, Exact(), points)
    assert float(objective.loss()) < 1e-24
    assert float(objective.residual_vector().abs().max()) < 1e-11


def test_loss_gradient_matches_finite_difference_and_gauss_newton_form():
    """∇loss = Jᵀ r, and both agree with a central difference along a random direction."""
    problem, model, points = _setup("heat1d", counts={"pde": 12, "bc": 6, "ic": 6})
    objective = Objective(problem, model, points, weights={"ic": 5.0})
    params = list(model.parameters())
    loss = objective.loss()
    grads = torch.autograd.grad(loss, params)

    r = objective.residual_vector()
    jt_r = torch.autograd.grad(r, params, grad_outputs=r.detach())
    for a, b in zip(grads, jt_r):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=1e-12)

    g = torch.Generator().manual_seed(9)
    direction = [torch.randn(p.shape, generator=g, dtype=DTYPE) for p in params]
    predicted = sum(float((gi * vi).sum()) for gi, vi in zip(grads, direction))
    eps = 1e-6
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for p, v in zip(params, direction):
                p.add_(sign * eps * v)
            values.append(float(objective.loss()))
            for p, v in zip(params, direction):
                p.sub_(sign * eps * v)
    assert (values[0] - values[1]) / (2 * eps) == pytest.approx(predicted, rel=1e-6, abs=1e-9)


def test_points_and_weights_can_change_after_construction():
    """Adaptive sampling swaps points; loss weighting changes weights (see the design)."""
    problem, model, points = _setup("poisson1d", counts={"pde": 8, "bc": 2})
    objective = Objective(problem, model, points)
    before = objective.loss().item()
    objective.points = problem.sample(torch.Generator().manual_seed(4), {"pde": 16, "bc": 2})
    assert objective.residual_vector().shape == (18,)
    assert objective.loss().item() != before
    _, parts = objective.loss_terms()
    objective.weights["bc"] = 0.0
    loss, new_parts = objective.loss_terms()
    assert new_parts["bc"].item() == 0.0
    torch.testing.assert_close(loss, parts["pde"], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["wave1d", "burgers1d", "poisson2d"])
def test_jacobian_rows_are_gradients_of_each_residual(name):
    problem, model, points = _setup(name)
    objective = Objective(problem, model, points, weights={problem.terms[0].name: 2.5})
    params = list(model.parameters())[::-1]  # columns follow the order asked for
    r, jac = objective.jacobian(params)
    vector = objective.residual_vector()
    torch.testing.assert_close(r, vector.detach(), atol=1e-15, rtol=0)
    rows = [
        torch.cat([g.flatten() for g in torch.autograd.grad(vector[i], params, retain_graph=True)])
        for i in range(vector.numel())
    ]
    torch.testing.assert_close(jac, torch.stack(rows), atol=1e-13, rtol=0)


def test_jacobian_refuses_foreign_parameters():
    problem, model, points = _setup("poisson2d")
    with pytest.raises(ValueError, match="not parameters of the objective's model"):
        Objective(problem, model, points).jacobian([nn.Parameter(torch.zeros(2))])


def test_split_and_term_losses_follow_the_terms():
    problem, model, points = _setup("heat1d")
    objective = Objective(problem, model, points)
    r = objective.residual_vector().detach()
    parts = objective.split(r)
    assert [p.numel() for p in parts.values()] == [points[t.name].shape[0] for t in problem.terms]
    _, expected = objective.loss_terms()
    for name, value in objective.term_losses(r).items():
        torch.testing.assert_close(value, expected[name].detach(), atol=1e-15, rtol=1e-13)


def _problem_with_bc(bc, n_bc: int = 200):
    box = Box([0.0], [1.0])
    terms = [
        Term("pde", box.interior, lambda u, x: u.d2(0) + 1.0, order=2, n=30),
        Term("bc", box.boundary(), bc, order=0, n=n_bc),
    ]
    problem = Problem("shapes", box, terms, lambda x: x[:, 0])
    model = build_model("mlp", 1, box.lower, box.upper, width=8, depth=2).to(DTYPE)
    return Objective(problem, model, problem.sample(torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("method", ["residuals", "residual_vector", "loss", "loss_terms"])
def test_residual_of_wrong_shape_names_the_term(method):
    objective = _problem_with_bc(lambda u, x: u.u.unsqueeze(1))  # (N, 1), not (N,)
    match = r"term 'bc': residual must have shape \(N,\) = \(200,\), got \(200, 1\)"
    with pytest.raises(ValueError, match=match):
        getattr(objective, method)()


@pytest.mark.parametrize(
    ("bc", "got"),
    [
        (lambda u, x: u.u.sum(), r"got \(\)"),  # a scalar
        (lambda u, x: torch.stack([u.u, u.u]), r"got \(2, 200\)"),
        (lambda u, x: 0.0, "must return a tensor of shape .* got float"),
    ],
)
def test_residual_shape_check_catches_scalars_transposes_and_non_tensors(bc, got):
    with pytest.raises(ValueError, match=r"term 'bc': residual .*" + got):
        _problem_with_bc(bc).residual_vector()


def test_jacobian_checks_the_residual_shape_per_point():
    objective = _problem_with_bc(lambda u, x: u.u.unsqueeze(1))
    match = (
        r"term 'bc': residual must have shape \(N,\) = \(1,\) "
        r"\(one point at a time, for the Jacobian\), got \(1, 1\)"
    )
    with pytest.raises(ValueError, match=match):
        objective.jacobian()
    # a residual that reads a fixed (N,) tensor instead of x is not pointwise: the full
    # evaluation has the right shape, but a per-point row would silently use target[0]
    target = torch.linspace(0.0, 1.0, 200, dtype=DTYPE)
    objective = _problem_with_bc(lambda u, x: u.u - target)
    assert objective.residual_vector().shape == (230,)
    with pytest.raises(ValueError, match=r"term 'bc': .* = \(1,\) .*got \(200,\)"):
        objective.jacobian()

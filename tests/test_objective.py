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


# --------------------------------------------------------------------------- seams


def _halves(points: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    first = {k: v[: v.shape[0] // 2] for k, v in points.items()}
    second = {k: v[v.shape[0] // 2 :] for k, v in points.items()}
    return first, second


def test_global_counts_make_the_losses_of_two_halves_add_up_to_the_full_one():
    problem, model, points = _setup(counts={"pde": 40, "bc": 18, "ic": 13, "ic_t": 21})
    weights = {"bc": 3.0, "ic_t": 0.5}
    full = Objective(problem, model, points, weights)
    sizes = {k: v.shape[0] for k, v in points.items()}
    halves = [Objective(problem, model, h, weights, counts=sizes) for h in _halves(points)]
    loss, parts = full.loss_terms()
    half_parts = [h.loss_terms()[1] for h in halves]
    for name in parts:
        torch.testing.assert_close(
            half_parts[0][name] + half_parts[1][name], parts[name], atol=0, rtol=1e-13
        )
    torch.testing.assert_close(sum(h.loss() for h in halves), loss, atol=0, rtol=1e-13)
    # the two halves' residual vectors and Jacobian rows are the full one's, term by term
    r, J = full.jacobian()
    (r0, J0), (r1, J1) = (h.jacobian() for h in halves)
    for name in parts:
        for whole, first, second in ((r, r0, r1), (J, J0, J1)):
            torch.testing.assert_close(
                torch.cat([halves[0].split(first)[name], halves[1].split(second)[name]]),
                full.split(whole)[name],
                atol=1e-15,
                rtol=1e-12,
            )
    # without counts each half normalises by its own size: twice the full scale
    local = Objective(problem, model, _halves(points)[0], weights)
    assert local.scale("pde", 20) == pytest.approx(math.sqrt(2) * full.scale("pde", 40))


def test_default_counts_are_the_local_sizes_bit_for_bit():
    problem, model, points = _setup()
    sizes = {k: v.shape[0] for k, v in points.items()}
    plain, counted = (
        Objective(problem, model, points),
        Objective(problem, model, points, None, sizes),
    )
    torch.testing.assert_close(counted.residual_vector(), plain.residual_vector(), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({"pdf": 3}, r"unknown term\(s\) \['pdf'\] in counts; allowed"),
        ({"pde": 0}, r"count of term 'pde' must be an integer >= 1, got 0"),
        ({"pde": 2.5}, r"count of term 'pde' must be an integer >= 1, got 2.5"),
    ],
)
def test_bad_counts_are_named(counts, match):
    problem, model, points = _setup("heat1d")
    with pytest.raises(ValueError, match=match):
        Objective(problem, model, points, counts=counts)


def test_loss_of_and_term_losses_of_a_residual_vector_are_the_objectives():
    problem, model, points = _setup()
    objective = Objective(problem, model, points, weights={"bc": 3.0})
    r = objective.residual_vector()
    loss, parts = objective.loss_terms()
    assert objective.loss_of(r).item() == (0.5 * r.dot(r)).item()  # the formula, bit for bit
    torch.testing.assert_close(objective.loss_of(r), loss, atol=0, rtol=1e-14)
    for name, part in objective.term_losses(r).items():
        assert part.item() == parts[name].item(), name


def test_residuals_at_other_points_match_the_objectives_residuals():
    problem, model, points = _setup()
    objective = Objective(problem, model, points)
    with torch.no_grad():
        ref = objective.residuals()
    at = objective.residuals_at(points)
    assert list(at) == list(ref)
    for name in ref:
        assert not at[name].requires_grad
        torch.testing.assert_close(at[name], ref[name], atol=0, rtol=0)
    # one term, a tensor of points, any chunk size
    pde = objective.residuals_at(points["pde"], term="pde", chunk=3)
    torch.testing.assert_close(pde, ref["pde"], atol=1e-15, rtol=1e-13)
    with pytest.raises(ValueError, match="term is needed when points is a tensor"):
        objective.residuals_at(points["pde"])
    with pytest.raises(ValueError, match=r"unknown term 'pdf'; allowed"):
        objective.residuals_at(points["pde"], term="pdf")
    with pytest.raises(ValueError, match=r"chunk must be >= 1, got 0"):
        objective.residuals_at(points["pde"], term="pde", chunk=0)


def test_set_points_and_set_weights_change_the_objective_and_notify_once():
    problem, model, points = _setup()
    objective = Objective(problem, model, points)
    seen: list[str] = []
    unsubscribe = objective.subscribe(seen.append)
    new = problem.sample(torch.Generator().manual_seed(5), {"pde": 7})["pde"].to(DTYPE)
    objective.set_points({"pde": new})
    assert seen == ["points"]
    assert objective.points["pde"] is new and objective.points["bc"] is points["bc"]
    assert points["pde"] is not new  # the caller's dict is not changed in place
    assert objective.residual_vector().shape[0] == 7 + sum(
        v.shape[0] for k, v in points.items() if k != "pde"
    )
    before = objective.loss_terms()[1]
    objective.set_weights({"bc": 4.0})
    assert seen == ["points", "weights"]
    assert objective.weights["bc"] == 4.0 and objective.weights["pde"] == 1.0
    torch.testing.assert_close(
        objective.loss_terms()[1]["bc"], 4 * before["bc"], rtol=1e-14, atol=0
    )
    with pytest.raises(ValueError, match="weight of term 'bc' must be finite and >= 0"):
        objective.set_weights({"bc": -1.0})
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['pdf'\] in points"):
        objective.set_points({"pdf": new})
    assert objective.weights["bc"] == 4.0 and seen == ["points", "weights"]  # nothing changed
    unsubscribe()
    objective.set_weights({"bc": 1.0})
    assert seen == ["points", "weights"]


def test_point_weights_scale_rows_of_the_residual_vector_and_the_jacobian():
    problem, model, points = _setup()
    objective = Objective(problem, model, points, weights={"bc": 3.0})
    r0, J0 = objective.jacobian()
    m = torch.linspace(0.0, 2.0, points["bc"].shape[0], dtype=DTYPE)
    seen = []
    objective.subscribe(seen.append)
    objective.set_point_weights({"bc": m})
    assert seen == ["weights"]
    rows = torch.cat(
        [m if k == "bc" else torch.ones(len(x), dtype=DTYPE) for k, x in points.items()]
    )
    r, J = objective.jacobian()
    torch.testing.assert_close(r, rows * r0, atol=0, rtol=1e-14)
    torch.testing.assert_close(J, rows[:, None] * J0, atol=0, rtol=1e-14)
    torch.testing.assert_close(objective.residual_vector().detach(), r, atol=1e-15, rtol=1e-12)
    bc = objective.residuals()["bc"].detach()
    expected = 0.5 * 3.0 * (m * bc).square().mean()
    torch.testing.assert_close(
        objective.loss_terms()[1]["bc"].detach(), expected, rtol=1e-12, atol=0
    )
    objective.set_point_weights({"bc": None})
    torch.testing.assert_close(objective.residual_vector().detach(), r0, atol=1e-15, rtol=1e-12)


def test_new_points_drop_the_point_weights_of_their_term_only():
    problem, model, points = _setup()
    objective = Objective(problem, model, points)
    objective.set_point_weights(
        {"pde": torch.ones(len(points["pde"])), "bc": 2 * torch.ones(len(points["bc"]))}
    )
    assert objective.point_weights["pde"].dtype == DTYPE
    objective.set_points({"pde": points["pde"][:4]})
    assert set(objective.point_weights) == {"bc"}


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"bc": torch.ones(3)}, r"point weights of term 'bc' must have shape \(13,\), got \(3,\)"),
        ({"bc": -torch.ones(13)}, r"point weights of term 'bc' must be finite and >= 0"),
        ({"bc": torch.full((13,), math.nan)}, r"point weights of term 'bc' must be finite"),
        ({"nope": torch.ones(13)}, r"unknown term\(s\) \['nope'\] in point weights"),
    ],
)
def test_bad_point_weights_are_named_and_change_nothing(weights, match):
    problem, model, points = _setup()
    objective = Objective(problem, model, points)
    with pytest.raises(ValueError, match=match):
        objective.set_point_weights(weights)
    assert objective.point_weights == {}

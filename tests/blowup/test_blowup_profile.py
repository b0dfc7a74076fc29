import math

import pytest
import torch

from pinnopt.blowup.ansatz import BurgersAnsatz
from pinnopt.blowup.burgers import burgers_lambda
from pinnopt.blowup.profile import ProfileSolver, chebyshev_nodes, find_profile
from pinnopt.derivatives import jet, jet_torch_func, supports_jet


def random_ansatz(order=1, trainable=True, degree=12):
    model = BurgersAnsatz(order, 0.3, degree=degree, trainable_lambda=trainable)
    with torch.no_grad():
        model.network.coeffs.copy_(torch.randn_like(model.network.coeffs, dtype=torch.float64))
    return model


def test_ansatz_is_odd_with_unit_slope_and_far_field_for_any_coefficients():
    torch.manual_seed(0)
    model = random_ansatz(order=2)
    y = torch.linspace(0.01, 50.0, 200, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(model(-y)[:, 0], -model(y)[:, 0], atol=1e-14, rtol=1e-14)
    j = jet(model, torch.zeros(1, 1, dtype=torch.float64), 1)
    assert j.d(0)[0].item() == pytest.approx(-1.0, abs=1e-14)
    far = torch.tensor([[1e30]], dtype=torch.float64)
    assert model(far)[0, 0].item() / -(1e30**model.beta) == pytest.approx(1.0, rel=1e-3)
    assert torch.all(model(y)[:, 1] == model.lam)


@pytest.mark.parametrize("order", [0, 3])
def test_the_chain_rule_jet_equals_torch_func_derivatives(order):
    torch.manual_seed(order)
    model = random_ansatz(order=order, degree=16)
    y = torch.cat([torch.linspace(-5.0, 5.0, 21), torch.tensor([1e3, 1e10, -1e15])])
    y = y.to(torch.float64).unsqueeze(1)
    assert supports_jet(model)  # jet() takes the chain-rule path
    fast, reference = jet(model, y), jet_torch_func(model, y)
    for part, ref in zip(fast.parts[:3], reference.parts[:3]):
        torch.testing.assert_close(part, ref, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(jet(model, y, trace=True).lap, reference.hess_diag[:, 0])


def test_the_free_part_must_support_the_jet():
    with pytest.raises(ValueError, match="must support the forward jet"):
        BurgersAnsatz(0, 0.5, network=torch.nn.Bilinear(1, 1, 1))


def test_zeta_and_its_inverse():
    model = BurgersAnsatz(3, 0.1)
    z = chebyshev_nodes(50)
    assert bool((z > 0).all() and (z < 1).all())
    torch.testing.assert_close(model.zeta(model.y_of_zeta(z)), z, atol=1e-13, rtol=0)
    assert model.zeta(torch.zeros(1, dtype=torch.float64)).item() == 1.0


def test_projection_makes_the_residual_orthogonal_to_its_lambda_direction():
    torch.manual_seed(1)
    model = random_ansatz(trainable=False)
    solver = ProfileSolver(model, 40, 1e-3, project=True)
    lam = solver.projected_lambda()
    model.set_lambda(lam)
    r, d = solver.lambda_direction()
    assert abs(float(r.dot(d))) <= 1e-12 * float(r.norm() * d.norm())
    # the variable-projection Jacobian has no component along d
    r2, J = solver.step_closure.jacobian(solver.params)
    assert float((d @ J).abs().max()) <= 1e-10 * float(d.norm() * J.abs().max())
    assert model.lam.item() == pytest.approx(lam, rel=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="lambda_mode must be one of"):
        find_profile(0, 0.5, "guess")
    with pytest.raises(ValueError, match="lambda0 must be > 0"):
        find_profile(0, -1.0)
    with pytest.raises(ValueError, match=r"points \(10\) must exceed degree \(20\)"):
        find_profile(0, 0.5, degree=20, points=10)
    with pytest.raises(ValueError, match="lambda must be > 0"):
        BurgersAnsatz(0, 0.0)


@pytest.mark.parametrize("mode", ["trainable", "projection"])
def test_order_zero_profile_and_lambda_from_a_four_percent_miss(mode):
    result = find_profile(0, 0.48, mode, degree=24, points=60, max_steps=40)
    assert result.lam_rel_error < 1e-8
    check = result.check()
    assert check["max_residual"] < 1e-8 and check["profile_max_error"] < 1e-7
    assert result.history[0]["kind"] == "start" and result.history[0]["lambda"] == 0.48


def test_funnel_brackets_the_root_and_draws_a_funnel():
    result = find_profile(0, 0.46, "funnel", degree=12, points=30, funnel_steps=12,
                          funnel_scan=1, max_steps=300)  # fmt: skip
    assert result.lam_rel_error < 1e-4  # degree 12 limits it; degree 100 reaches 1e-14
    found = [f for f in result.funnel if f["kind"] == "funnel"]
    assert found[0]["signed"] > 0  # λ0 below λ_0: the trained profile asks for more
    assert any(f["signed"] < 0 for f in found)  # ... and the bracket was closed from above
    scan = [f for f in result.funnel if f["kind"] == "scan"]
    assert [f["lambda"] for f in scan] == pytest.approx([0.9 * result.lam, 1.1 * result.lam])
    best = min(f["rms"] for f in found)
    assert all(f["rms"] > 10 * best for f in scan)
    assert math.isclose(result.lam_exact, burgers_lambda(0))


def test_resolution_refinement_grows_the_degree_until_the_target():
    from pinnopt.blowup.profile import refine_profile

    result = refine_profile(0, 0.48, degrees=(6, 12, 24), target=1e-4, max_steps=15)
    worst = [s["max_residual"] for s in result.stages]
    assert [s["degree"] for s in result.stages] == [6, 12]  # 24 not needed
    assert worst[0] > 1e-4 >= worst[1] == result.check()["max_residual"]
    assert result.model.degree == 12 and result.steps == sum(s["steps"] for s in result.stages)
    assert [h["step"] for h in result.history] == sorted(h["step"] for h in result.history)

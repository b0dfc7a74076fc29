"""The exact self-similar Burgers profiles, their derivatives and the λ projection."""

import pytest
import torch

from pinnopt.blowup.burgers import (
    burgers_exponent,
    burgers_lambda,
    burgers_profile,
    profile_residual,
    project_lambda,
)

Y = torch.linspace(-100.0, 100.0, 4001, dtype=torch.float64)
ORDERS = range(6)


def test_rates_and_exponents():
    assert [burgers_lambda(n) for n in range(3)] == [0.5, 0.25, 1 / 6]
    assert [burgers_exponent(n) for n in range(3)] == [3, 5, 7]
    for n in ORDERS:
        assert burgers_exponent(n) == pytest.approx(1 + 1 / burgers_lambda(n), abs=1e-12)
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="order n must be an integer >= 0"):
            burgers_lambda(bad)


@pytest.mark.parametrize("n", ORDERS)
def test_profile_solves_the_implicit_equation_and_the_ode(n):
    k = burgers_exponent(n)
    u, du, _ = burgers_profile(Y, n)
    assert float((u + u**k + Y).abs().max()) <= 1e-13 * 100
    assert float(profile_residual(Y, u, du, burgers_lambda(n)).abs().max()) <= 1e-14
    # a neighbouring rate does not solve it
    assert float(profile_residual(Y, u, du, burgers_lambda(n) * 1.01).abs().max()) > 1e-4


@pytest.mark.parametrize("n", ORDERS)
def test_derivatives_match_finite_differences(n):
    h = 1e-5
    y = torch.linspace(-20.0, 20.0, 401, dtype=torch.float64)
    u, du, d2u = burgers_profile(y, n)
    up, dup, _ = burgers_profile(y + h, n)
    um, dum, _ = burgers_profile(y - h, n)
    torch.testing.assert_close(du, (up - um) / (2 * h), atol=1e-8, rtol=0)
    torch.testing.assert_close(d2u, (dup - dum) / (2 * h), atol=1e-8, rtol=0)


@pytest.mark.parametrize("n", ORDERS)
def test_profile_is_odd_with_unit_slope_and_the_far_field_growth(n):
    k = burgers_exponent(n)
    u, du, d2u = burgers_profile(Y, n)
    assert torch.equal(burgers_profile(-Y, n)[0], -u)
    zero = torch.zeros(1, dtype=torch.float64)
    u0, du0, d2u0 = burgers_profile(zero, n)
    assert float(u0) == 0 and float(du0) == -1 and float(d2u0) == 0
    far = torch.tensor([1e12, -1e12], dtype=torch.float64)
    ratio = burgers_profile(far, n)[0] / (-far.sign() * far.abs() ** (1 / k))
    torch.testing.assert_close(ratio, torch.ones(2, dtype=torch.float64), atol=1e-3, rtol=0)


@pytest.mark.parametrize("n", ORDERS)
def test_projection_recovers_lambda_from_the_exact_profile(n):
    u, du, _ = burgers_profile(Y, n)
    assert float(project_lambda(Y, u, du)) == pytest.approx(burgers_lambda(n), abs=1e-12)

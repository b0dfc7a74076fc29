"""The Hilbert-exact series, the CCF profile, resolution refinement, a user equation, and
the stability count against the known Burgers spectrum."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from pinnopt.blowup.analytic_series import AnalyticSeries
from pinnopt.blowup.catalog import get_equation
from pinnopt.blowup.profile import find_profile
from pinnopt.blowup.series_profile import BracketError, find_series_profile
from pinnopt.blowup.stability import (
    burgers_spectrum,
    chebyshev_spectrum,
    count_unstable,
    series_spectrum,
    stable_eigenvalues,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "blowup_custom_equation.py"


def series(coeffs, a=0.45, lam=1.0, scale=1.0, wcoeffs=(), blocks=0, modes=0):
    model = AnalyticSeries(len(coeffs) - 1, lam, lambda _: torch.tensor(a), scale,
                           blocks=blocks, modes=modes)  # fmt: skip
    with torch.no_grad():
        model.coeffs.copy_(torch.tensor(coeffs, dtype=torch.float64))
        model.wcoeffs.copy_(torch.tensor(wcoeffs, dtype=torch.float64))
    return model


def test_known_hilbert_pair_is_exact():
    # a = 1, B = (2ρ − 1)/2 = 1/q − 1/2: B' = i/q², the y-derivative of the pair
    # 1/(1+y²) ↔ y/(1+y²): f = −2y/(1+y²)², H f = (1 − y²)/(1+y²)²
    model = series([0.0, 0.5], a=1.0)
    y = torch.cat([torch.linspace(-50, 50, 1001, dtype=torch.float64), torch.tensor([1e6])])
    fields = model.fields(y)
    d = 1 + y * y
    torch.testing.assert_close(fields["f"], -2 * y / d**2, atol=1e-14, rtol=1e-13)
    torch.testing.assert_close(fields["hf"], (1 - y * y) / d**2, atol=1e-14, rtol=1e-13)
    torch.testing.assert_close(fields["U"], y / d, atol=1e-14, rtol=1e-13)  # U = H[1/(1+y²)]


def test_series_is_odd_and_its_imaginary_part_is_the_hilbert_transform_by_quadrature():
    torch.manual_seed(0)
    model = series(torch.randn(6).tolist(), a=0.45, scale=0.7, wcoeffs=torch.randn(4).tolist(),
                   blocks=2, modes=2)  # fmt: skip

    def f(s):
        with torch.no_grad():
            return float(model.fields(torch.tensor([float(s)], dtype=torch.float64))["f"])

    y = torch.tensor([0.3, 1.7, 6.0], dtype=torch.float64)
    fields = model.fields(y)
    torch.testing.assert_close(model.fields(-y)["f"], -fields["f"], atol=1e-14, rtol=0)
    torch.testing.assert_close(model.fields(-y)["hf"], fields["hf"], atol=1e-14, rtol=0)
    for x, hf in zip(y.tolist(), fields["hf"].tolist()):
        assert hilbert_by_quadrature(f, x) == pytest.approx(hf, abs=1e-8)


def hilbert_by_quadrature(f, x: float) -> float:
    """(1/π) p.v.∫ f(s)/(x − s) ds for an odd f: folded onto s > 0, the pole by quad's
    Cauchy weight (∫ g(s)/(s − x) ds), the tail beyond 10³ separately."""
    near = quad(f, 0, 1e3, weight="cauchy", wvar=x, limit=400)[0]
    mirror = quad(lambda s: f(s) / (x + s), 0, 1e3, limit=400)[0]
    tail = quad(lambda s: f(s) * (1 / (x - s) - 1 / (x + s)), 1e3, math.inf, limit=400)[0]
    return (-near - mirror + tail) / math.pi


def test_growing_the_series_keeps_the_function():
    torch.manual_seed(1)
    model = series(torch.randn(4).tolist(), wcoeffs=torch.randn(2).tolist(), blocks=1, modes=2)
    y = torch.logspace(-2, 8, 50, dtype=torch.float64)
    before = {k: v.detach() for k, v in model.fields(y).items()}
    model.grow(9, blocks=3, modes=5)
    assert model.degree == 9 and model.wcoeffs.numel() == 15
    for key, value in model.fields(y).items():
        torch.testing.assert_close(value.detach(), before[key], atol=1e-13, rtol=1e-13)
    with pytest.raises(ValueError, match="cannot shrink"):
        model.grow(9, blocks=2)


def test_ccf_profile_satisfies_its_equation_rule_and_first_integral(ccf):
    _, result = ccf
    check = result.check()
    assert check["max_relative_residual"] < 1e-4
    assert check["lambda_rule_error"] < 1e-8
    assert check["first_integral_error"] < 1e-4
    y = torch.linspace(0.01, 20, 200, dtype=torch.float64)
    f = result.model.fields(y)["f"].detach()
    assert bool((f < 0).all())  # the stable profile has no zero on y > 0


def test_ccf_funnel_from_the_bracket_finds_the_same_profile(ccf):
    equation, trained = ccf
    found = find_series_profile(equation, 0, "funnel", bracket=(0.3, 1.5), max_degree=11)
    assert len(found.roots) >= 1 and found.roots[0][0] < found.lam < found.roots[0][1]
    assert found.lam == pytest.approx(trained.lam, rel=1e-5)


def test_bracket_without_sign_change_is_refused():
    with pytest.raises(BracketError, match="order 0 needs 1"):
        find_series_profile(get_equation("ccf"), 0, "funnel", bracket=(1.3, 1.5), max_degree=7,
                            scan_points=3)  # fmt: skip


def test_refinement_stops_at_the_target():
    result = find_series_profile(get_equation("ccf"), 0, "trainable", lam0=1.0, target=1e-3,
                                 max_degree=39)  # fmt: skip
    worst = [s["max_relative_residual"] for s in result.stages]
    assert worst[-1] <= 1e-3 and all(w > 1e-3 for w in worst[:-1])
    assert result.model.degree < 39


def test_a_user_added_equation_runs_and_agrees_with_the_builtin_one(ccf):
    spec = importlib.util.spec_from_file_location("blowup_custom_equation", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    lam = example.main(a=-1.0, max_degree=11)  # gCLM at a = −1 is CCF, written out anew
    assert lam == pytest.approx(ccf[1].lam, rel=1e-5)


def test_stable_ccf_profile_has_no_unstable_mode_besides_the_symmetries(ccf):
    equation, result = ccf
    coarse = series_spectrum(equation, result.model, 12)
    fine = series_spectrum(equation, result.model, 16)
    converged = stable_eigenvalues(coarse, fine, tol=1e-3)
    assert np.min(np.abs(converged - 1)) < 1e-2 and np.min(np.abs(converged)) < 1e-2
    assert count_unstable(converged)[0] == 0


def test_burgers_spectrum_matches_the_known_one(order=1):
    result = find_profile(order, lam0=0.95 / (2 * order + 2), degree=32, points=128,
                          max_steps=30)  # fmt: skip
    equation = get_equation("burgers")
    coarse = chebyshev_spectrum(equation, result.model, 40)
    converged = stable_eigenvalues(coarse, chebyshev_spectrum(equation, result.model, 56), 1e-5)
    known = burgers_spectrum(order, order + 2)  # 1, 1 − 2λ, …, 0
    np.testing.assert_allclose(np.sort(converged.real)[::-1][: order + 2], known, atol=1e-7)
    count, unstable = count_unstable(converged)
    assert count == order


def test_blowup_ccf_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("blowup_ccf")
    module.main(["--smoke", "--orders", "0", "--out", str(tmp_path)])
    text = (tmp_path / "results.md").read_text()
    assert "| 0 | 1.18" in text and "| 7 | 0 × 0 | 32 |" in text
    assert (tmp_path / "convergence.png").is_file()
    assert (tmp_path / "runs" / "ccf-0" / "metrics.json").is_file()


def test_blowup_orders_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("blowup_orders")
    module.main(["--smoke", "--orders", "1", "--out", str(tmp_path)])
    text = (tmp_path / "results.md").read_text()
    assert "| 1 | " in text and "(1) |" in text
    assert (tmp_path / "runs" / "burgers-1" / "profile.pt").is_file()


def test_stage_plan_adds_the_w_block_from_degree_23():
    from pinnopt.blowup.series_profile import stage_plan

    assert stage_plan(3, 4, 11) == [(3, 0, 0), (7, 0, 0), (11, 0, 0)]
    plan = stage_plan(3, 4, 39)
    assert plan[:6] == [(d, 0, 0) for d in (3, 7, 11, 15, 19, 23)]
    assert plan[6:] == [(23, 1, 4), (31, 1, 8), (31, 2, 12), (39, 2, 16), (39, 3, 24)]
    assert stage_plan(3, 4, 27)[-1] == (27, 3, 24)

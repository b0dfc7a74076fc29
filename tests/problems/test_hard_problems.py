"""The hard benchmarks: Allen–Cahn, convection, reaction and the Taylor–Green vortex."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pinnopt.derivatives import Jet
from pinnopt.problems.allen_cahn import (
    AllenCahnReference,
    allen_cahn1d,
    allen_cahn_reference,
    etdrk4_weights,
    initial_coefficients,
)
from pinnopt.problems.convection import convection1d
from pinnopt.problems.navier_stokes import navier_stokes2d
from pinnopt.problems.reaction import gaussian_profile, reaction1d
from pinnopt.problems.registry import get_problem

TWO_PI = 2 * math.pi
EXACT = {"convection1d": convection1d, "reaction1d": reaction1d, "navier_stokes2d": navier_stokes2d}
ALL = [*EXACT, "allen_cahn1d"]


class Exact(nn.Module):
    """The exact solution as a network, plus an optional perturbation t·sin(x_0)·eps."""

    def __init__(self, problem, eps: float = 0.0) -> None:
        super().__init__()
        self.problem, self.eps = problem, eps

    def forward(self, x):
        u = self.problem.exact(x)
        u = u.unsqueeze(1) if u.ndim == 1 else u
        return u + self.eps * (x[:, -1] * torch.sin(x[:, 0])).unsqueeze(1)


class ShiftedPressure(Exact):
    """The exact (u, v, p) with p + 1 + t²: the same velocity and pressure gradient."""

    def forward(self, x):
        shift = torch.stack([0 * x[:, 2], 0 * x[:, 2], 1 + x[:, 2] ** 2], dim=1)
        return super().forward(x) + shift


def sample(term, seed=0):
    return term.sampler(term.n, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize("name", EXACT)
def test_the_exact_solution_satisfies_every_term(name):
    problem = get_problem(name)
    for term in problem.terms:
        r = term.evaluate(Exact(problem), sample(term))
        assert r.abs().max() <= 1e-10, (name, term.name, r.abs().max())


@pytest.mark.parametrize("name", EXACT)
def test_the_residuals_see_a_perturbation(name):
    problem = get_problem(name)
    for term in problem.terms:
        if term.order > 0:  # the differential terms
            r = term.evaluate(Exact(problem, eps=1e-3), sample(term))
            assert r.abs().max() > 1e-4, (name, term.name)


def test_convection_and_navier_stokes_are_periodic_with_their_declared_periods():
    for problem in (convection1d(), navier_stokes2d()):
        x = problem.domain.interior(500, torch.Generator().manual_seed(1))
        for i, period in problem.periodic.items():
            shifted = x.clone()
            shifted[:, i] += period
            assert torch.allclose(problem.exact(shifted), problem.exact(x), atol=1e-13, rtol=0)
    assert convection1d().periodic == {0: TWO_PI}
    assert navier_stokes2d().periodic == {0: TWO_PI, 1: TWO_PI}


def test_the_reaction_profile_is_periodic_in_value_but_not_in_slope():
    x = torch.tensor([0.0, TWO_PI], dtype=torch.float64, requires_grad=True)
    h = gaussian_profile(x)
    (slope,) = torch.autograd.grad(h.sum(), x)
    assert h[0].item() == pytest.approx(math.exp(-8), rel=1e-14)  # 3.35e-4
    assert abs(h[0] - h[1]).item() <= 1e-18
    assert slope[0].item() == pytest.approx(16 / math.pi * math.exp(-8), rel=1e-12)
    assert slope[1].item() == pytest.approx(-slope[0].item(), rel=1e-12)
    # the logistic growth amplifies the kink: slope jump of u at t = 1 is about 0.46
    problem = reaction1d()
    p = torch.tensor([[0.0, 1.0], [TWO_PI, 1.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(problem.exact(p).sum(), p)
    assert (g[0, 0] - g[1, 0]).item() == pytest.approx(0.4605, abs=1e-3)
    assert reaction1d().periodic == {0: TWO_PI}


def test_navier_stokes_is_a_three_component_system_read_by_name():
    problem = navier_stokes2d()
    assert problem.components == ("u", "v", "p")
    assert problem.input_names == ("x", "y", "t")
    assert [t.name for t in problem.terms] == [
        "momentum_x", "momentum_y", "continuity", "ic_u", "ic_v", "p_gauge",
    ]  # fmt: skip
    assert {t.name: t.order for t in problem.terms} == {
        "momentum_x": 2, "momentum_y": 2, "continuity": 1, "ic_u": 0, "ic_v": 0, "p_gauge": 0,
    }  # fmt: skip
    gauge = sample(problem.term("p_gauge"))
    assert (gauge[:, :2] == 0).all() and gauge[:, 2].min() >= 0 and gauge[:, 2].max() <= 1
    assert (sample(problem.term("ic_u"))[:, 2] == 0).all()
    # a pressure shifted by a function of t satisfies the momentum equations but not the gauge
    shifted = ShiftedPressure(problem)
    for name in ("momentum_x", "momentum_y", "continuity"):
        term = problem.term(name)
        assert term.evaluate(shifted, sample(term)).abs().max() <= 1e-10
    assert problem.term("p_gauge").evaluate(shifted, gauge).abs().min() >= 1 - 1e-12
    # p_gauge and the velocity decay: exact p(0, 0, t) = -1/2 exp(-4 nu t)
    nu = 0.05
    x = torch.tensor([[0.0, 0.0, 0.7], [0.3, 1.1, 0.7]], dtype=torch.float64)
    value = navier_stokes2d(nu=nu).exact(x)
    assert value[0, 2].item() == pytest.approx(-0.5 * math.exp(-4 * nu * 0.7), rel=1e-14)
    u = -math.cos(0.3) * math.sin(1.1) * math.exp(-2 * nu * 0.7)
    assert value[1, 0].item() == pytest.approx(u, rel=1e-14)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("convection1d", {"beta": 30.0}),
        ("reaction1d", {"rho": 3.0}),
        ("navier_stokes2d", {"nu": 0.1}),
        ("allen_cahn1d", {"diffusion": 2e-4, "reaction": 4.0}),
    ],
)
def test_get_problem_builds_with_defaults_and_overrides(name, override):
    default = get_problem(name)
    assert default.name == name and default.description and default.periodic
    changed = get_problem(name, **override)
    assert changed.params == override
    assert set(default.params) == set(override)
    points = default.evaluation_points()
    ref = default.reference(points)
    shape = (points.shape[0],) if len(default.components) == 1 else (points.shape[0], 3)
    assert ref.shape == shape and torch.isfinite(ref).all()
    if name != "allen_cahn1d":
        assert not torch.allclose(changed.reference(points), ref)


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("convection1d", "beta", 0.0),
        ("convection1d", "beta", -1.0),
        ("convection1d", "beta", math.inf),
        ("convection1d", "beta", math.nan),
        ("reaction1d", "rho", 0.0),
        ("reaction1d", "rho", -5.0),
        ("reaction1d", "rho", math.nan),
        ("navier_stokes2d", "nu", 0.0),
        ("navier_stokes2d", "nu", -0.01),
        ("navier_stokes2d", "nu", math.inf),
        ("allen_cahn1d", "diffusion", 0.0),
        ("allen_cahn1d", "diffusion", math.nan),
        ("allen_cahn1d", "reaction", -1.0),
    ],
)
def test_bad_parameters_are_named(name, param, bad):
    with pytest.raises(ValueError, match=rf"^{param} must be"):
        get_problem(name, **{param: bad})


# --------------------------------------------------------------------------- Allen–Cahn


def reference_jet(ref: AllenCahnReference, x: np.ndarray, level: np.ndarray) -> Jet:
    """u, u_x, u_xx spectral in x; u_t by 8th-order central differences of the levels.

    u_tt is not available (NaN): a residual reading it would show."""
    t = ref.times[level]
    fd = [1 / 280, -4 / 105, 1 / 5, -4 / 5, 0.0, 4 / 5, -1 / 5, 4 / 105, -1 / 280]
    ut = sum(c * ref(x, ref.times[level + j - 4]) for j, c in enumerate(fd) if c) / ref.dt
    cols = [ref(x, t), ref(x, t, 1), ut, ref(x, t, 2), np.full_like(ut, np.nan)]
    u, ux, ut, uxx, utt = (torch.from_numpy(c) for c in cols)
    return Jet(
        u[:, None],
        torch.stack([ux, ut], dim=1)[:, :, None],
        torch.stack([uxx, utt], dim=1)[:, :, None],
        names=("u",),
    )


def test_allen_cahn_reference_satisfies_the_pde():
    problem, ref = allen_cahn1d(), allen_cahn_reference()
    rng = np.random.default_rng(0)
    level = rng.integers(round(0.005 / ref.dt), ref.times.size - 4, 1000)
    x = rng.uniform(-1, 1, level.size)
    u = reference_jet(ref, x, level)
    points = torch.from_numpy(np.stack([x, ref.times[level]], axis=1))
    r = problem.term("pde").residual(u, points)
    assert r.shape == (1000,) and r.abs().max() <= 1e-9  # measured 5e-11
    # the check can fail: the same jet is far from the PDE with a different diffusion
    assert allen_cahn1d(diffusion=2e-4).term("pde").residual(u, points).abs().max() > 1e-3


def test_allen_cahn_initial_condition_and_symmetry():
    problem, ref = allen_cahn1d(), allen_cahn_reference()
    ic = problem.term("ic")
    x = sample(ic)
    assert problem.reference(x).sub(x[:, 0] ** 2 * torch.cos(math.pi * x[:, 0])).abs().max() == 0
    # the truncated series at t = 0 is off near x = ±1, where the periodic extension kinks
    xs = np.linspace(-1, 1, 2001)
    series = np.real(ref.coefficients[0] @ ref.basis(xs).T)
    err = np.abs(series - xs**2 * np.cos(np.pi * xs))
    assert 1e-5 < err.max() < 3e-4 and err[np.abs(xs) < 0.5].max() < 1e-6
    # u is even in x (so is the data) and periodic with period 2
    t = np.full(xs.size, 0.37)
    u = ref(xs, t)
    assert np.abs(u - u[::-1]).max() <= 1e-13 and abs(u[0] - u[-1]) <= 1e-13
    # the exact Fourier coefficients agree with a fine-grid FFT (aliasing error ~ 1/N²)
    n = 2**16
    grid = -1 + 2 * np.arange(n) / n
    fft = np.fft.rfft(grid**2 * np.cos(np.pi * grid), norm="forward")
    assert np.abs(initial_coefficients(n)[:64] - fft[:64]).max() <= 1e-8
    with pytest.raises(ValueError, match="t must lie in"):
        ref(np.zeros(1), np.array([1.5]))


def test_allen_cahn_reference_is_converged():
    """Halving dt and doubling N change u by ≤ 1e-10 for t ≥ 0.005 (production settings)."""
    ref = allen_cahn_reference()
    assert (ref.n_modes, ref.dt, ref.contour_points) == (4096, 5e-4, 32)
    x = np.linspace(-1, 1, 801)
    times = [0.005, 0.01, 0.05, 0.25, 0.5, 0.75, 1.0]
    xx, tt = (a.ravel() for a in np.meshgrid(x, times))
    base = ref(xx, tt).reshape(len(times), -1)
    for finer in (AllenCahnReference(dt=ref.dt / 2), AllenCahnReference(n_modes=2 * ref.n_modes)):
        diff = np.abs(finer(xx, tt).reshape(len(times), -1) - base).max(axis=1)
        assert diff.max() <= 1e-10, diff  # measured ≤ 1e-11
        assert diff.max() > 0
    # M = 64 contour points give the same ETDRK4 weights
    hl = ref.linear * ref.dt
    for w32, w64 in zip(etdrk4_weights(hl, ref.dt, 32), etdrk4_weights(hl, ref.dt, 64)):
        assert np.abs(w32 - w64).max() <= 1e-14 * np.abs(w64).max()


def test_etdrk4_weights_match_their_limits_and_closed_forms():
    _, _, q, f1, f2, f3 = etdrk4_weights(np.array([0.0, -1.0, -30.0]), 1.0)
    assert q[0] == pytest.approx(0.5, rel=1e-15)
    for f in (f1, f2, f3):
        assert f[0] == pytest.approx(1 / 6, rel=1e-15)
    z, ez = np.array([-1.0, -30.0]), np.exp([-1.0, -30.0])
    assert q[1:] == pytest.approx((np.exp(z / 2) - 1) / z, rel=1e-14)
    assert f1[1:] == pytest.approx((-4 - z + ez * (4 - 3 * z + z * z)) / z**3, rel=1e-13)
    assert f2[1:] == pytest.approx((2 + z + ez * (z - 2)) / z**3, rel=1e-13)
    assert f3[1:] == pytest.approx((-4 - 3 * z - z * z + ez * (4 - z)) / z**3, rel=1e-13)


def test_allen_cahn_off_grid_times_partial_steps_and_interpolation_agree():
    ref = allen_cahn_reference()
    t = np.random.default_rng(3).uniform(0.005, 1.0, 40)
    t = t[np.abs(t / ref.dt - np.rint(t / ref.dt)) > 1e-3]
    exact = ref.coefficients_at(t)  # few distinct times: one ETDRK4 step each
    interpolated = ref.interpolate(t)
    basis = ref.basis(np.linspace(-1, 1, 301)).T
    diff = np.abs(np.real(exact @ basis) - np.real(interpolated @ basis)).max()
    assert diff <= 1e-12  # measured 3e-13
    # a partial step of a full dt reproduces the next stored level
    weights = etdrk4_weights(ref.linear * ref.dt, ref.dt)
    assert np.abs(ref._step(ref.coefficients[100], weights) - ref.coefficients[101]).max() == 0
    # the values between levels move smoothly: off-grid value close to linear interpolation
    n = 1234
    mid = ref(np.array([0.3]), np.array([ref.times[n] + ref.dt / 2]))
    ends = ref(np.array([0.3, 0.3]), ref.times[[n, n + 1]])
    assert abs(mid[0] - ends.mean()) < 1e-5 and abs(ends[1] - ends[0]) > 1e-5


def test_allen_cahn_scattered_points_match_the_grid_path():
    ref = allen_cahn_reference()
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 3000)
    level = rng.integers(0, ref.times.size, 3000)
    scattered = ref(x, ref.times[level])  # 3000 distinct x: summed point by point
    for i in range(0, 3000, 600):
        one = ref(x[i : i + 1], ref.times[level[i : i + 1]])
        assert abs(one[0] - scattered[i]) <= 1e-13

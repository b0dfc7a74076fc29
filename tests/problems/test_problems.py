"""Problems: registry, exact solutions satisfy every term, samplers, validation, Burgers."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from pinnopt.derivatives import Jet, jet
from pinnopt.evaluation import Evaluator
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems import (
    PROBLEMS,
    Box,
    Problem,
    Term,
    burgers_hopf_cole,
    get_problem,
    register_problem,
)

DTYPE = torch.float64
# the forward problems on boxes that the generic tests below cover; the others have their
# own test files (test_inverse.py, test_hard_problems.py, test_lshape.py)
ALL = [
    "burgers1d", "heat1d", "helmholtz2d", "poisson1d", "poisson2d", "poisson3d", "poisson5d",
    "wave1d",
]  # fmt: skip
OTHERS = [
    "allen_cahn1d", "burgers1d_inverse", "convection1d", "navier_stokes2d", "poisson_lshape",
    "reaction1d",
]  # fmt: skip
WITH_EXACT = [name for name in ALL if name != "burgers1d"]
NU = 0.01 / math.pi


class FunctionModule(nn.Module):
    """Wraps u*(x) (N, d) -> (N,) as a one-output module, optionally plus 0.01·exp(Σx)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], perturbation: float = 0.0) -> None:
        super().__init__()
        self.fn = fn
        self.perturbation = perturbation

    def forward(self, x: Tensor) -> Tensor:
        return (self.fn(x) + self.perturbation * torch.exp(x.sum(dim=1))).unsqueeze(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _small_counts(problem: Problem, n: int = 48) -> dict[str, int]:
    return {t.name: n for t in problem.terms}


# --------------------------------------------------------------------------- registry


def test_registry_lists_exactly_the_problems():
    assert sorted(PROBLEMS) == sorted(ALL + OTHERS)


@pytest.mark.parametrize(
    "name, terms, dim, inputs",
    [
        ("burgers1d", ["pde", "bc", "ic"], 2, ("x", "t")),
        ("heat1d", ["pde", "bc", "ic"], 2, ("x", "t")),
        ("wave1d", ["pde", "bc", "ic", "ic_t"], 2, ("x", "t")),
        ("helmholtz2d", ["pde", "bc"], 2, ("x", "y")),
        ("poisson1d", ["pde", "bc"], 1, None),
        ("poisson3d", ["pde", "bc"], 3, None),
        ("poisson5d", ["pde", "bc"], 5, None),
    ],
)
def test_problem_structure(name, terms, dim, inputs):
    problem = get_problem(name)
    assert problem.name == name
    assert [t.name for t in problem.terms] == terms
    assert problem.dim == dim
    if inputs is not None:
        assert problem.input_names == inputs
    assert len(set(problem.input_names)) == len(problem.input_names) == dim
    assert problem.term("pde").order == 2
    assert all(t.order == 0 for t in problem.terms if t.name in ("bc", "ic"))


@pytest.mark.parametrize("name", ALL)
def test_term_orders_are_tight(name):
    """A residual works with a jet of its declared order and fails with one order less."""
    problem = get_problem(name)
    model = build_model("mlp", problem.dim, width=4, depth=1).to(DTYPE)
    points = problem.sample(_gen(), _small_counts(problem, 5))
    for term in problem.terms:
        x = points[term.name]
        r = term.residual(jet(model, x, term.order), x)
        assert r.shape == (5,)
        if term.order > 0:
            with pytest.raises(ValueError, match="request order"):
                term.residual(jet(model, x, term.order - 1), x)


def test_parameters_are_recorded():
    assert get_problem("burgers1d").params == {"nu": pytest.approx(NU, rel=1e-15)}
    assert get_problem("heat1d", alpha=0.5).params == {"alpha": 0.5}
    assert get_problem("wave1d").params == {"c": 2.0}
    assert get_problem("helmholtz2d", k=3.0).params == {"a1": 1.0, "a2": 4.0, "k": 3.0}
    assert get_problem("poisson2d").params == {}


def test_get_problem_unknown_name():
    allowed = "allowed: allen_cahn1d, burgers1d, "
    with pytest.raises(ValueError, match=rf"unknown problem 'poisson4d'; {allowed}"):
        get_problem("poisson4d")


@pytest.mark.parametrize(
    "name, params, match",
    [
        (
            "heat1d",
            {"beta": 1.0},
            r"unknown parameter 'beta' for problem heat1d; allowed: \['alpha'\]",
        ),
        ("poisson2d", {"k": 1.0}, r"unknown parameter 'k' for problem poisson2d; allowed: none"),
        ("burgers1d", {"nu": -1.0}, r"nu must be > 0, got -1"),
        ("burgers1d", {"nu": 0.0}, r"nu must be > 0, got 0"),
        ("heat1d", {"alpha": 0.0}, r"alpha must be > 0, got 0"),
        ("wave1d", {"c": -2.0}, r"c must be > 0, got -2"),
    ],
)
def test_get_problem_rejects_bad_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_problem(name, **params)


@pytest.mark.parametrize(
    "name, param",
    [("burgers1d", "nu"), ("heat1d", "alpha"), ("wave1d", "c"), ("helmholtz2d", "k")],
)
def test_get_problem_rejects_nan_parameters(name, param):
    with pytest.raises(ValueError, match=param):
        get_problem(name, **{param: float("nan")})


def test_register_problem():
    with pytest.raises(ValueError, match="problem 'heat1d' is already registered"):
        register_problem("heat1d")(lambda: None)
    assert sorted(PROBLEMS) == sorted(ALL + OTHERS)

    @register_problem("test-only-constant")
    def constant(value: float = 1.0) -> Problem:
        box = Box([0.0], [1.0])
        terms = [Term("data", box.interior, lambda u, x: u.u - value, order=0, n=3)]
        return Problem("test-only-constant", box, terms, lambda x: value + 0 * x[:, 0])

    try:
        problem = get_problem("test-only-constant", value=2.5)
        assert problem.exact(torch.zeros(2, 1, dtype=DTYPE)).tolist() == [2.5, 2.5]
        with pytest.raises(ValueError, match=r"allowed: \['value'\]"):
            get_problem("test-only-constant", nu=1.0)
    finally:
        PROBLEMS.pop("test-only-constant")


# --------------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize(
    "name, params",
    [(name, {}) for name in WITH_EXACT]
    + [
        ("heat1d", {"alpha": 0.7}),
        ("wave1d", {"c": 1.3}),
        ("helmholtz2d", {"a1": 2.0, "a2": 3.0, "k": 2.5}),
    ],
)
def test_exact_solution_has_zero_residual_on_every_term(name, params):
    problem = get_problem(name, **params)
    points = problem.sample(_gen(1), _small_counts(problem))
    exact = FunctionModule(problem.exact)
    perturbed = FunctionModule(problem.exact, perturbation=0.01)
    for term in problem.terms:
        x = points[term.name]
        r = term.residual(jet(exact, x, term.order), x)
        assert r.shape == (48,)
        assert float(r.abs().max()) < 1e-9, term.name
        # ... and the check can fail: u* + 0.01 exp(Σx) violates every term
        r_bad = term.residual(jet(perturbed, x, term.order), x)
        assert float(r_bad.abs().max()) > 1e-3, term.name


def test_exact_solutions_known_values():
    half = torch.full((1, 5), 0.5, dtype=DTYPE)
    assert float(get_problem("poisson2d").exact(half[:, :2])) == pytest.approx(1.0)
    assert float(get_problem("poisson3d").exact(half[:, :3])) == pytest.approx(1.0)
    assert float(get_problem("poisson5d").exact(torch.zeros(1, 5, dtype=DTYPE))) == 5.0
    heat = get_problem("heat1d").exact(torch.tensor([[0.5, 1.0]], dtype=DTYPE))
    assert float(heat) == pytest.approx(math.exp(-0.25 * math.pi**2), rel=1e-14)
    wave = get_problem("wave1d").exact(torch.tensor([[0.125, 0.0]], dtype=DTYPE))
    assert float(wave) == pytest.approx(math.sin(math.pi / 8) + 0.5, rel=1e-14)
    helm = get_problem("helmholtz2d").exact(torch.tensor([[0.5, 0.125]], dtype=DTYPE))
    assert float(helm) == pytest.approx(1.0, rel=1e-14)


# --------------------------------------------------------------------------- samplers


def _boxes(dyadic: bool):
    """Random boxes; dyadic bounds (multiples of 1/8) are exact in float32 as well."""

    def make(d: int):
        if dyadic:
            lo = st.integers(-80, 80).map(lambda k: k / 8)
            width = st.integers(1, 80).map(lambda k: k / 8)
        else:
            lo = st.floats(-10, 10, allow_nan=False)
            width = st.floats(1e-2, 10, allow_nan=False)
        return st.tuples(
            st.lists(lo, min_size=d, max_size=d), st.lists(width, min_size=d, max_size=d)
        )

    return (
        st.integers(1, 4)
        .flatmap(make)
        .map(lambda lw: Box(lw[0], [a + w for a, w in zip(lw[0], lw[1])]))
    )


def _inside(x: Tensor, box: Box) -> bool:
    lo = torch.tensor(box.lower, dtype=DTYPE)
    hi = torch.tensor(box.upper, dtype=DTYPE)
    return bool(((x >= lo) & (x <= hi)).all())


def _on_bound(x: Tensor, box: Box) -> Tensor:
    """(N, d) mask: coordinate exactly at its lower or upper bound."""
    lo = torch.tensor(box.lower, dtype=DTYPE)
    hi = torch.tensor(box.upper, dtype=DTYPE)
    return (x == lo) | (x == hi)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(_boxes(dyadic=False), st.integers(0, 2**31 - 1))
def test_interior_points_inside_box(box, seed):
    x = box.interior(64, _gen(seed))
    assert x.shape == (64, box.dim) and x.dtype == DTYPE
    assert _inside(x, box)
    assert torch.equal(x, box.interior(64, _gen(seed)))


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(_boxes(dyadic=False), st.data())
def test_face_sampler_on_the_right_face(box, data):
    dim = data.draw(st.integers(0, box.dim - 1))
    side = data.draw(st.sampled_from(["lower", "upper"]))
    x = box.face(dim, side)(32, _gen(3))
    value = box.lower[dim] if side == "lower" else box.upper[dim]
    assert bool((x[:, dim] == value).all())
    assert _inside(x, box)
    others = [i for i in range(box.dim) if i != dim]
    if others:  # the other coordinates are spread over the face
        assert bool((x[:, others].std(dim=0) > 0).all())


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(_boxes(dyadic=True), st.integers(0, 2**31 - 1))
def test_boundary_points_on_faces(box, seed):
    x = box.boundary()(64, _gen(seed))
    assert x.shape == (64, box.dim)
    assert _inside(x, box)
    assert bool(_on_bound(x, box).any(dim=1).all())
    assert torch.equal(x, box.boundary()(64, _gen(seed)))


def test_boundary_points_exactly_on_faces_for_non_dyadic_bounds():
    box = Box([0.0, -0.3], [0.1, 0.7])
    x = box.boundary()(200, _gen(0))
    assert bool(_on_bound(x, box).any(dim=1).all())


def test_boundary_face_choice_follows_measure_and_dims():
    box = Box([0.0, 0.0], [4.0, 1.0])  # faces x1 = const are 4x longer than faces x0 = const
    x = box.boundary()(4000, _gen(0))
    on = _on_bound(x, box)
    frac_x1_faces = float(on[:, 1].double().mean())
    assert 0.76 < frac_x1_faces < 0.84  # expected 0.8
    upper = float((x[on[:, 1], 1] == 1.0).double().mean())
    assert 0.45 < upper < 0.55
    only_x0 = box.boundary(dims=[0])(500, _gen(1))
    assert bool(_on_bound(only_x0, box)[:, 0].all())
    assert set(only_x0[:, 0].tolist()) == {0.0, 4.0}
    assert float(only_x0[:, 1].min()) > 0.0 and float(only_x0[:, 1].max()) < 1.0


def test_one_dimensional_boundary_is_the_two_end_points():
    x = Box([-2.0], [3.0]).boundary()(100, _gen(0))
    assert set(x[:, 0].tolist()) == {-2.0, 3.0}


@pytest.mark.parametrize("name", ALL)
def test_problem_samples_where_terms_live(name):
    problem = get_problem(name)
    box = problem.domain
    points = problem.sample(_gen(5))
    for term in problem.terms:
        x = points[term.name]
        assert x.shape == (term.n, problem.dim) and x.dtype == DTYPE
        assert _inside(x, box)
        on = _on_bound(x, box)
        if term.name == "bc":
            assert bool(on.any(dim=1).all())
            if problem.input_names[-1] == "t":  # spatial boundary only: x at ±bound
                assert bool(on[:, 0].all())
        elif term.name in ("ic", "ic_t"):
            assert bool((x[:, -1] == box.lower[-1]).all())  # t = 0
    same = problem.sample(_gen(5))
    assert all(torch.equal(points[k], same[k]) for k in points)
    other = problem.sample(_gen(6))
    assert not torch.equal(points["pde"], other["pde"])


def test_counts_override_and_unknown_term():
    problem = get_problem("heat1d")
    points = problem.sample(_gen(), {"pde": 17, "ic": 3})
    assert {k: v.shape[0] for k, v in points.items()} == {"pde": 17, "bc": 200, "ic": 3}
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['pdf'\] for heat1d"):
        problem.sample(_gen(), {"pdf": 10})


@pytest.mark.parametrize("count", [0, -3])
def test_non_positive_counts_raise_value_error(count):
    with pytest.raises(ValueError, match="pde"):
        get_problem("poisson1d").sample(_gen(), {"pde": count})


def test_evaluation_points():
    p1 = get_problem("poisson1d").evaluation_points()
    assert p1.shape == (1001, 1)
    assert float(p1[0, 0]) == 0.0 and float(p1[-1, 0]) == 1.0
    assert get_problem("heat1d").evaluation_points().shape == (101 * 101, 2)
    assert get_problem("burgers1d").evaluation_points().shape == (201 * 201, 2)
    problem = get_problem("poisson3d")
    p3 = problem.evaluation_points()
    assert p3.shape == (20000, 3) and _inside(p3, problem.domain)
    assert torch.equal(p3, problem.evaluation_points())


def test_evaluation_points_follow_eval_grid_and_eval_random():
    def problem(dim: int, **kwargs) -> Problem:
        box = Box([0.0] * dim, [1.0] * dim)
        return Problem("p", box, [Term("pde", box.interior, lambda u, x: u.u)], _sum, **kwargs)

    assert problem(1, eval_grid=7).evaluation_points().shape == (7, 1)
    assert problem(2, eval_grid=7).evaluation_points().shape == (49, 2)
    assert problem(3, eval_grid=7, eval_random=50).evaluation_points().shape == (50, 3)


def _sum(x: Tensor) -> Tensor:
    return x.sum(dim=1)


def _decay(exact: Callable[[Tensor], object]) -> Problem:
    """The README's problem (x, t) on [0, 1]², 11 × 11 evaluation points, with ``exact``."""
    box = Box([0.0, 0.0], [1.0, 1.0])
    return Problem("decay", box, [Term("bc", box.interior, lambda u, x: u.u)], exact, eval_grid=11)


def _decay_exact(x: Tensor) -> Tensor:
    return torch.exp(-x[:, 1]) * torch.sin(math.pi * x[:, 0])


def test_evaluator_refuses_exact_of_shape_n_by_1():
    """(N, 1) against (N,) predictions used to broadcast to N × N: a silently wrong rel_l2."""
    problem = _decay(lambda x: _decay_exact(x).unsqueeze(1))
    match = r"problem 'decay': exact must return shape \(N,\) for N points, here \(121,\), "
    with pytest.raises(ValueError, match=match + r"got \(121, 1\)"):
        Evaluator(problem)
    with pytest.raises(ValueError, match=match + r"got \(121, 1\)"):
        problem.reference(problem.evaluation_points())


@pytest.mark.parametrize(
    ("exact", "match"),
    [
        (lambda x: _decay_exact(x).sum(), r"shape \(N,\) .* got \(\)"),
        (lambda x: _decay_exact(x)[:-1], r"here \(121,\), got \(120,\)"),
        (lambda x: _decay_exact(x).numpy(), r"must return a torch.Tensor .* got ndarray"),
        (lambda x: _decay_exact(x).to(torch.complex128), "real numbers .* torch.complex128"),
        (lambda x: _decay_exact(x) / x[:, 0], r"11 non-finite value\(s\) .* at x = \[0.0, 0.0\]"),
    ],
)
def test_evaluator_refuses_bad_exact(exact, match):
    with pytest.raises(ValueError, match=r"problem 'decay': exact .*" + match):
        Evaluator(_decay(exact))


def test_reference_is_exact_as_float64():
    x = _decay(_decay_exact).evaluation_points()
    ref = _decay(lambda x: _decay_exact(x).float()).reference(x)
    assert ref.dtype == DTYPE and ref.shape == (121,)
    torch.testing.assert_close(ref, _decay_exact(x).float().double(), rtol=0, atol=0)
    evaluator = Evaluator(get_problem("heat1d"))
    torch.testing.assert_close(evaluator.reference, get_problem("heat1d").exact(evaluator.points))


def test_grid():
    g = Box([0.0, 1.0], [1.0, 3.0]).grid(3)
    assert g.shape == (9, 2) and g.dtype == DTYPE
    assert g[:3].tolist() == [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]
    assert g[-1].tolist() == [1.0, 3.0]


@pytest.mark.parametrize(
    "lower, upper, match",
    [
        ([], [], "non-empty"),
        ([0.0], [1.0, 2.0], "same length"),
        ([0.0, 1.0], [1.0, 1.0], "upper must exceed lower"),
    ],
)
def test_box_rejects_bad_bounds(lower, upper, match):
    with pytest.raises(ValueError, match=match):
        Box(lower, upper)


def test_face_rejects_bad_side():
    with pytest.raises(ValueError, match="side must be 'lower' or 'upper', got 'top'"):
        Box([0.0], [1.0]).face(0, "top")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"order": 3}, "term 'pde': order must be 0, 1 or 2, got 3"),
        ({"n": 0}, "term 'pde': n must be >= 1, got 0"),
        ({"weight": -0.5}, "term 'pde': weight must be >= 0, got -0.5"),
    ],
)
def test_term_validation(kwargs, match):
    box = Box([0.0], [1.0])
    with pytest.raises(ValueError, match=match):
        Term("pde", box.interior, lambda u, x: u.u, **kwargs)


def test_problem_validation_and_lookup():
    box = Box([0.0], [1.0])
    t = Term("pde", box.interior, lambda u, x: u.u)
    with pytest.raises(ValueError, match=r"term names must be unique, got \['pde', 'pde'\]"):
        Problem("dup", box, [t, t], lambda x: x[:, 0])
    problem = Problem("ok", box, [t], lambda x: x[:, 0])
    assert problem.input_names == ("x0",)  # default labels
    assert problem.term("pde") is t
    with pytest.raises(KeyError):
        problem.term("bc")


# --------------------------------------------------------------------------- Burgers


def _hc(x, t, nu=NU):
    u, ux = burgers_hopf_cole(np.asarray(x, dtype=float), np.asarray(t, dtype=float), nu)
    return u, ux


def test_burgers_initial_condition():
    x = np.linspace(-1, 1, 41)
    u, ux = _hc(x, np.zeros_like(x))
    np.testing.assert_allclose(u, -np.sin(np.pi * x), atol=1e-15)
    np.testing.assert_allclose(ux, -np.pi * np.cos(np.pi * x), atol=1e-14)
    # the quadrature branch (t > 0) tends to the same data: |u - u0| = O(t)
    u_small, ux_small = _hc(x, np.full_like(x, 1e-7))
    np.testing.assert_allclose(u_small, -np.sin(np.pi * x), atol=1e-5)
    np.testing.assert_allclose(ux_small, -np.pi * np.cos(np.pi * x), atol=1e-4)


def test_burgers_symmetries_and_boundary_values():
    t = np.array([0.05, 0.2, 0.318, 0.5, 0.75, 1.0])
    u0, _ = _hc(np.zeros_like(t), t)
    np.testing.assert_allclose(u0, 0.0, atol=1e-13)
    for x in (0.01, 0.3, 0.77):
        u_plus, ux_plus = _hc(np.full_like(t, x), t)
        u_minus, ux_minus = _hc(np.full_like(t, -x), t)
        np.testing.assert_allclose(u_minus, -u_plus, atol=1e-13)  # u odd
        np.testing.assert_allclose(ux_minus, ux_plus, rtol=1e-10, atol=1e-11)  # u_x even
        assert np.all(np.abs(u_plus) > 1e-3)  # the oddness check is not vacuous
    for edge in (-1.0, 1.0):
        u_edge, _ = _hc(np.full_like(t, edge), t)
        np.testing.assert_allclose(u_edge, 0.0, atol=1e-13)


def test_burgers_max_slope_matches_basdevant():
    _, ux = _hc([0.0], [1.6037 / np.pi])
    assert ux[0] == pytest.approx(-152.00516, rel=5e-5)
    # a different viscosity gives a visibly different slope
    _, ux_other = _hc([0.0], [1.6037 / np.pi], nu=2 * NU)
    assert abs(ux_other[0] + 152.00516) > 10


SMOOTH = [(0.5, 0.25), (-0.3, 0.1), (0.7, 0.6), (-0.8, 0.9), (0.4, 0.05)]


def _burgers_fd(nu: float, h: float = 1e-4):
    """u, u_t, u_x, u_xx at SMOOTH points; u_x from the formula, u_t and u_xx by central FD."""
    x = np.array([p[0] for p in SMOOTH])
    t = np.array([p[1] for p in SMOOTH])
    u, ux = _hc(x, t, nu)
    ut = (_hc(x, t + h, nu)[0] - _hc(x, t - h, nu)[0]) / (2 * h)
    uxx = (_hc(x + h, t, nu)[1] - _hc(x - h, t, nu)[1]) / (2 * h)
    ux_fd = (_hc(x + h, t, nu)[0] - _hc(x - h, t, nu)[0]) / (2 * h)
    return u, ut, ux, uxx, ux_fd


def test_burgers_reference_satisfies_the_pde():
    # Points away from the shock at x = 0 (or before it forms, t < 1/pi), where the solution
    # is smooth. With h = 1e-4, central differences err by h^2/6 |f'''| ~ 1e-9 * O(100) and by
    # rounding ~ 1e-16 / h ~ 1e-12; the measured residuals are <= 1.3e-7 and shrink like h^2
    # (checked below), so 1e-6 leaves margin while an error in the formula (e.g. doubling nu
    # changes nu * u_xx by ~1e-3) is far outside it.
    u, ut, ux, uxx, ux_fd = _burgers_fd(NU)
    residual = ut + u * ux - NU * uxx
    assert np.max(np.abs(residual)) < 1e-6
    np.testing.assert_allclose(ux, ux_fd, atol=1e-6)  # the exact u_x is the derivative of u
    assert np.max(np.abs(ut)) > 0.1  # the terms are not trivially small
    # second-order convergence: the residual is pure truncation error
    u3, ut3, ux3, uxx3, _ = _burgers_fd(NU, h=3e-4)
    coarse = np.abs(ut3 + u3 * ux3 - NU * uxx3)
    assert np.all(coarse / np.maximum(np.abs(residual), 1e-12) > 6)  # ideal ratio 9
    # the residual check discriminates: the same data is not a solution for 2 nu
    assert np.max(np.abs(ut + u * ux - 2 * NU * uxx)) > 1e-4


def test_burgers_problem_terms_vanish_on_the_reference():
    problem = get_problem("burgers1d")
    points = problem.sample(_gen(2), {"bc": 64, "ic": 64})
    for name in ("bc", "ic"):
        x = points[name]
        value = problem.exact(x).unsqueeze(1)
        r = problem.term(name).residual(Jet(value), x)
        assert float(r.abs().max()) < 1e-12, name
    # the PDE term on a jet built from the reference and finite differences
    u, ut, ux, uxx, _ = _burgers_fd(NU)
    x = torch.tensor(SMOOTH, dtype=DTYPE)
    as_t = lambda a: torch.as_tensor(a, dtype=DTYPE)  # noqa: E731
    grad = torch.stack([as_t(ux), as_t(ut)], dim=1).unsqueeze(2)
    hess = torch.stack([as_t(uxx), torch.zeros(len(SMOOTH), dtype=DTYPE)], dim=1).unsqueeze(2)
    r = problem.term("pde").residual(Jet(as_t(u).unsqueeze(1), grad, hess), x)
    assert float(r.abs().max()) < 1e-6


def test_burgers_problem_reference_uses_its_nu():
    x = torch.tensor([[0.3, 0.5], [-0.6, 0.9]], dtype=DTYPE)
    default = get_problem("burgers1d").exact(x)
    np.testing.assert_allclose(default.numpy(), _hc([0.3, -0.6], [0.5, 0.9])[0], rtol=1e-14)
    viscous = get_problem("burgers1d", nu=0.1).exact(x)
    np.testing.assert_allclose(viscous.numpy(), _hc([0.3, -0.6], [0.5, 0.9], 0.1)[0], rtol=1e-14)
    assert float((viscous - default).abs().max()) > 1e-2


def test_burgers_scalar_time_broadcasts():
    x = np.array([0.2, 0.4, 0.6])
    u, _ = burgers_hopf_cole(x, 0.5)
    np.testing.assert_allclose(u, _hc(x, np.full(3, 0.5))[0])


# --------------------------------------------------------------------------- user-defined problem


def test_user_defined_problem_from_box_and_terms():
    """The README pattern: u'' + u = 2 + x² on [0, 2] with u = x², Dirichlet at both ends."""
    box = Box([0.0], [2.0])

    def exact(x: Tensor) -> Tensor:
        return x[:, 0] ** 2

    terms = [
        Term("pde", box.interior, lambda u, x: u.d2(0) + u.u - 2 - x[:, 0] ** 2, order=2, n=64),
        Term("left", box.face(0, "lower"), lambda u, x: u.u, order=0, n=1),
        Term("right", box.face(0, "upper"), lambda u, x: u.u - 4, order=0, n=1, weight=10.0),
    ]
    problem = Problem("quadratic", box, terms, exact, ("x",))
    points = problem.sample(_gen(0))
    assert points["left"].tolist() == [[0.0]] and points["right"].tolist() == [[2.0]]

    assert float(Objective(problem, FunctionModule(exact), points).loss()) < 1e-24

    model = build_model("mlp", 1, box.lower, box.upper, width=8, depth=2).to(DTYPE)
    objective = Objective(problem, model, points)
    loss = objective.loss()
    assert loss.item() > 1e-3
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # a few L-BFGS steps make progress on it: the pieces fit together
    opt = torch.optim.LBFGS(model.parameters(), max_iter=40, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective.loss()
        value.backward()
        return value

    opt.step(closure)
    assert objective.loss().item() < 0.01 * loss.item()

"""The L-shaped Poisson problem and its finite-difference reference solution."""

import numpy as np
import torch

from pinnopt.problems import get_problem
from pinnopt.problems.geometry import l_shape
from pinnopt.problems.lshape import fd_solve, lshape_reference, reference_grid


def test_reference_satisfies_the_equation_away_from_the_corner():
    h = 0.04  # a coarser grid than the reference's, of interpolated values
    axis = torch.arange(-1 + h, 1 - h / 2, h, dtype=torch.float64)
    x = torch.cartesian_prod(axis, axis)
    shape = l_shape()
    shifts = torch.tensor([[h, 0], [-h, 0], [0, h], [0, -h]], dtype=torch.float64)
    keep = (x.norm(dim=1) > 0.3) & torch.stack([shape.inside(x + s) for s in shifts]).all(0)
    x = x[keep]
    u = lshape_reference(x)
    neighbours = sum(lshape_reference(x + s) for s in shifts)
    residual = -(neighbours - 4 * u) / h**2 - 1.0
    assert len(x) > 1000
    assert residual.pow(2).mean().sqrt() < 1e-2  # relative to the source term, 1
    # the convex corners carry an r² log r term too: the coarse stencil's truncation
    # error grows there, so the strict bound holds 0.15 away from every corner
    corners = torch.tensor([(-1, -1), (0, -1), (1, 0), (1, 1), (-1, 1)], dtype=torch.float64)
    far = torch.cdist(x, corners).min(dim=1).values > 0.15
    assert residual[far].abs().max() < 1e-2
    assert residual.abs().max() < 0.1


def test_reference_is_zero_on_the_boundary_and_positive_inside():
    shape = l_shape()
    g = torch.Generator().manual_seed(0)
    assert lshape_reference(shape.boundary()(2000, g)).abs().max() < 1e-12
    assert (lshape_reference(shape.interior(2000, g)) > 0).all()


def test_two_resolutions_agree_to_the_documented_tolerance():
    # docstring of pinnopt.problems.lshape: m = 50 against m = 100 at the nodes of the
    # h = 1/50 grid, 7.5e-5 at most and 2.3e-6 root-mean-square
    coarse, fine = reference_grid(50), reference_grid(100)
    d = np.abs(coarse[::2, ::2] - fine[::4, ::4])
    assert d.max() < 1e-4
    assert np.sqrt((d**2).mean()) < 3e-6
    # the plain 5-point solve converges to the same solution
    plain = fd_solve(100)
    assert np.abs(plain - fine[::2, ::2]).max() < 2e-3


def test_problem_builds_and_its_reference_is_finite_on_the_evaluation_points():
    problem = get_problem("poisson_lshape")
    assert problem.input_names == ("x", "y") and problem.description
    assert [t.name for t in problem.terms] == ["pde", "bc"]
    x = problem.evaluation_points()
    assert l_shape().inside(x).all()
    assert len(x) == 101 * 101 - 50 * 50  # the grid less the removed open quadrant
    u = problem.reference(x)
    assert u.shape == (len(x),) and u.dtype == torch.float64 and torch.isfinite(u).all()
    points = problem.sample(torch.Generator().manual_seed(1))
    assert points["pde"].shape == (2000, 2) and points["bc"].shape == (400, 2)
    assert l_shape().on_boundary(points["bc"]).all()

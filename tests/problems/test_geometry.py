"""Shapes and their boolean combinations (pinnopt.problems.geometry)."""

import math

import pytest
import torch

from pinnopt.problems.base import Box as BaseBox
from pinnopt.problems.geometry import (
    Annulus,
    Box,
    Difference,
    Disk,
    Geometry,
    Intersection,
    Polygon,
    Union,
    l_shape,
)

# (name, shape, exact area); every shape is checked for the same properties
SHAPES = [
    ("box", Box([0.0, -1.0], [2.0, 1.0]), 4.0),
    ("box3d", Box([0.0] * 3, [1.0, 2.0, 0.5]), 1.0),
    ("disk", Disk([0.5, -0.25], 0.75), math.pi * 0.75**2),
    ("annulus", Annulus([0.0, 0.0], 0.4, 1.0), math.pi * (1.0 - 0.16)),
    ("polygon_cw", Polygon([(0, 0), (0, 1), (2, 1), (1, 0)]), 1.5),
    ("l_shape", l_shape(), 3.0),
    ("box_minus_box", Box([-1, -1], [1, 1]) - Box([0, -1], [1, 0]), 3.0),
    ("disk_minus_disk", Disk([0, 0], 1.0) - Disk([0, 0], 0.4), math.pi * (1.0 - 0.16)),
    ("boxes_union", Box([0, 0], [1, 1]) | Box([1, 0], [2, 1]) | Box([0, 1], [1, 2]), 3.0),
    ("disk_and_box", Disk([0, 0], 1.0) & Box([0, 0], [2, 2]), math.pi / 4),
    ("box_minus_disk", Box([-1, -1], [1, 1]) - Disk([1, 1], 1.0), 4.0 - math.pi / 4),
]
IDS = [s[0] for s in SHAPES]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name,shape,area", SHAPES, ids=IDS)
def test_samplers_give_exactly_n_points_inside_and_on_the_boundary(name, shape, area):
    for n in (1, 7, 500):
        xi = shape.interior(n, gen())
        xb = shape.boundary()(n, gen())
        assert xi.shape == xb.shape == (n, shape.dim)
        assert xi.dtype == xb.dtype == torch.float64
        assert shape.inside(xi).all() and shape.inside(xb).all()
        assert shape.on_boundary(xb).all()
        assert not shape.on_boundary(xi).any()


@pytest.mark.parametrize("name,shape,area", SHAPES, ids=IDS)
def test_normals_are_unit_and_outward(name, shape, area):
    x = shape.boundary()(400, gen(1))
    n = shape.normal(x)
    assert n.shape == x.shape
    assert torch.allclose(n.norm(dim=1), torch.ones(len(x), dtype=torch.float64))
    eps = 1e-6
    assert not shape.inside(x + eps * n).any()
    assert shape.inside(x - eps * n).all()


@pytest.mark.parametrize("name,shape,area", SHAPES, ids=IDS)
def test_area_by_monte_carlo(name, shape, area):
    m = 40000
    bbox = math.prod(hi - lo for lo, hi in zip(shape.lower, shape.upper))
    x = Box(shape.lower, shape.upper).interior(m, gen(2))
    p = area / bbox
    estimate = bbox * shape.inside(x).double().mean().item()
    assert abs(estimate - area) <= 4 * bbox * math.sqrt(p * (1 - p) / m) + 1e-12


@pytest.mark.parametrize("name,shape,area", SHAPES, ids=IDS)
def test_samplers_are_deterministic_given_the_generator(name, shape, area):
    for sampler in (shape.interior, shape.boundary()):
        assert torch.equal(sampler(300, gen(5)), sampler(300, gen(5)))
        assert not torch.equal(sampler(300, gen(5)), sampler(300, gen(6)))


@pytest.mark.parametrize("name,shape,area", SHAPES, ids=IDS)
def test_grid_is_the_bounding_box_grid_inside_the_shape(name, shape, area):
    full = Box(shape.lower, shape.upper).grid(21)
    g = shape.grid(21)
    assert g.dtype == torch.float64 and shape.inside(g).all()
    assert len(g) == int(shape.inside(full).sum())


def test_boundary_is_uniform_in_arc_length():
    # L-shape: perimeter 8, the two re-entrant edges (x = 0, y < 0 and y = 0, x > 0) 2
    for shape in (l_shape(), Box([-1, -1], [1, 1]) - Box([0, -1], [1, 0])):
        x = shape.boundary()(20000, gen(3))
        reentrant = ((x[:, 0].abs() < 1e-12) & (x[:, 1] < 0)) | (
            (x[:, 1].abs() < 1e-12) & (x[:, 0] > 0)
        )
        assert abs(reentrant.double().mean().item() - 2 / 8) < 0.015
    x = Annulus([0, 0], 0.5, 1.5).boundary()(20000, gen(4))
    assert abs((x.norm(dim=1) < 1).double().mean().item() - 0.25) < 0.015


def test_union_of_touching_boxes_has_no_boundary_on_the_shared_side():
    u = Box([0, 0], [1, 1]) | Box([1, 0], [2, 1])
    x = torch.tensor([[1.0, 0.5], [1.0, 0.0], [0.0, 0.5], [2.0, 0.3]], dtype=torch.float64)
    assert u.on_boundary(x).tolist() == [False, True, True, True]
    assert not (u.boundary()(2000, gen()) [:, 0] == 1.0).any()  # fmt: skip


def test_annulus_normal_points_to_the_centre_on_the_inner_circle():
    a = Annulus([1.0, 2.0], 0.5, 1.0)
    x = torch.tensor([[1.5, 2.0], [2.0, 2.0], [1.0, 1.5]], dtype=torch.float64)
    expected = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(a.normal(x), expected)


def test_difference_flips_the_normal_of_the_removed_part():
    d = Disk([0, 0], 1.0) - Disk([0, 0], 0.5)
    x = torch.tensor([[0.5, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(d.normal(x), torch.tensor([[-1.0, 0.0], [0.0, 1.0]]).double())


def test_csg_agrees_with_the_primitive_shapes():
    x = Box([-1.2, -1.2], [1.2, 1.2]).interior(20000, gen(7))
    lb = Box([-1, -1], [1, 1]) - Box([0, -1], [1, 0])
    assert torch.equal(lb.inside(x), l_shape().inside(x))
    assert torch.equal(lb.on_boundary(x), l_shape().on_boundary(x))
    ring = Disk([0, 0], 1.0) - Disk([0, 0], 0.5)
    assert torch.equal(ring.inside(x), Annulus([0, 0], 0.5, 1.0).inside(x))
    # set identities on random points
    a, b = Disk([0, 0], 0.8), Box([0, 0], [1, 1])
    ia, ib = a.inside(x), b.inside(x)
    assert torch.equal((a | b).inside(x), ia | ib)
    assert torch.equal((a & b).inside(x), ia & ib)
    assert torch.equal((a - b).inside(x), ia & ~ib)  # no random point lies on ∂b
    boundary = l_shape().boundary()(500, gen(8))
    assert torch.allclose(lb.normal(boundary), l_shape().normal(boundary))


def test_polygon_orientation_does_not_matter():
    v = [(-1, -1), (0, -1), (0, 0), (1, 0), (1, 1), (-1, 1)]
    ccw, cw = Polygon(v), Polygon(v[::-1])
    assert ccw.area == cw.area == 3.0
    x = ccw.boundary()(300, gen(9))
    assert torch.allclose(ccw.normal(x), cw.normal(x))
    y = Box([-1, -1], [1, 1]).interior(2000, gen(10))
    assert torch.equal(ccw.inside(y), cw.inside(y))


def test_normal_refuses_points_off_the_boundary():
    with pytest.raises(ValueError, match=r"x: 1 point\(s\) are not on the boundary"):
        Disk([0, 0], 1.0).normal(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"not on the boundary"):
        l_shape().normal(torch.tensor([[0.5, -0.5]]))


@pytest.mark.parametrize(
    "build,pattern",
    [
        (lambda: Disk([0, 0], 0.0), r"radius must be > 0"),
        (lambda: Disk([0, 0], -1.0), r"radius"),
        (lambda: Disk([0, 0, 0], 1.0), r"center must be 2"),
        (lambda: Annulus([0, 0], 1.0, 1.0), r"r_inner must be < r_outer"),
        (lambda: Annulus([0, 0], 2.0, 1.0), r"r_inner must be < r_outer"),
        (lambda: Annulus([0, 0], 0.0, 1.0), r"r_inner must be > 0"),
        (lambda: Polygon([(0, 0), (1, 0)]), r"vertices: a polygon needs at least 3"),
        (lambda: Polygon([(0, 0), (1, 1), (2, 2)]), r"vertices enclose zero area"),
        (lambda: Polygon([(0, 0), (2, 0), (0, 1), (1, 1)]), r"vertices: edges .* cross"),
        (lambda: Polygon([0.0, 1.0, 2.0]), r"vertices must have shape"),
        (lambda: Disk([0, 0], 1.0) | Box([0] * 3, [1] * 3), r"Union: .*same dim"),
        (lambda: Box([0] * 3, [1] * 3) - Disk([0, 0], 1.0), r"Difference: .*same dim"),
        (lambda: Disk([0, 0], 1.0) & Disk([5, 5], 1.0), r"Intersection: .*do not overlap"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


def test_points_of_the_wrong_dimension_are_refused():
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        Disk([0, 0], 1.0).inside(torch.zeros(3, 3))


def test_box_behaviour_unchanged():
    assert BaseBox is Box and issubclass(Box, Geometry)
    box = Box([0.0, -1.0], [2.0, 1.0])
    assert box.lower == (0.0, -1.0) and box.upper == (2.0, 1.0) and box.dim == 2
    g = torch.Generator().manual_seed(0)
    expected = torch.tensor([0.0, -1.0]) + torch.tensor([2.0, 2.0]) * torch.rand(
        5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert torch.equal(box.interior(5, g), expected.double())
    xb = box.boundary()(8, gen())
    # largest remainder: 2 points on each face, in face order (x0 = 0, x0 = 2, x1 = -1, x1 = 1)
    assert xb[:2, 0].eq(0).all() and xb[2:4, 0].eq(2).all()
    assert xb[4:6, 1].eq(-1).all() and xb[6:, 1].eq(1).all()
    grid = box.grid(3)
    assert grid.shape == (9, 2) and grid.dtype == torch.float64
    assert torch.equal(box.face(1, "upper")(4, gen())[:, 1], torch.ones(4).double())
    with pytest.raises(ValueError, match="upper must exceed lower"):
        Box([0.0], [0.0])
    normals = box.normal(torch.tensor([[0.0, 0.0], [2.0, 0.5], [1.0, -1.0], [1.0, 1.0]]))
    assert normals.tolist() == [[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]]
    assert isinstance(box | Box([2.0, -1.0], [3.0, 1.0]), Union)
    assert isinstance(box - Disk([0, 0], 0.5), Difference)
    assert isinstance(box & Disk([0, 0], 0.5), Intersection)


def test_one_dimensional_boxes_combine():
    seg = Box([0.0], [1.0]) - Box([0.4], [0.6])
    x = seg.boundary()(100, gen())
    assert set(x[:, 0].tolist()) == {0.0, 0.4, 0.6, 1.0}
    assert seg.normal(torch.tensor([[0.4], [0.6]], dtype=torch.float64)).tolist() == [[1.0], [-1.0]]
    assert not seg.inside(torch.tensor([[0.5]])).any()

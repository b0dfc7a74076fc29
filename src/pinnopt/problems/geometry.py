"""Geometry: shapes that answer the same few questions, and their boolean combinations.

Every shape (a :class:`Geometry`) answers:

- ``dim``, ``lower``, ``upper``: dimension and bounding box (tuples of float);
- ``inside(x)``: bool (N,), the closed set (boundary included, small tolerance);
- ``on_boundary(x, tol)``: bool (N,), distance to the boundary <= tol;
- ``interior(n, generator)``: (n, d) float64 points uniform in the shape;
- ``boundary()``: a sampler ``(n, generator) -> (n, d)`` uniform on the boundary
  (in arc length in 2-D, in surface measure in general);
- ``normal(x)``: (N, d) outward unit normals at boundary points;
- ``grid(n_per_dim)``: the bounding box's tensor-product grid restricted to the shape.

Shapes: :class:`Box` (any dimension), :class:`Disk`, :class:`Annulus`, :class:`Polygon`,
:func:`l_shape` (2-D), combined with ``a | b`` (:class:`Union`), ``a - b``
(:class:`Difference`) and ``a & b`` (:class:`Intersection`). Every sampler is
deterministic given its ``torch.Generator`` and returns exactly n points.

Tolerances are absolute distances, scaled by the shape's size s = max(1, max |bound|):
``inside`` admits points within 1e-12·s of the set, ``on_boundary`` within tol·s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Sampler = Callable[[int, torch.Generator], Tensor]

TOL = 1e-12  # default tolerance of inside/on_boundary (relative to the shape's size)


def _points(x: Tensor, dim: int) -> Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")
    return x


def _coords(name: str, value: Sequence[float], dim: int) -> tuple[float, ...]:
    if len(value) != dim or not all(math.isfinite(float(v)) for v in value):
        raise ValueError(f"{name} must be {dim} finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _bbox_grid(lower: Sequence[float], upper: Sequence[float], n_per_dim: int) -> Tensor:
    axes = [torch.linspace(lo, hi, n_per_dim, dtype=torch.float64) for lo, hi in zip(lower, upper)]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def _rejection(n: int, dim: int, batch: Callable[[int], Tensor], what: str) -> Tensor:
    """Exactly n points from repeated ``batch(m)`` calls (each returns the accepted ones of
    m i.i.d. candidates, in random order); the batch size follows the acceptance rate."""
    out, have, drawn = [torch.empty(0, dim, dtype=torch.float64)], 0, 0
    while have < n:
        m = min(max(64, int(1.2 * (n - have) * (drawn + 1) / (have + 1))), 2_000_000)
        kept = batch(m)
        out.append(kept)
        have, drawn = have + len(kept), drawn + m
        if have == 0 and drawn >= 1_000_000:
            raise ValueError(f"{what}: no point accepted in {drawn} draws; is the shape empty?")
    return torch.cat(out)[:n]


class Geometry:
    """A closed set in R^d with the questions listed in the module docstring.

    Subclasses set ``lower``/``upper`` and implement ``inside``, ``boundary`` and either
    ``_boundary_distance`` (primitives) or ``on_boundary``, plus ``_normal``.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.lower)

    def _scale(self) -> float:
        return max(1.0, *(abs(v) for v in (*self.lower, *self.upper)))

    def inside(self, x: Tensor) -> Tensor:
        """bool (N,): x in the closed shape (within 1e-12·size)."""
        raise NotImplementedError

    def _boundary_distance(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def on_boundary(self, x: Tensor, tol: float = TOL) -> Tensor:
        """bool (N,): the distance from x to the boundary is at most tol·size."""
        return self._boundary_distance(_points(x, self.dim)) <= tol * self._scale()

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        raise NotImplementedError

    def normal(self, x: Tensor, tol: float = TOL) -> Tensor:
        """(N, d) outward unit normals at boundary points x; ValueError for any other point."""
        x = _points(x, self.dim)
        off = ~self.on_boundary(x, tol)
        if off.any():
            first = x[off.nonzero()[0, 0]].tolist()
            raise ValueError(
                f"x: {int(off.sum())} point(s) are not on the boundary, the first at {first}"
            )
        return self._normal(x, tol)

    def _bbox_uniform(self, m: int, g: torch.Generator) -> Tensor:
        lo = torch.tensor(self.lower, dtype=torch.float64)
        hi = torch.tensor(self.upper, dtype=torch.float64)
        return lo + (hi - lo) * torch.rand(m, self.dim, generator=g, dtype=torch.float64)

    def interior(self, n: int, generator: torch.Generator) -> Tensor:
        """n points uniform in the shape: uniform in the bounding box, kept if inside."""

        def batch(m: int) -> Tensor:
            x = self._bbox_uniform(m, generator)
            return x[self.inside(x)]

        return _rejection(n, self.dim, batch, type(self).__name__)

    def boundary(self) -> Sampler:
        """Sampler of points uniform on the boundary (arc length in 2-D)."""
        raise NotImplementedError

    def grid(self, n_per_dim: int) -> Tensor:
        """The bounding box's grid (``n_per_dim`` points per axis, ends included), restricted
        to the closed shape, float64 (M, d)."""
        x = _bbox_grid(self.lower, self.upper, n_per_dim)
        return x[self.inside(x)]

    # boundary pieces for boolean combinations: a primitive is one piece ("leaf") whose
    # boundary has measure _boundary_size; _owner(x) is the index of the leaf whose
    # boundary x is counted on (-1 if x is not on the boundary), one leaf per point
    _boundary_size: float = 0.0

    def _leaves(self) -> list[Geometry]:
        return [self]

    def _owner(self, x: Tensor, tol: float) -> Tensor:
        on = self.on_boundary(x, tol)
        return torch.where(on, 0, -1)

    def __or__(self, other: Geometry) -> Geometry:
        return Union(self, other) if isinstance(other, Geometry) else NotImplemented

    def __and__(self, other: Geometry) -> Geometry:
        return Intersection(self, other) if isinstance(other, Geometry) else NotImplemented

    def __sub__(self, other: Geometry) -> Geometry:
        return Difference(self, other) if isinstance(other, Geometry) else NotImplemented


class Box(Geometry):
    """The axis-aligned box [lower, upper] ⊂ R^d with uniform samplers (float64).

    Outward normal on the face x_i = lower_i is −e_i, on x_i = upper_i it is +e_i; at an
    edge or corner, the normal of the nearest face (ties: the first face, lower before
    upper, by coordinate).
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float]) -> None:
        if len(lower) != len(upper) or len(lower) == 0:
            raise ValueError("lower and upper must be non-empty and of the same length")
        if not all(math.isfinite(v) for v in (*lower, *upper)):
            raise ValueError("box bounds must be finite")
        if any(hi <= lo for lo, hi in zip(lower, upper)):
            raise ValueError("upper must exceed lower in every coordinate")
        self.lower = tuple(float(v) for v in lower)
        self.upper = tuple(float(v) for v in upper)
        sides = [hi - lo for lo, hi in zip(self.lower, self.upper)]
        self._boundary_size = 2 * sum(
            math.prod(s for j, s in enumerate(sides) if j != i) for i in range(self.dim)
        )

    @property
    def dim(self) -> int:
        return len(self.lower)

    def _uniform(self, n: int, g: torch.Generator) -> Tensor:
        lo = torch.tensor(self.lower, dtype=torch.float64)
        hi = torch.tensor(self.upper, dtype=torch.float64)
        return lo + (hi - lo) * torch.rand(n, self.dim, generator=g, dtype=torch.float64)

    def interior(self, n: int, g: torch.Generator) -> Tensor:
        """n points uniform in the box."""
        return self._uniform(n, g)

    def _bounds(self) -> tuple[Tensor, Tensor]:
        return (torch.tensor(self.lower, dtype=torch.float64),
                torch.tensor(self.upper, dtype=torch.float64))  # fmt: skip

    def inside(self, x: Tensor) -> Tensor:
        """lower_i − t <= x_i <= upper_i + t for every i (t = 1e-12·size)."""
        x, (lo, hi), t = _points(x, self.dim), self._bounds(), TOL * self._scale()
        return ((x >= lo - t) & (x <= hi + t)).all(dim=1)

    def _boundary_distance(self, x: Tensor) -> Tensor:
        lo, hi = self._bounds()
        outside = ((lo - x).clamp_min(0) + (x - hi).clamp_min(0)).norm(dim=1)
        inner = torch.minimum(x - lo, hi - x).min(dim=1).values
        return torch.where(outside > 0, outside, inner)

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        lo, hi = self._bounds()
        k = torch.cat([(x - lo).abs(), (hi - x).abs()], dim=1).argmin(dim=1)
        n = torch.zeros_like(x)
        n[torch.arange(len(x)), k % self.dim] = torch.where(k < self.dim, -1.0, 1.0).double()
        return n

    def boundary(self, dims: Sequence[int] | None = None) -> Sampler:
        """Sampler of points uniform on the faces x_i = lower_i or upper_i, i in ``dims``.

        The n points are shared among the 2·len(dims) faces in proportion to their
        measure (largest remainder, so every face gets its share deterministically);
        positions within each face are uniform.
        """
        dims = tuple(range(self.dim)) if dims is None else tuple(dims)
        for i in dims:
            if not 0 <= i < self.dim:
                raise ValueError(f"boundary dims must be in [0, {self.dim}), got {i}")
        sides = [hi - lo for lo, hi in zip(self.lower, self.upper)]
        faces = [(i, v) for i in dims for v in (self.lower[i], self.upper[i])]
        measure = [math.prod(s for j, s in enumerate(sides) if j != i) for i, _ in faces]
        share = [m / sum(measure) for m in measure]

        def sample(n: int, g: torch.Generator) -> Tensor:
            counts = [int(n * p) for p in share]
            by_remainder = sorted(range(len(faces)), key=lambda k: n * share[k] - counts[k])
            for k in reversed(by_remainder[len(faces) - (n - sum(counts)) :]):
                counts[k] += 1
            x = self._uniform(n, g)
            start = 0
            for (i, value), c in zip(faces, counts):
                x[start : start + c, i] = value
                start += c
            return x

        return sample

    def face(self, dim: int, side: str) -> Sampler:
        """Sampler of points uniform on the face x_dim = lower (``side="lower"``) or upper."""
        if not 0 <= dim < self.dim:
            raise ValueError(f"dim must be in [0, {self.dim}), got {dim}")
        if side not in ("lower", "upper"):
            raise ValueError(f"side must be 'lower' or 'upper', got {side!r}")
        value = self.lower[dim] if side == "lower" else self.upper[dim]

        def sample(n: int, g: torch.Generator) -> Tensor:
            x = self._uniform(n, g)
            x[:, dim] = value
            return x

        return sample

    def grid(self, n_per_dim: int) -> Tensor:
        """Tensor-product grid with ``n_per_dim`` points per axis (ends included), float64."""
        axes = [
            torch.linspace(lo, hi, n_per_dim, dtype=torch.float64)
            for lo, hi in zip(self.lower, self.upper)
        ]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)


class Disk(Geometry):
    """The closed disk {x ∈ R²: |x − c| <= r}. Boundary: the circle |x − c| = r, of length
    2πr, sampled at angle θ ~ U[0, 2π); outward normal (x − c)/|x − c|."""

    def __init__(self, center: Sequence[float], radius: float) -> None:
        self.center = _coords("center", center, 2)
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be > 0 and finite, got {radius}")
        self.radius = float(radius)
        self.lower = tuple(c - self.radius for c in self.center)
        self.upper = tuple(c + self.radius for c in self.center)
        self._boundary_size = 2 * math.pi * self.radius

    def _r(self, x: Tensor) -> Tensor:
        return (x - torch.tensor(self.center, dtype=torch.float64)).norm(dim=1)

    def inside(self, x: Tensor) -> Tensor:
        return self._r(_points(x, 2)) <= self.radius + TOL * self._scale()

    def _boundary_distance(self, x: Tensor) -> Tensor:
        return (self._r(x) - self.radius).abs()

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        d = x - torch.tensor(self.center, dtype=torch.float64)
        return d / d.norm(dim=1, keepdim=True)

    def boundary(self) -> Sampler:
        def sample(n: int, g: torch.Generator) -> Tensor:
            theta = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
            c = torch.tensor(self.center, dtype=torch.float64)
            return c + self.radius * torch.stack([theta.cos(), theta.sin()], dim=1)

        return sample


class Annulus(Geometry):
    """The closed ring {x ∈ R²: r_inner <= |x − c| <= r_outer}, 0 < r_inner < r_outer.

    Boundary: both circles, total length 2π(r_inner + r_outer); a point lies on the outer
    circle with probability r_outer/(r_inner + r_outer), at angle θ ~ U[0, 2π). Outward
    normal: (x − c)/|x − c| on the outer circle, −(x − c)/|x − c| (toward c) on the inner.
    """

    def __init__(self, center: Sequence[float], r_inner: float, r_outer: float) -> None:
        self.center = _coords("center", center, 2)
        if not (math.isfinite(r_inner) and r_inner > 0):
            raise ValueError(f"r_inner must be > 0 and finite, got {r_inner}")
        if not (math.isfinite(r_outer) and r_outer > r_inner):
            raise ValueError(f"r_inner must be < r_outer, got r_inner={r_inner}, r_outer={r_outer}")
        self.r_inner, self.r_outer = float(r_inner), float(r_outer)
        self.lower = tuple(c - self.r_outer for c in self.center)
        self.upper = tuple(c + self.r_outer for c in self.center)
        self._boundary_size = 2 * math.pi * (self.r_inner + self.r_outer)

    def _r(self, x: Tensor) -> Tensor:
        return (x - torch.tensor(self.center, dtype=torch.float64)).norm(dim=1)

    def inside(self, x: Tensor) -> Tensor:
        r, t = self._r(_points(x, 2)), TOL * self._scale()
        return (r >= self.r_inner - t) & (r <= self.r_outer + t)

    def _boundary_distance(self, x: Tensor) -> Tensor:
        r = self._r(x)
        return torch.minimum((r - self.r_inner).abs(), (r - self.r_outer).abs())

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        d = x - torch.tensor(self.center, dtype=torch.float64)
        r = d.norm(dim=1, keepdim=True)
        outer = (r - self.r_outer).abs() <= (r - self.r_inner).abs()
        return torch.where(outer, d / r, -d / r)

    def boundary(self) -> Sampler:
        p_outer = self.r_outer / (self.r_inner + self.r_outer)

        def sample(n: int, g: torch.Generator) -> Tensor:
            theta = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
            outer = torch.rand(n, generator=g, dtype=torch.float64) < p_outer
            r = (self.r_inner + (self.r_outer - self.r_inner) * outer.double()).unsqueeze(1)
            c = torch.tensor(self.center, dtype=torch.float64)
            return c + r * torch.stack([theta.cos(), theta.sin()], dim=1)

        return sample


class Polygon(Geometry):
    """A simple polygon with vertices v_0, …, v_{k−1} (either orientation, k >= 3; a
    repeated closing vertex is dropped), closed set.

    Inside: even-odd ray casting (a horizontal ray from x crosses the edges an odd number
    of times), or on an edge. Boundary: edge e chosen with probability |e|/perimeter, then
    a uniform point on it. Normal: the nearest edge's outward normal, (Δy, −Δx)/|e| for
    counter-clockwise vertices (signed area A = ½ Σ (x_i y_{i+1} − x_{i+1} y_i) > 0).
    """

    def __init__(self, vertices: Sequence[Sequence[float]] | Tensor) -> None:
        v = torch.as_tensor(vertices, dtype=torch.float64)
        if v.ndim != 2 or v.shape[1] != 2:
            raise ValueError(f"vertices must have shape (k, 2), got {tuple(v.shape)}")
        if len(v) > 3 and torch.equal(v[0], v[-1]):
            v = v[:-1]
        if len(v) < 3:
            raise ValueError(f"vertices: a polygon needs at least 3, got {len(v)}")
        if not torch.isfinite(v).all():
            raise ValueError("vertices must be finite")
        self.vertices = v
        self.lower = tuple(v.min(dim=0).values.tolist())
        self.upper = tuple(v.max(dim=0).values.tolist())
        a, d = v, v.roll(-1, dims=0) - v
        self.area = 0.5 * float((a[:, 0] * d[:, 1] - a[:, 1] * d[:, 0]).sum())
        if abs(self.area) <= 1e-12 * self._scale() ** 2:
            raise ValueError("vertices enclose zero area")
        self._lengths = d.norm(dim=1)
        if (self._lengths == 0).any():
            raise ValueError("vertices: two consecutive vertices coincide")
        sign = 1.0 if self.area > 0 else -1.0
        self._edge_normals = sign * torch.stack([d[:, 1], -d[:, 0]], dim=1) / self._lengths[:, None]
        self.area = abs(self.area)
        self._boundary_size = float(self._lengths.sum())
        self._check_simple()

    def _check_simple(self) -> None:
        a, b = self.vertices, self.vertices.roll(-1, dims=0)
        k = len(a)

        def cross(o: Tensor, p: Tensor, q: Tensor) -> Tensor:  # (p − o) × (q − o), pairs (i, j)
            return (p[:, None, 0] - o[:, None, 0]) * (q[None, :, 1] - o[:, None, 1]) - (
                p[:, None, 1] - o[:, None, 1]
            ) * (q[None, :, 0] - o[:, None, 0])

        side = cross(a, b, a) * cross(a, b, b)  # < 0: edge j's ends on both sides of line i
        crosses = (side < 0) & (side.T < 0)
        i, j = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
        adjacent = ((i - j).abs() <= 1) | ((i - j).abs() == k - 1)
        bad = (crosses & ~adjacent).nonzero()
        if len(bad):
            e, f = bad[0].tolist()
            raise ValueError(f"vertices: edges {e} and {f} cross; the polygon must be simple")

    def _edge_distances(self, x: Tensor) -> Tensor:  # (N, k)
        a = self.vertices[None]
        d = self.vertices.roll(-1, dims=0)[None] - a
        p = x[:, None, :] - a
        t = ((p * d).sum(-1) / (d * d).sum(-1)).clamp(0, 1)
        return (p - t[..., None] * d).norm(dim=-1)

    def _boundary_distance(self, x: Tensor) -> Tensor:
        return self._edge_distances(x).min(dim=1).values

    def inside(self, x: Tensor) -> Tensor:
        x = _points(x, 2)
        a, b = self.vertices, self.vertices.roll(-1, dims=0)
        px, py = x[:, None, 0], x[:, None, 1]
        straddles = (a[:, 1] > py) != (b[:, 1] > py)
        dy = torch.where(straddles, b[:, 1] - a[:, 1], 1.0)
        x_cross = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
        odd = (straddles & (px < x_cross)).sum(dim=1) % 2 == 1
        return odd | (self._boundary_distance(x) <= TOL * self._scale())

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        return self._edge_normals[self._edge_distances(x).argmin(dim=1)]

    def boundary(self) -> Sampler:
        def sample(n: int, g: torch.Generator) -> Tensor:
            e = torch.multinomial(self._lengths, n, replacement=True, generator=g)
            t = torch.rand(n, 1, generator=g, dtype=torch.float64)
            a = self.vertices[e]
            return a + t * (self.vertices.roll(-1, dims=0)[e] - a)

        return sample


def l_shape() -> Polygon:
    """The L-shaped domain [−1, 1]² minus [0, 1] × [−1, 0] (re-entrant corner at 0)."""
    return Polygon([(-1, -1), (0, -1), (0, 0), (1, 0), (1, 1), (-1, 1)])


class _Boolean(Geometry):
    """A boolean combination of shapes a and b of the same dimension.

    The boundary lies on ∂a ∪ ∂b: it is sampled uniformly from the leaves' boundaries (in
    proportion to their measure) and a point is kept where it is on the result's boundary
    and counted on that leaf (a stretch shared by ∂a and ∂b counts once). Where ∂a and ∂b
    coincide their normals decide: same direction (n_a·n_b > 0) or opposite (< 0).
    """

    _flip = 1.0  # sign of b's normals on the result's boundary

    def __init__(self, a: Geometry, b: Geometry) -> None:
        if not (isinstance(a, Geometry) and isinstance(b, Geometry)):
            raise TypeError(f"{type(self).__name__} combines two Geometry objects")
        if a.dim != b.dim:
            raise ValueError(
                f"{type(self).__name__}: a and b must have the same dim, "
                f"got a.dim = {a.dim}, b.dim = {b.dim}"
            )
        self.a, self.b = a, b
        self.lower, self.upper = self._bbox()

    def _bbox(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        raise NotImplementedError

    def _leaves(self) -> list[Geometry]:
        return self.a._leaves() + self.b._leaves()

    def _classify(self, x: Tensor, tol: float) -> dict[str, Tensor]:
        oa, ob = self.a._owner(x, tol), self.b._owner(x, tol)
        ba, bb = oa >= 0, ob >= 0
        both = ba & bb
        dot = torch.zeros(len(x), dtype=torch.float64)
        if both.any():
            xb = x[both]
            dot[both] = (self.a._normal(xb, tol) * self.b._normal(xb, tol)).sum(dim=1)
        ina, inb = self.a.inside(x), self.b.inside(x)
        return dict(oa=oa, ob=ob, ba=ba, bb=bb, ina=ina, inb=inb, ia=ina & ~ba, ib=inb & ~bb,
                    same=both & (dot > 0), opposite=both & (dot < 0))  # fmt: skip

    def _sides(self, c: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(from_a, from_b): points on the result's boundary counted on ∂a, on ∂b."""
        raise NotImplementedError

    def _owner(self, x: Tensor, tol: float) -> Tensor:
        c = self._classify(x, tol)
        from_a, from_b = self._sides(c)
        la = len(self.a._leaves())
        return torch.where(from_a, c["oa"], torch.where(from_b, c["ob"] + la, -1))

    def on_boundary(self, x: Tensor, tol: float = TOL) -> Tensor:
        return self._owner(_points(x, self.dim), tol) >= 0

    def _normal(self, x: Tensor, tol: float) -> Tensor:
        from_a, _ = self._sides(self._classify(x, tol))
        n = torch.zeros_like(x)
        if from_a.any():
            n[from_a] = self.a._normal(x[from_a], tol)
        if (~from_a).any():
            n[~from_a] = self._flip * self.b._normal(x[~from_a], tol)
        return n

    def boundary(self) -> Sampler:
        leaves = self._leaves()
        samplers = [leaf.boundary() for leaf in leaves]
        sizes = torch.tensor([leaf._boundary_size for leaf in leaves], dtype=torch.float64)

        def sample(n: int, g: torch.Generator) -> Tensor:
            def batch(m: int) -> Tensor:
                leaf = torch.multinomial(sizes, m, replacement=True, generator=g)
                x = torch.empty(m, self.dim, dtype=torch.float64)
                for k, draw in enumerate(samplers):
                    at = (leaf == k).nonzero().squeeze(1)
                    if len(at):
                        x[at] = draw(len(at), g)
                order = torch.randperm(m, generator=g)
                x, leaf = x[order], leaf[order]
                return x[self._owner(x, TOL) == leaf]

            return _rejection(n, self.dim, batch, f"{type(self).__name__}.boundary")

        return sample


class Union(_Boolean):
    """a ∪ b: inside a or inside b. Boundary: ∂a outside the interior of b, and ∂b outside
    the interior of a, less stretches where ∂a and ∂b meet with opposite normals (there a
    and b touch and the union continues across)."""

    def _bbox(self):
        return (tuple(map(min, self.a.lower, self.b.lower)),
                tuple(map(max, self.a.upper, self.b.upper)))  # fmt: skip

    def inside(self, x: Tensor) -> Tensor:
        return self.a.inside(x) | self.b.inside(x)

    def _sides(self, c):
        return c["ba"] & ~c["ib"] & ~c["opposite"], c["bb"] & ~c["ia"] & ~c["ba"]


class Intersection(_Boolean):
    """a ∩ b: inside a and inside b. Boundary: ∂a inside b, and ∂b inside a."""

    def _bbox(self):
        lower = tuple(map(max, self.a.lower, self.b.lower))
        upper = tuple(map(min, self.a.upper, self.b.upper))
        if any(hi <= lo for lo, hi in zip(lower, upper)):
            raise ValueError("Intersection: the bounding boxes of a and b do not overlap")
        return lower, upper

    def inside(self, x: Tensor) -> Tensor:
        return self.a.inside(x) & self.b.inside(x)

    def _sides(self, c):
        return c["ba"] & c["inb"], c["bb"] & c["ina"] & ~c["ba"]


class Difference(_Boolean):
    """a − b, the closure of a \\ b: inside a, not in the interior of b, and not on a stretch
    where ∂a and ∂b coincide with the same normal. Boundary: ∂a outside the interior of b
    (less those stretches), and ∂b inside a, whose normal is flipped (−n_b)."""

    _flip = -1.0

    def _bbox(self):
        return self.a.lower, self.a.upper

    def inside(self, x: Tensor) -> Tensor:
        c = self._classify(_points(x, self.dim), TOL)
        return c["ina"] & ~c["ib"] & ~c["same"]

    def _sides(self, c):
        return c["ba"] & ~c["ib"] & ~c["same"], c["bb"] & c["ina"] & ~c["ba"]


def with_normals(shape: Geometry, sampler: Sampler | None = None) -> Sampler:
    """Boundary points with their outward normals: rows [x, n(x)], shape (n, 2d).

    For a Neumann or Robin term, ``Term(..., data_columns=d)``: the network sees x, the
    residual reads n as ``x[:, d:]``. The normals are computed once, when the points
    are drawn, not inside the residual (which runs under vmap for the Jacobian).
    ``sampler`` defaults to the whole boundary of ``shape``; pass a part of it (say,
    one circle of a difference) to use that part with ``shape``'s normals.
    """
    draw = shape.boundary() if sampler is None else sampler

    def sample(n: int, g: torch.Generator) -> Tensor:
        x = draw(n, g)
        return torch.cat([x, shape.normal(x)], dim=1)

    return sample

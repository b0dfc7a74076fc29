"""Model transforms: periodic inputs and exact output constraints, with their jets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pinnopt.derivatives import (
    Jet,
    input_jet,
    jet,
    jet_autograd,
    jet_torch_func,
    propagate_jet,
    supports_jet,
)
from pinnopt.models import MLP, OutputTransform, PeriodicInputs
from pinnopt.problems.constraints import box_distance

DTYPE = torch.float64
ORDERS = [(0, False), (1, False), (2, False), (2, True)]
LOWER, UPPER = [0.0, -1.0], [1.0, 2.0]


def _max_diff(a: Jet, b: Jet) -> float:
    """Largest difference over the parts both jets carry (and they carry the same parts)."""
    worst = 0.0
    for name, p, q in zip(("value", "grad", "hess_diag", "lap"), a.parts, b.parts, strict=True):
        assert (p is None) == (q is None), f"{name}: one jet has it, the other not"
        if p is not None:
            assert p.shape == q.shape, f"{name}: {tuple(p.shape)} vs {tuple(q.shape)}"
            worst = max(worst, (p - q).abs().max().item())
    return worst


def _fast(model: nn.Module, x: torch.Tensor, order: int, trace: bool) -> Jet:
    return propagate_jet(model, input_jet(x, order, trace))


def _points(n: int, lower, upper, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lower, dtype=DTYPE), torch.tensor(upper, dtype=DTYPE)
    return lo + (hi - lo) * torch.rand(n, len(lower), generator=gen, dtype=DTYPE)


class Plain(nn.Module):
    """A module without forward_jet: jets of it go through torch.func."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Fn(nn.Module):
    """A plain function as a module, for the reference jets of g."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x)
        return out.unsqueeze(1) if out.ndim == 1 else out


def _network(kind: str, out_dim: int) -> nn.Module:
    if kind == "mlp":
        return MLP(2, out_dim, 8, 2, lower=LOWER, upper=UPPER, seed=3)
    if kind == "plain":
        return Plain(MLP(2, out_dim, 8, 2, lower=LOWER, upper=UPPER, seed=3))
    periodic = PeriodicInputs(2, {1: 3.0})
    lo, hi = periodic.bounds(LOWER, UPPER)
    return nn.Sequential(periodic, MLP(periodic.out_dim, out_dim, 8, 2, lower=lo, upper=hi))


def _fields(shape: str, out_dim: int):
    """Smooth, non-polynomial g and d returning (N,) or (N, out_dim)."""

    def g(x):
        cols = [torch.sin(x[:, 0] + k) * torch.exp(0.3 * x[:, 1]) for k in range(out_dim)]
        return cols[0] if shape == "vector" else torch.stack(cols, dim=1)

    def d(x):
        cols = [x[:, 0] * (1 - x[:, 0]) * torch.cos(x[:, 1] + k) for k in range(out_dim)]
        return cols[0] if shape == "vector" else torch.stack(cols, dim=1)

    return g, d


# --------------------------------------------------------------------------- jets


@pytest.mark.parametrize("shape", ["vector", "matrix"])
@pytest.mark.parametrize("out_dim", [1, 2])
@pytest.mark.parametrize("kind", ["mlp", "plain", "periodic"])
def test_output_transform_jet_matches_torch_func_and_autograd(kind, out_dim, shape):
    net = _network(kind, out_dim)
    assert supports_jet(net) is (kind != "plain")
    g, d = _fields(shape, out_dim)
    model = OutputTransform(net, g, d, out_dim)
    assert supports_jet(model)
    x = _points(7, LOWER, UPPER)
    for order, trace in ORDERS:
        fast = _fast(model, x, order, trace)
        assert fast.value.shape == (7, out_dim)
        assert _max_diff(fast, jet_torch_func(model, x, order, trace)) <= 1e-12
        assert _max_diff(fast, jet_autograd(model, x, order, trace)) <= 1e-12
    # the public entry point takes the fast path and agrees too
    assert _max_diff(jet(model, x, 2), jet_torch_func(model, x, 2)) <= 1e-12


def test_output_transform_jet_with_constant_g():
    net = MLP(2, 2, 8, 2, lower=LOWER, upper=UPPER)
    model = OutputTransform(net, lambda x: x.new_zeros(x.shape[0]), _fields("matrix", 2)[1], 2)
    x = _points(5, LOWER, UPPER)
    for order, trace in ORDERS:
        assert (
            _max_diff(_fast(model, x, order, trace), jet_autograd(model, x, order, trace)) < 1e-12
        )


@pytest.mark.parametrize("out_dim", [1, 2])
@pytest.mark.parametrize("periods", [{0: 2.0}, {0: 1.0, 2: 3.0}])
def test_periodic_inputs_jet_matches_torch_func_and_autograd(periods, out_dim):
    lower, upper = [0.0, -1.0, 0.5], [2.0, 1.0, 4.0]
    periodic = PeriodicInputs(3, periods)
    lo, hi = periodic.bounds(lower, upper)
    model = nn.Sequential(periodic, MLP(periodic.out_dim, out_dim, 8, 2, lower=lo, upper=hi))
    assert supports_jet(model)
    x = _points(6, lower, upper)
    for order, trace in ORDERS:
        fast = _fast(model, x, order, trace)
        assert _max_diff(fast, jet_torch_func(model, x, order, trace)) <= 1e-12
        assert _max_diff(fast, jet_autograd(model, x, order, trace)) <= 1e-12


def test_periodic_inputs_forward_layout_and_bounds():
    periodic = PeriodicInputs(3, {2: 4.0, 0: 2.0})  # any order in, increasing i out
    x = torch.tensor([[0.5, 7.0, 1.0]], dtype=DTYPE)
    out = periodic(x)
    expected = [math.cos(math.pi * 0.5), 7.0, math.cos(math.pi / 2), math.sin(math.pi * 0.5), 1.0]
    assert periodic.out_dim == 5 and out.shape == (1, 5)
    assert torch.allclose(out, torch.tensor([expected], dtype=DTYPE), atol=1e-15)
    assert periodic.bounds([0, -3, 0], [2, 3, 4]) == ([-1, -3, -1, -1, -1], [1, 3, 1, 1, 1])
    assert list(periodic.parameters()) == [] and periodic.state_dict() == {}


# --------------------------------------------------------------------------- exactness


def test_hard_constraint_holds_on_the_faces_before_training():
    faces = [(0, "lower"), (0, "upper"), (1, "lower")]
    d = box_distance(LOWER, UPPER, faces)

    def g(x):  # the boundary data, one column per component
        return torch.stack([torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2, torch.exp(x[:, 0])], 1)

    net = MLP(2, 2, 16, 2, lower=LOWER, upper=UPPER, seed=5)
    model = OutputTransform(net, g, d, 2)
    for i, side in faces:
        x = _points(64, LOWER, UPPER, seed=7)
        x[:, i] = (LOWER if side == "lower" else UPPER)[i]
        assert (model(x) - g(x)).abs().max().item() <= 1e-14
        # and the derivatives along the face: u − g vanishes identically on it
        u, gj = jet(model, x, 2), jet_torch_func(Fn(g), x, 2)
        along = 1 - i
        assert (u.grad[:, along] - gj.grad[:, along]).abs().max().item() <= 1e-12
        assert (u.hess_diag[:, along] - gj.hess_diag[:, along]).abs().max().item() <= 1e-12
    # off the constrained faces u − g = d·N is not small: the test above can fail
    free = _points(64, LOWER, UPPER, seed=8)
    free[:, 1] = UPPER[1]  # the face (1, "upper") is not constrained
    assert (model(free) - g(free)).abs().max().item() > 1e-2
    inside = _points(64, LOWER, UPPER, seed=9)
    assert (model(inside) - g(inside)).abs().max().item() > 1e-2


def test_periodic_network_is_exactly_periodic_with_its_derivatives():
    lower, upper = [0.0, -1.0, 0.0], [2.0, 1.0, 0.5]
    periodic = PeriodicInputs(3, {0: 2.0, 2: 0.5})
    lo, hi = periodic.bounds(lower, upper)
    model = nn.Sequential(periodic, MLP(periodic.out_dim, 2, 16, 2, lower=lo, upper=hi, seed=4))
    x = _points(50, lower, upper)
    base = jet(model, x, 2)
    for i, period in periodic.periods.items():
        for shift in (period, -period):
            y = x.clone()
            y[:, i] += shift
            assert (model(y) - model(x)).abs().max().item() <= 1e-13
            assert _max_diff(jet(model, y, 2), base) <= 1e-12
    # the other coordinate is not periodic (with the period of either periodic one)
    for shift in (2.0, 0.5):
        y = x.clone()
        y[:, 1] += shift
        assert (model(y) - model(x)).abs().max().item() > 1e-2


def test_output_transform_parameters_are_the_networks():
    net = MLP(2, 1, 8, 1)
    g = Fn(lambda x: x[:, 0])
    g.extra = nn.Parameter(torch.zeros(1, dtype=DTYPE))  # a module g stays a plain callable
    model = OutputTransform(net, g, lambda x: x[:, 1], 1)
    assert [id(p) for p in model.parameters()] == [id(p) for p in net.parameters()]
    assert model.state_dict().keys() == {f"network.{k}" for k in net.state_dict()}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ({3: 1.0}, r"^periodic input 3 does not exist; inputs are 0\.\.1$"),
        ({-1: 1.0}, r"^periodic input -1 does not exist; inputs are 0\.\.1$"),
        ({True: 1.0}, r"^periodic input True does not exist"),
        ({0: 0.0}, r"^period of input 0 must be finite and > 0, got 0\.0$"),
        ({1: -2.0}, r"^period of input 1 must be finite and > 0, got -2\.0$"),
        ({0: math.inf}, r"^period of input 0 must be finite and > 0, got inf$"),
        ({0: math.nan}, r"^period of input 0 must be finite and > 0, got nan$"),
    ],
)
def test_periodic_inputs_validation(periods, message):
    with pytest.raises(ValueError, match=message):
        PeriodicInputs(2, periods)


def test_periodic_inputs_bounds_and_dim_validation():
    with pytest.raises(ValueError, match=r"^in_dim must be an integer >= 1, got 0$"):
        PeriodicInputs(0, {})
    with pytest.raises(ValueError, match=r"^lower and upper must have 2 entries, got 3 and 2$"):
        PeriodicInputs(2, {0: 1.0}).bounds([0, 0, 0], [1, 1])


def test_output_transform_validation():
    net = MLP(2, 2, 4, 1)
    ok = lambda x: x[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match=r"^g must be a function of the points x"):
        OutputTransform(net, 1.0, ok, 2)
    with pytest.raises(ValueError, match=r"^d must be a function of the points x"):
        OutputTransform(net, ok, None, 2)
    with pytest.raises(ValueError, match=r"^out_dim must be an integer >= 1, got 0$"):
        OutputTransform(net, ok, ok, 0)
    with pytest.raises(ValueError, match=r"^network must be an nn\.Module, got function$"):
        OutputTransform(ok, ok, ok, 2)
    x = _points(5, LOWER, UPPER)
    bad = OutputTransform(net, lambda x: x.new_zeros(5, 3), ok, 2)
    with pytest.raises(
        ValueError, match=r"^g\(x\) must have shape \(5,\) or \(5, 2\), got \(5, 3\)$"
    ):
        bad(x)
    with pytest.raises(
        ValueError, match=r"^network output must have shape \(5, 3\), got \(5, 2\)$"
    ):
        OutputTransform(net, ok, ok, 3)(x)
    hidden = Jet(x.new_zeros(5, 2), x.new_zeros(5, 3, 2))  # a jet with 3 input coordinates
    with pytest.raises(ValueError, match=r"must be the outermost module"):
        OutputTransform(net, ok, ok, 2).forward_jet(hidden)

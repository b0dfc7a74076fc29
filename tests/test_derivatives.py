"""Jets: the forward fast path agrees with nested autograd and torch.func, field by field."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from pinnopt import derivatives as D
from pinnopt.derivatives import Jet, jet, jet_autograd, jet_torch_func, propagate_jet, supports_jet
from pinnopt.models import ACTIVATIONS, MLP, Activation, build_model
from pinnopt.problems import Box, Term

DTYPE = torch.float64
ATOL = 1e-11
RTOL = 1e-9


def _box(d: int) -> tuple[list[float], list[float]]:
    """A non-symmetric, non-unit box so that input scaling does real work."""
    return [-1.0 - 0.25 * i for i in range(d)], [2.0 + 0.5 * i for i in range(d)]


def _points(d: int, n: int = 6, seed: int = 0) -> Tensor:
    lower, upper = _box(d)
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lower, dtype=DTYPE), torch.tensor(upper, dtype=DTYPE)
    return lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=DTYPE)


def _assert_jets_close(a: Jet, b: Jet, atol: float = ATOL, rtol: float = RTOL) -> None:
    for field in ("value", "grad", "hess_diag"):
        fa, fb = getattr(a, field), getattr(b, field)
        assert (fa is None) == (fb is None), field
        if fa is not None:
            assert fa.shape == fb.shape, field
            torch.testing.assert_close(fa, fb, atol=atol, rtol=rtol, msg=field)


class Cubic(nn.Module):
    """A module with no jet support: u0 = Σ (i+1) x_i³, u1 = exp(x_0) Σ x_i²."""

    def forward(self, x: Tensor) -> Tensor:
        k = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)
        u0 = (k * x**3).sum(dim=1)
        u1 = torch.exp(x[:, 0]) * (x**2).sum(dim=1)
        return torch.stack([u0, u1], dim=1)


def _cubic_exact(x: Tensor) -> Jet:
    n, d = x.shape
    k = torch.arange(1, d + 1, dtype=x.dtype)
    e = torch.exp(x[:, 0])
    s = (x**2).sum(dim=1)
    value = torch.stack([(k * x**3).sum(dim=1), e * s], dim=1)
    g0 = 3 * k * x**2
    g1 = 2 * e[:, None] * x
    g1[:, 0] += e * s
    h0 = 6 * k * x
    h1 = 2 * e[:, None].expand(n, d).clone()
    h1[:, 0] = e * s + 4 * e * x[:, 0] + 2 * e
    return Jet(value, torch.stack([g0, g1], dim=2), torch.stack([h0, h1], dim=2))


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("features", ["plain", "scaled", "fourier", "scaled+fourier"])
@pytest.mark.parametrize("out_dim", [1, 2])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_fast_path_matches_autograd_and_torch_func(activation, d, out_dim, features):
    lower, upper = _box(d) if "scaled" in features else (None, None)
    nff = 3 if "fourier" in features else 0
    model = MLP(
        d, out_dim, width=6, depth=2, activation=activation, lower=lower, upper=upper,
        fourier_features=nff, fourier_sigma=0.3, seed=d,
    ).to(DTYPE)  # fmt: skip
    assert supports_jet(model)
    x = _points(d)

    fast = jet(model, x, order=2)
    ref = jet_autograd(model, x, order=2)
    func = jet_torch_func(model, x, order=2)

    assert fast.value.shape == (6, out_dim)
    assert fast.grad.shape == (6, d, out_dim)
    assert fast.hess_diag.shape == (6, d, out_dim)
    torch.testing.assert_close(fast.value, model(x), atol=1e-13, rtol=1e-12)
    _assert_jets_close(fast, ref)
    _assert_jets_close(func, ref)
    # The comparison is only meaningful when the derivatives are not trivially zero.
    assert ref.grad.abs().max() > 1e-3
    assert ref.hess_diag.abs().max() > 1e-4


@pytest.mark.parametrize("d", [1, 3])
def test_fast_path_does_not_call_torch_func(monkeypatch, d):
    calls = []
    monkeypatch.setattr(D, "jet_torch_func", lambda *a, **k: calls.append(1))
    model = build_model("mlp", d, *_box(d), width=5, depth=1).to(DTYPE)
    out = jet(model, _points(d), order=2)
    assert calls == []
    assert isinstance(out, Jet) and out.hess_diag is not None


def test_linear_without_bias_and_identity_propagate():
    model = nn.Sequential(
        nn.Linear(3, 5, bias=False), Activation("tanh"), nn.Identity(), nn.Linear(5, 2)
    ).to(DTYPE)
    x = _points(3)
    assert supports_jet(model)
    _assert_jets_close(jet(model, x), jet_autograd(model, x))


def test_order_zero_propagated_jet_matches_forward():
    model = build_model("mlp", 2, *_box(2), width=4, depth=2, activation="silu").to(DTYPE)
    x = _points(2)
    z = propagate_jet(model, D.input_jet(x, 0))
    assert z.grad is None and z.hess_diag is None and z.lap is None
    torch.testing.assert_close(z.value, model(x), atol=1e-13, rtol=1e-12)


def test_input_jet_layout():
    x = _points(3, n=4)
    z = D.input_jet(x, 2)
    torch.testing.assert_close(z.value, x)
    torch.testing.assert_close(z.grad, torch.eye(3, dtype=DTYPE).expand(4, 3, 3))
    assert z.hess_diag.shape == (4, 3, 3) and torch.count_nonzero(z.hess_diag) == 0
    assert z.lap is None
    traced = D.input_jet(x, 2, trace=True)
    assert traced.hess_diag is None and traced.lap.shape == (4, 3)
    assert D.input_jet(x, 1).hess_diag is None


@pytest.mark.parametrize("kind", ["mlp", "chebykan", "fourier"])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_trace_mode_gives_the_laplacian(kind, d):
    if kind == "fourier":
        model = build_model("mlp", d, *_box(d), width=6, depth=2, fourier_features=3)
    else:
        model = build_model(kind, d, *_box(d), width=6, depth=2, out_dim=2)
    x = _points(d)
    full, traced = jet_autograd(model, x), jet(model, x, trace=True)
    assert traced.hess_diag is None
    torch.testing.assert_close(traced.value, full.value, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(traced.grad, full.grad, atol=1e-11, rtol=1e-9)
    torch.testing.assert_close(traced.lap, full.hess_diag.sum(dim=1), atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(traced.laplacian(), full.laplacian(), atol=1e-10, rtol=1e-9)
    with pytest.raises(ValueError, match="no second derivatives"):
        traced.d2(0)
    with pytest.raises(ValueError, match="partial Laplacian"):
        traced.laplacian(dims=(0,))


def test_trace_needs_order_two():
    box = Box([0.0], [1.0])
    with pytest.raises(ValueError, match="trace needs order 2"):
        Term("pde", box.interior, lambda u, x: u.u, order=1, trace=True)


def test_float32_fast_path_close_to_float64():
    model64 = build_model("mlp", 2, *_box(2), width=8, depth=2, activation="gelu").to(DTYPE)
    model32 = build_model("mlp", 2, *_box(2), width=8, depth=2, activation="gelu")
    model32.load_state_dict(model64.state_dict())
    model32 = model32.to(torch.float32)
    x = _points(2)
    j32 = jet(model32, x.float())
    j64 = jet(model64, x)
    assert j32.value.dtype == j32.grad.dtype == j32.hess_diag.dtype == torch.float32
    _assert_jets_close(
        Jet(j32.value.double(), j32.grad.double(), j32.hess_diag.double()),
        j64,
        atol=1e-4,
        rtol=1e-4,
    )


# --------------------------------------------------------------------------- orders and Jet


def _models_for_orders():
    mlp = build_model("mlp", 2, *_box(2), width=5, depth=1, out_dim=2).to(DTYPE)
    return {"mlp": mlp, "fallback": Cubic()}


@pytest.mark.parametrize("kind", ["mlp", "fallback"])
@pytest.mark.parametrize("method", ["jet", "jet_autograd", "jet_torch_func"])
def test_orders_give_the_right_fields(kind, method):
    model = _models_for_orders()[kind]
    fn = {"jet": jet, "jet_autograd": jet_autograd, "jet_torch_func": jet_torch_func}[method]
    x = _points(2)
    full = jet_autograd(model, x, order=2)

    j0 = fn(model, x, order=0)
    assert j0.grad is None and j0.hess_diag is None
    torch.testing.assert_close(j0.value, full.value, atol=1e-13, rtol=1e-12)
    with pytest.raises(ValueError, match="no first derivatives: request order >= 1"):
        j0.d(0)
    with pytest.raises(ValueError, match="no second derivatives: request order 2"):
        j0.d2(0)

    j1 = fn(model, x, order=1)
    assert j1.hess_diag is None
    torch.testing.assert_close(j1.grad, full.grad, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(j1.d(1, component=1), full.grad[:, 1, 1], atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="no second derivatives: request order 2"):
        j1.d2(0)
    with pytest.raises(ValueError, match="no second derivatives: request order 2"):
        j1.laplacian()

    j2 = fn(model, x, order=2)
    _assert_jets_close(j2, full)


def test_jet_accessors():
    value = torch.tensor([[1.0, 10.0], [2.0, 20.0]])
    grad = torch.arange(12.0).reshape(2, 3, 2)
    hess = 100 + torch.arange(12.0).reshape(2, 3, 2)
    j = Jet(value, grad, hess)
    assert torch.equal(j.u, torch.tensor([1.0, 2.0]))
    assert torch.equal(j.d(2), torch.tensor([4.0, 10.0]))
    assert torch.equal(j.d(0, component=1), torch.tensor([1.0, 7.0]))
    assert torch.equal(j.d2(1, component=1), torch.tensor([103.0, 109.0]))
    # component 0: rows [100, 102, 104] and [106, 108, 110]
    assert torch.equal(j.laplacian(), torch.tensor([306.0, 324.0]))
    assert torch.equal(j.laplacian(dims=(0, 2)), torch.tensor([204.0, 216.0]))
    assert torch.equal(j.laplacian(component=1), torch.tensor([309.0, 327.0]))


@pytest.mark.parametrize("order", [-1, 3, 7])
def test_bad_order_raises(order):
    model = build_model("mlp", 2, width=4, depth=1).to(DTYPE)
    with pytest.raises(ValueError, match=f"order must be 0, 1 or 2, got {order}"):
        jet(model, _points(2), order=order)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 2), ()])
def test_bad_shape_raises(shape):
    model = build_model("mlp", 2, width=4, depth=1).to(DTYPE)
    with pytest.raises(ValueError, match=r"points must have shape \(N, d\)"):
        jet(model, torch.zeros(shape, dtype=DTYPE))


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_fallback_matches_analytic_derivatives(monkeypatch, d):
    model = Cubic()
    assert not supports_jet(model)
    calls = []
    original = D.jet_torch_func

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(D, "jet_torch_func", spy)
    x = _points(d, n=5)
    out = jet(model, x, order=2)
    assert calls == [1]
    exact = _cubic_exact(x)
    _assert_jets_close(out, exact, atol=1e-11, rtol=1e-11)
    _assert_jets_close(jet_autograd(model, x), exact, atol=1e-11, rtol=1e-11)


def test_sequential_with_foreign_layer_falls_back():
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).to(DTYPE)
    assert not supports_jet(model)
    x = _points(2)
    _assert_jets_close(jet(model, x), jet_autograd(model, x))


class _CubedSequential(nn.Sequential):
    """A Sequential subclass whose forward is not the composition of its layers."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) ** 3


def test_sequential_subclass_with_custom_forward_is_not_jetted_wrongly():
    model = _CubedSequential(nn.Linear(2, 4), Activation("tanh"), nn.Linear(4, 1)).to(DTYPE)
    x = _points(2)
    _assert_jets_close(jet(model, x), jet_autograd(model, x))


# --------------------------------------------------------------------------- parameter gradients


def _pinn_loss(j: Jet, x: Tensor) -> Tensor:
    r = j.laplacian() + j.u * j.d(0) - torch.sin(x[:, 0])
    return r.square().mean() + j.value[:, -1].square().mean()


@pytest.mark.parametrize("kind", ["mlp", "chebykan"])
@pytest.mark.parametrize("d", [1, 3])
def test_parameter_gradients_of_jet_loss_match_autograd(kind, d):
    model = build_model(kind, d, *_box(d), out_dim=2, width=5, depth=2, degree=3).to(DTYPE)
    x = _points(d, n=8)
    params = list(model.parameters())

    g_fast = torch.autograd.grad(_pinn_loss(jet(model, x), x), params)
    g_ref = torch.autograd.grad(_pinn_loss(jet_autograd(model, x), x), params)
    g_func = torch.autograd.grad(_pinn_loss(jet_torch_func(model, x), x), params)
    for a, b, c in zip(g_fast, g_ref, g_func):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(c, b, atol=1e-10, rtol=1e-9)
    assert max(float(g.abs().max()) for g in g_ref) > 1e-3


def test_parameter_gradient_matches_finite_difference():
    """The jet-based loss is differentiable in θ and its gradient is the true one."""
    model = build_model("mlp", 2, *_box(2), width=6, depth=2, activation="sin").to(DTYPE)
    x = _points(2, n=10)
    params = list(model.parameters())
    grads = torch.autograd.grad(_pinn_loss(jet(model, x), x), params)
    g = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, generator=g, dtype=DTYPE) for p in params]
    predicted = sum(float((gi * vi).sum()) for gi, vi in zip(grads, direction))
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, v in zip(params, direction):
                p.add_(sign * eps * v)
            values.append(float(_pinn_loss(jet(model, x), x)))
            for p, v in zip(params, direction):
                p.sub_(sign * eps * v)
    fd = (values[0] - values[1]) / (2 * eps)
    assert math.isclose(fd, predicted, rel_tol=1e-6, abs_tol=1e-8)

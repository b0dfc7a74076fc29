"""Models: construction, parameter counts, Chebyshev basis, initializers, scaling, dtypes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pinnopt.derivatives import jet, jet_autograd, jet_torch_func, supports_jet
from pinnopt.models import (
    ACTIVATIONS,
    INITIALIZERS,
    MLP,
    MODELS,
    Activation,
    ChebyKAN,
    ChebyshevLayer,
    FourierFeatures,
    InputScaling,
    build_model,
    initialize,
    register_model,
)

DTYPE = torch.float64


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- build_model


def test_models_registry_and_kinds():
    assert list(MODELS) == ["mlp", "chebykan"]
    assert isinstance(build_model("mlp", 2), MLP)
    assert isinstance(build_model("chebykan", 2), ChebyKAN)


def test_unknown_model_raises_naming_it():
    with pytest.raises(
        ValueError, match=r"model must be one of \['mlp', 'chebykan'\], got 'resnet'"
    ):
        build_model("resnet", 2)


def test_register_model_adds_a_name_and_refuses_a_duplicate():
    def _linear(in_dim, lower, upper, *, out_dim, dtype, **_):
        return nn.Linear(in_dim, out_dim, dtype=dtype)

    try:
        register_model("linear")(_linear)
        model = build_model("linear", 3, out_dim=2)
        assert isinstance(model, nn.Linear) and model.weight.shape == (2, 3)
        assert model.weight.dtype == torch.float64
        with pytest.raises(ValueError, match=r"model 'mlp' is already registered"):
            register_model("mlp")(_linear)
    finally:
        MODELS.pop("linear", None)  # the registry is shared: leave it as it was
    assert list(MODELS) == ["mlp", "chebykan"]


@pytest.mark.parametrize(
    "in_dim, out_dim, width, depth, ff",
    [(1, 1, 8, 1, 0), (2, 1, 32, 2, 0), (3, 2, 10, 3, 0), (5, 1, 7, 4, 0), (2, 3, 16, 2, 6)],
)
def test_mlp_parameter_count(in_dim, out_dim, width, depth, ff):
    model = build_model(
        "mlp", in_dim, out_dim=out_dim, width=width, depth=depth, fourier_features=ff
    )
    features = 2 * ff if ff else in_dim
    expected = (features + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * out_dim
    assert _count(model) == expected
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    assert sum(isinstance(m, Activation) for m in model) == depth


@pytest.mark.parametrize(
    "in_dim, out_dim, width, depth, degree",
    [(1, 1, 4, 1, 1), (2, 1, 16, 2, 5), (3, 2, 8, 3, 4), (5, 1, 6, 1, 8)],
)
def test_chebykan_parameter_count(in_dim, out_dim, width, depth, degree):
    model = build_model(
        "chebykan", in_dim, out_dim=out_dim, width=width, depth=depth, degree=degree
    )
    k = degree + 1
    expected = k * (in_dim * width + (depth - 1) * width * width + width * out_dim)
    assert _count(model) == expected
    layers = [m for m in model if isinstance(m, ChebyshevLayer)]
    assert len(layers) == depth + 1
    assert all(layer.coeffs.shape[-1] == k for layer in layers)


def test_box_adds_input_scaling_first():
    for kind in MODELS:
        with_box = build_model(kind, 2, [0.0, -1.0], [1.0, 3.0])
        assert isinstance(with_box[0], InputScaling)
        assert not any(isinstance(m, InputScaling) for m in build_model(kind, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 0}, "width must be >= 1, got 0"),
        ({"depth": 0}, "depth must be >= 1, got 0"),
        ({"in_dim": 0}, "in_dim and out_dim must be >= 1"),
        ({"out_dim": 0}, "in_dim and out_dim must be >= 1"),
        ({"activation": "relu6"}, r"activation must be one of .*got 'relu6'"),
        ({"init": "bogus"}, r"init must be one of .*got 'bogus'"),
        ({"fourier_features": -2}, "num_features must be >= 1, got -2"),
        ({"fourier_features": 4, "fourier_sigma": 0.0}, "sigma must be > 0, got 0.0"),
    ],
)
def test_invalid_mlp_arguments_raise(kwargs, match):
    args = {"in_dim": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        build_model("mlp", **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 0}, "width and depth must be >= 1"),
        ({"depth": -1}, "width and depth must be >= 1"),
        ({"degree": 0}, "degree must be >= 1, got 0"),
    ],
)
def test_invalid_chebykan_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("chebykan", 2, **kwargs)


def test_chebykan_zero_in_dim_raises_value_error():
    with pytest.raises(ValueError, match="in_dim"):
        build_model("chebykan", 0)


@pytest.mark.parametrize("kind", list(MODELS))
def test_box_dimension_mismatch_raises_value_error(kind):
    with pytest.raises(ValueError, match="lower"):
        build_model(kind, 2, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- Chebyshev


@pytest.mark.parametrize("degree", [1, 2, 5, 12])
def test_chebyshev_basis_is_cos_k_arccos(degree):
    layer = ChebyshevLayer(1, 1, degree)
    x = torch.linspace(-1.0, 1.0, 201, dtype=DTYPE)
    basis = layer.basis(x)
    assert basis.shape == (201, degree + 1)
    k = torch.arange(degree + 1, dtype=DTYPE)
    expected = torch.cos(k * torch.arccos(x)[:, None])
    torch.testing.assert_close(basis, expected, atol=1e-12, rtol=0)
    # T_k(1) = 1 and T_k(-1) = (-1)^k exactly
    torch.testing.assert_close(basis[-1], torch.ones(degree + 1, dtype=DTYPE))
    torch.testing.assert_close(basis[0], (-1.0) ** k)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=8),
    st.integers(1, 9),
)
def test_chebyshev_basis_property(xs, degree):
    x = torch.tensor(xs, dtype=DTYPE)
    basis = ChebyshevLayer(1, 1, degree).basis(x)
    k = torch.arange(degree + 1, dtype=DTYPE)
    torch.testing.assert_close(basis, torch.cos(k * torch.arccos(x)[:, None]), atol=1e-12, rtol=0)
    assert bool((basis.abs() <= 1 + 1e-12).all())


def test_chebyshev_layer_forward_is_coefficient_sum():
    layer = ChebyshevLayer(3, 2, 4).to(DTYPE)
    x = 2 * torch.rand(5, 3, dtype=DTYPE) - 1
    k = torch.arange(5, dtype=DTYPE)
    t = torch.cos(k * torch.arccos(x)[..., None])  # (5, 3, 5)
    expected = torch.stack(
        [
            sum(layer.coeffs[j, i, kk] * t[:, i, kk] for i in range(3) for kk in range(5))
            for j in range(2)
        ],
        dim=1,
    )
    torch.testing.assert_close(layer(x), expected, atol=1e-13, rtol=1e-12)


def test_chebyshev_layer_init_std():
    layer = ChebyshevLayer(40, 50, 9)
    std = 1.0 / math.sqrt(40 * 10)
    assert layer.coeffs.shape == (50, 40, 10)
    coeffs = layer.coeffs.detach()
    assert abs(float(coeffs.std()) / std - 1) < 0.05
    assert abs(float(coeffs.mean())) < 0.05 * std


@pytest.mark.parametrize("degree", [1, 2, 5])
@pytest.mark.parametrize("d, out_dim", [(1, 1), (2, 2), (3, 1)])
def test_chebykan_jet_matches_autograd(d, out_dim, degree):
    lower, upper = [-1.0 - i for i in range(d)], [1.5 + i for i in range(d)]
    model = build_model(
        "chebykan", d, lower, upper, out_dim=out_dim, width=5, depth=2, degree=degree
    ).to(DTYPE)
    assert supports_jet(model)
    g = torch.Generator().manual_seed(d)
    lo, hi = torch.tensor(lower, dtype=DTYPE), torch.tensor(upper, dtype=DTYPE)
    x = lo + (hi - lo) * torch.rand(7, d, generator=g, dtype=DTYPE)
    fast, ref, func = jet(model, x), jet_autograd(model, x), jet_torch_func(model, x)
    for a in (fast, func):
        torch.testing.assert_close(a.value, ref.value, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(a.grad, ref.grad, atol=1e-11, rtol=1e-9)
        torch.testing.assert_close(a.hess_diag, ref.hess_diag, atol=1e-11, rtol=1e-9)
    assert ref.hess_diag.abs().max() > 1e-4
    j1 = jet(model, x, order=1)
    assert j1.hess_diag is None
    torch.testing.assert_close(j1.grad, ref.grad, atol=1e-11, rtol=1e-9)


# --------------------------------------------------------------------------- initializers


def test_initializer_names():
    assert set(INITIALIZERS) == {"kaiming", "xavier", "orthogonal", "small-uniform"}


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_each_initializer_runs_and_zeroes_biases(name):
    model = build_model("mlp", 3, width=16, depth=2, init=name)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
            assert torch.isfinite(m.weight).all()
            assert m.weight.abs().max() > 0
    # re-initializing an existing module works too, and changes the weights
    before = model[0].weight.clone()
    initialize(model, name)
    assert not torch.equal(before, model[0].weight)


def test_small_uniform_bound():
    layer = nn.Linear(64, 200)
    initialize(layer, "small-uniform")
    bound = 0.1 / math.sqrt(64)
    w = layer.weight.detach()
    assert float(w.abs().max()) <= bound
    assert float(w.max()) > 0.95 * bound and float(w.min()) < -0.95 * bound


def test_initializer_statistics():
    layer = nn.Linear(300, 200)
    initialize(layer, "xavier")
    assert abs(float(layer.weight.detach().std()) / math.sqrt(2 / 500) - 1) < 0.03
    initialize(layer, "kaiming")  # nonlinearity="linear": std = 1/sqrt(fan_in)
    assert abs(float(layer.weight.detach().std()) / math.sqrt(1 / 300) - 1) < 0.03
    square = nn.Linear(20, 20).double()
    initialize(square, "orthogonal")
    w = square.weight.detach()
    torch.testing.assert_close(w @ w.t(), torch.eye(20, dtype=DTYPE), atol=1e-12, rtol=0)


def test_unknown_initializer_raises_naming_it():
    with pytest.raises(ValueError, match=r"init must be one of \[.*'xavier'\], got 'he-normal'"):
        initialize(nn.Linear(2, 2), "he-normal")


def test_same_global_seed_gives_same_model():
    torch.manual_seed(7)
    a = build_model("mlp", 2, width=8, fourier_features=3)
    torch.manual_seed(7)
    b = build_model("mlp", 2, width=8, fourier_features=3)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


@pytest.mark.parametrize("kind", list(MODELS))
def test_build_model_seed_determines_weights(kind):
    a = build_model(kind, 2, width=8, seed=3)
    b = build_model(kind, 2, width=8, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("d", [1, 2, 3])
def test_input_scaling_maps_corners_to_plus_minus_one(d):
    lower = [-3.0 + 0.5 * i for i in range(d)]
    upper = [0.1 + 2.0 * i for i in range(d)]
    scaling = InputScaling(lower, upper)
    for corner in itertools.product([0, 1], repeat=d):
        x = torch.tensor([[upper[i] if c else lower[i] for i, c in enumerate(corner)]], dtype=DTYPE)
        expected = torch.tensor([[1.0 if c else -1.0 for c in corner]], dtype=DTYPE)
        torch.testing.assert_close(scaling(x), expected, atol=1e-15, rtol=0)
    center = torch.tensor([[(lo + hi) / 2 for lo, hi in zip(lower, upper)]], dtype=DTYPE)
    torch.testing.assert_close(scaling(center), torch.zeros(1, d, dtype=DTYPE), atol=1e-15, rtol=0)
    # jet: value scaled and shifted, derivatives only scaled
    j = jet(scaling, center)
    expected_grad = torch.diag(torch.tensor([2 / (hi - lo) for lo, hi in zip(lower, upper)]))
    torch.testing.assert_close(j.grad[0], expected_grad.to(DTYPE))
    assert torch.count_nonzero(j.hess_diag) == 0


@pytest.mark.parametrize(
    "lower, upper, match",
    [
        ([0.0, 0.0], [1.0], "same length"),
        ([[0.0]], [[1.0]], "1-D"),
        ([0.0, 1.0], [1.0, 1.0], "upper must exceed lower"),
    ],
)
def test_input_scaling_rejects_bad_boxes(lower, upper, match):
    with pytest.raises(ValueError, match=match):
        InputScaling(lower, upper)


def test_fourier_features():
    ff = FourierFeatures(3, 5, sigma=2.0, seed=11).to(DTYPE)
    assert ff.out_dim == 10
    assert ff.B.shape == (5, 3)
    x = torch.rand(4, 3, dtype=DTYPE)
    y = ff(x)
    assert y.shape == (4, 10)
    torch.testing.assert_close(y[:, :5] ** 2 + y[:, 5:] ** 2, torch.ones(4, 5, dtype=DTYPE))
    torch.testing.assert_close(y[:, :5], torch.sin(x @ ff.B.t()))
    assert torch.equal(FourierFeatures(3, 5, 2.0, seed=11).B, FourierFeatures(3, 5, 2.0, seed=11).B)
    assert not torch.equal(
        FourierFeatures(3, 5, 2.0, seed=11).B, FourierFeatures(3, 5, 2.0, seed=12).B
    )
    assert "B" not in dict(ff.named_parameters())
    # B = 2π σ N(0, 1): the scale follows sigma
    big = FourierFeatures(1, 4000, sigma=0.5, seed=0)
    assert abs(float(big.B.std()) / (2 * math.pi * 0.5) - 1) < 0.05


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_match_autograd(name):
    act = Activation(name)
    z = torch.linspace(-6.0, 6.0, 241, dtype=DTYPE, requires_grad=True)
    f0, f1, f2 = ACTIVATIONS[name](z)
    y = act(z)
    torch.testing.assert_close(f0, y, atol=1e-14, rtol=1e-13)
    (g1,) = torch.autograd.grad(y.sum(), z, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), z)
    torch.testing.assert_close(f1, g1, atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(f2, g2, atol=1e-13, rtol=1e-12)
    assert repr(act) == f"Activation({name})"


def test_unknown_activation_raises_naming_it():
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'swish'"):
        Activation("swish")


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_models_work_in_float32_and_float64(kind, dtype):
    torch.manual_seed(5)
    model = build_model(kind, 2, [0.0, -1.0], [2.0, 1.0], width=8, depth=2, fourier_features=0)
    model = model.to(dtype)
    x = torch.rand(9, 2, dtype=dtype)
    y = model(x)
    assert y.dtype == dtype and y.shape == (9, 1)
    j = jet(model, x)
    assert j.value.dtype == j.grad.dtype == j.hess_diag.dtype == dtype
    torch.testing.assert_close(j.value, y, atol=1e-5 if dtype == torch.float32 else 1e-13, rtol=0)
    ref = jet(model.to(DTYPE), x.to(DTYPE))
    tol = 1e-4 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(j.hess_diag.to(DTYPE), ref.hess_diag, atol=tol, rtol=tol)


@pytest.mark.parametrize("kind", list(MODELS))
def test_fresh_model_with_box_has_one_dtype(kind):
    model = build_model(kind, 2, [0.0, 0.0], [1.0, 1.0], width=4, depth=1)
    dtypes = {t.dtype for t in list(model.parameters()) + list(model.buffers())}
    assert len(dtypes) == 1
    (dtype,) = dtypes
    assert model(torch.rand(3, 2, dtype=dtype)).dtype == dtype

"""LAdam, LAdaGrad, LRMSProp: the Laplacian, the small-tensor rules, c2 = 0 reductions, modes."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import torch

from pinnopt.optim import build_optimizer, compiler, laplacian_smoothed
from pinnopt.optim.laplacian_smoothed import (
    FusedFallbackWarning,
    LAdaGrad,
    LAdam,
    LRMSProp,
    laplacian,
    smooth,
    suggest_c2,
)

DTYPE = torch.float64


def test_9point_stencil_by_hand():
    # a 3 × 3 field with one 1 in the middle: periodic, so every other cell is its neighbour
    x = torch.zeros(3, 3, dtype=DTYPE)
    x[1, 1] = 1.0
    expected = torch.tensor([[1, 4, 1], [4, -20, 4], [1, 4, 1]], dtype=DTYPE) / 6
    torch.testing.assert_close(laplacian(x), expected, atol=1e-15, rtol=0)


def test_5point_stencil_with_circular_padding_by_hand():
    # 3 × 4 field, a 1 in the corner: its neighbours wrap around both edges
    x = torch.zeros(3, 4, dtype=DTYPE)
    x[0, 0] = 1.0
    expected = torch.zeros(3, 4, dtype=DTYPE)
    expected[0, 0] = -4
    expected[1, 0] = expected[2, 0] = expected[0, 1] = expected[0, 3] = 1
    torch.testing.assert_close(laplacian(x, "5point"), expected, atol=0, rtol=0)


def test_9point_corner_wraps_to_all_eight_neighbours():
    x = torch.zeros(4, 5, dtype=DTYPE)
    x[0, 0] = 6.0
    lap = laplacian(x)
    assert lap[0, 0] == -20
    for i, j in [(1, 0), (3, 0), (0, 1), (0, 4)]:
        assert lap[i, j] == 4
    for i, j in [(1, 1), (1, 4), (3, 1), (3, 4)]:
        assert lap[i, j] == 1
    assert float(lap.sum()) == pytest.approx(0.0, abs=1e-12)  # a Laplacian conserves the total


def test_1d_stencil_is_periodic():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=DTYPE)
    expected = torch.tensor([8 + 2 - 2, 1 + 4 - 4, 2 + 8 - 8, 4 + 1 - 16], dtype=DTYPE)
    torch.testing.assert_close(laplacian(x), expected, atol=0, rtol=0)


def test_small_tensors_get_a_zero_laplacian_and_higher_dims_are_reshaped():
    assert torch.equal(laplacian(torch.ones(3)), torch.zeros(3))
    assert torch.equal(laplacian(torch.arange(6.0).view(2, 3)), torch.zeros(2, 3))
    assert torch.equal(laplacian(torch.tensor(5.0)), torch.tensor(0.0))
    x = torch.randn(3, 2, 2, dtype=DTYPE)  # viewed as (3, 4)
    torch.testing.assert_close(laplacian(x), laplacian(x.reshape(3, 4)).view(3, 2, 2))


@pytest.mark.parametrize("stencil", ["9point", "5point"])
@pytest.mark.parametrize("shape", [(3, 3), (5, 7), (8, 3), (4, 3, 2)])
def test_shifted_sums_equal_a_circular_convolution_with_the_stencil(stencil, shape):
    kernels = {
        "9point": torch.tensor([[1, 4, 1], [4, -20, 4], [1, 4, 1]], dtype=DTYPE) / 6,
        "5point": torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=DTYPE),
    }
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    field = x.reshape(shape[0], -1)[None, None]
    padded = torch.nn.functional.pad(field, (1, 1, 1, 1), mode="circular")
    expected = torch.nn.functional.conv2d(padded, kernels[stencil][None, None]).view(shape)
    torch.testing.assert_close(laplacian(x, stencil), expected, atol=1e-13, rtol=0)
    c2 = 0.37
    torch.testing.assert_close(smooth(x, c2, stencil), x + c2 * expected, atol=1e-13, rtol=0)
    floor = 0.1
    torch.testing.assert_close(
        smooth(x, c2, stencil, floor), (x + c2 * expected).clamp_min(floor), atol=1e-13, rtol=0
    )


def model_and_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 20), torch.nn.Tanh(), torch.nn.Linear(20, 20), torch.nn.Tanh(),
        torch.nn.Linear(20, 1),
    ).to(DTYPE)  # fmt: skip
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DTYPE) * 0.5)
    x = torch.randn(32, 3, generator=g, dtype=DTYPE)
    y = torch.randn(32, 1, generator=g, dtype=DTYPE)
    return model, x, y


def eager(opt):
    """``opt`` with fused=False, for tests of the update's arithmetic and bookkeeping, which
    the compiled update shares (test_fused_equals_eager_...): no compilation in each."""
    for group in opt.param_groups:
        group["fused"] = False
    return opt


def train(opt_factory, steps=25):
    model, x, y = model_and_data()
    opt = opt_factory(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), opt


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda p: LAdam(p, c2=0.0), lambda p: torch.optim.Adam(p)),
        (lambda p: LAdam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, c2=0.0),
         lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
        (lambda p: LAdam(p, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, c2=0.0),
         lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)),
        (lambda p: LAdam(p, c2=0.0, mode="update_lap"), lambda p: torch.optim.Adam(p)),
        (lambda p: LAdam(p, c2=0.0, mode="weight_lap"), lambda p: torch.optim.Adam(p)),
        (lambda p: LAdaGrad(p, c2=0.0), lambda p: torch.optim.Adagrad(p)),
        (lambda p: LAdaGrad(p, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1,
                            c2=0.0),
         lambda p: torch.optim.Adagrad(p, lr_decay=0.01, weight_decay=0.1,
                                       initial_accumulator_value=0.1)),
        (lambda p: LRMSProp(p, c2=0.0), lambda p: torch.optim.RMSprop(p)),
        (lambda p: LRMSProp(p, lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=0.1, c2=0.0),
         lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=0.1)),
    ],
)  # fmt: skip
def test_c2_zero_reduces_to_torch(ours, theirs):
    a, _ = train(lambda p: eager(ours(p)))
    b, _ = train(theirs)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_ladam_variance_lap_step_by_hand():
    # one step on a 4 × 4 weight: m̂ = g, v̂ = g², v_s = max(g² + c2 ∇²g², eps)
    w = torch.nn.Parameter(torch.zeros(4, 4, dtype=DTYPE))
    g = torch.arange(16, dtype=DTYPE).view(4, 4) / 10
    w.grad = g.clone()
    c2, lr, eps = 0.1, 0.5, 1e-8
    LAdam([w], lr=lr, c2=c2, eps=eps, fused=False).step()
    v = g**2
    vs = (v + c2 * laplacian(v)).clamp_min(eps)
    torch.testing.assert_close(w.detach(), -lr * g / (vs.sqrt() + eps), atol=1e-14, rtol=0)


def test_ladam_update_lap_and_weight_lap_by_hand():
    g = torch.randn(4, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    c2, lr, eps = 0.1, 0.5, 1e-8
    w = torch.nn.Parameter(torch.zeros(4, 4, dtype=DTYPE))
    w.grad = g.clone()
    LAdam([w], lr=lr, c2=c2, mode="update_lap", fused=False).step()
    u = g / (g.abs() + eps)
    torch.testing.assert_close(w.detach(), -lr * (u + c2 * laplacian(u)), atol=1e-14, rtol=0)
    w0 = torch.randn(4, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(2))
    w = torch.nn.Parameter(w0.clone())
    w.grad = g.clone()
    LAdam([w], lr=lr, c2=c2, mode="weight_lap", fused=False).step()
    adam = w0 - lr * u
    torch.testing.assert_close(w.detach(), adam + c2 * laplacian(adam), atol=1e-14, rtol=0)


@pytest.mark.parametrize("cls", [LAdaGrad, LRMSProp])
def test_adagrad_and_rmsprop_clamp_the_smoothed_accumulator_at_zero(cls):
    # a spike in g² makes g² + c2 ∇²g² negative at its neighbours: clamped to 0, so there
    # the step is g/eps — for a zero gradient, 0
    w = torch.nn.Parameter(torch.zeros(4, 4, dtype=DTYPE))
    g = torch.zeros(4, 4, dtype=DTYPE)
    g[1, 1] = 1.0
    w.grad = g
    cls([w], lr=0.1, c2=1.0, stencil="5point", fused=False).step()
    assert torch.isfinite(w).all()
    assert float(w.detach()[1, 1]) < 0 and torch.count_nonzero(w.detach()) == 1


def test_small_tensors_are_not_smoothed_and_the_choice_is_made_once():
    big = torch.nn.Parameter(torch.zeros(4, 4, dtype=DTYPE))
    small = torch.nn.Parameter(torch.zeros(3, dtype=DTYPE))
    opt = LAdam([big, small], c2=1e-3, min_spatial_size=16, fused=False)
    big.grad, small.grad = torch.ones(4, 4, dtype=DTYPE), torch.ones(3, dtype=DTYPE)
    opt.step()
    assert opt.state[big]["smoothed"] is True and opt.state[small]["smoothed"] is False
    opt.param_groups[0]["c2"] = 0.0  # decided at the first step: stays smoothed
    opt.step()
    assert opt.state[big]["smoothed"] is True


def test_param_groups_with_their_own_c2():
    a = torch.nn.Parameter(torch.zeros(5, 5, dtype=DTYPE))
    b = torch.nn.Parameter(torch.zeros(5, 5, dtype=DTYPE))
    g = torch.randn(5, 5, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    opt = LAdam([{"params": [a], "c2": 0.0}, {"params": [b], "c2": 0.5}], fused=False)
    a.grad, b.grad = g.clone(), g.clone()
    opt.step()
    assert opt.state[a]["smoothed"] is False and opt.state[b]["smoothed"] is True
    assert not torch.equal(a, b)


@pytest.mark.parametrize("cls", [LAdam, LAdaGrad, LRMSProp])
def test_state_dict_round_trip_and_closure(cls):
    a, opt_a = train(lambda p: cls(p, c2=1e-2), steps=5)
    model, x, y = model_and_data()
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.copy_(a[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    opt_b = cls(model.parameters(), c2=1e-2)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))

    def closure():
        opt_b.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    loss = opt_b.step(closure)
    assert torch.is_tensor(loss) and torch.isfinite(loss)
    assert opt_b.state_dict()["state"][0]["step"] == 6


@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (LAdam, {"lr": -1.0}, "Invalid learning rate: -1.0"),
        (LAdam, {"eps": -1.0}, "Invalid epsilon value: -1.0"),
        (LAdam, {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        (LAdam, {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
        (LAdam, {"c2": -1e-5}, "Invalid c2 value: -1e-05"),
        (LAdam, {"mode": "grad_lap"}, "Invalid mode: 'grad_lap'"),
        (LAdam, {"stencil": "7point"}, "Invalid stencil: '7point'"),
        (LAdaGrad, {"lr_decay": -1.0}, "Invalid lr_decay value: -1.0"),
        (LAdaGrad, {"c2": float("nan")}, "Invalid c2 value: nan"),
        (LRMSProp, {"alpha": 1.0}, "Invalid alpha value: 1.0"),
        (LRMSProp, {"stencil": "x"}, "Invalid stencil: 'x'"),
        (LAdam, {"fused": "yes"}, "Invalid fused value: 'yes'"),
        (LAdaGrad, {"fused": 1}, "Invalid fused value: 1;"),
        (LRMSProp, {"fused": "auto"}, "Invalid fused value: 'auto'"),
    ],
)
def test_invalid_hyperparameters_name_the_parameter(cls, options, match):
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=match):
        cls([w], **options)


def test_suggest_c2():
    assert suggest_c2("pinn") == 1e-5 and suggest_c2("transformer") == 1e-4
    assert suggest_c2("mlp") == 1e-5 and suggest_c2("cnn") == 0.0 and suggest_c2("auto") == 1e-4
    with pytest.raises(ValueError, match="Invalid architecture: 'rnn'"):
        suggest_c2("rnn")


@pytest.mark.parametrize("name", ["ladam", "ladagrad", "lrmsprop"])
def test_registered_by_name(name):
    w = torch.nn.Parameter(torch.zeros(4, 4))
    opt = build_optimizer(name, [w], c2=1e-4)
    assert opt.param_groups[0]["c2"] == 1e-4


FUSED_CASES = {
    "ladam variance_lap, L2 decay": lambda p, **k: LAdam(p, lr=1e-2, c2=0.05, weight_decay=0.1,
                                                         **k),
    "ladam update_lap, decoupled": lambda p, **k: LAdam(
        p, lr=1e-2, c2=0.05, mode="update_lap", weight_decay=0.1, decoupled_weight_decay=True, **k
    ),
    "ladam weight_lap, 5point": lambda p, **k: LAdam(p, lr=1e-2, c2=0.05, mode="weight_lap",
                                                      stencil="5point", **k),
    "ladagrad": lambda p, **k: LAdaGrad(p, c2=0.05, lr_decay=0.1, **k),
    "lrmsprop momentum": lambda p, **k: LRMSProp(p, lr=1e-3, c2=0.05, momentum=0.9, **k),
}  # fmt: skip


@pytest.mark.parametrize("own_call_numel", [2**17, 60])  # all in one call; 20x20, 3x20 alone
@pytest.mark.parametrize("case", FUSED_CASES)
def test_fused_equals_eager_and_lr_changes_do_not_recompile(case, own_call_numel, monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr(laplacian_smoothed, "FUSED_OWN_CALL_NUMEL", own_call_numel)
    calls = []  # (number of tensors, shape-generic) of each compiled call

    compile_ = laplacian_smoothed._compiled

    def spy(update, dynamic):
        compiled = compile_(update, dynamic)

        def call(params, *args, **kwargs):
            calls.append((len(params), dynamic))
            return compiled(params, *args, **kwargs)

        return call

    def run(fused):
        model, x, y = model_and_data()
        opt = FUSED_CASES[case](model.parameters(), min_spatial_size=4, fused=fused)
        graphs = []
        for _ in range(4):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            for group in opt.param_groups:
                group["lr"] *= 0.5  # as a scheduler would
            graphs.append(counters["stats"]["unique_graphs"])
        return torch.cat([p.detach().flatten() for p in model.parameters()]), graphs

    eager, _ = run(False)
    monkeypatch.setattr(laplacian_smoothed, "_compiled", spy)
    fused, graphs = run(True)
    torch.testing.assert_close(fused, eager, atol=1e-12, rtol=0)
    assert graphs[-1] == graphs[0]  # compiled once, at the first step
    per_step = [(6, False)] if own_call_numel > 400 else [(1, True), (1, True), (4, False)]
    assert calls == per_step * 4


def notices(run):
    """run()'s result and the FusedFallbackWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, [str(w.message) for w in caught if w.category is FusedFallbackWarning]


def fake_compiler(monkeypatch, missing=None, broken=()):
    """The compiler check says ``missing`` and the default (fused=None) compiles where it
    can, as outside the tests; _compiled records (shape-generic?) of each call and
    gives the eager update itself (no compilation), or, for the ``broken`` kinds, something
    that raises what torch.compile raises when it cannot compile."""
    from torch._inductor.exc import InductorError

    calls = []

    def compiled(update, dynamic):
        def call(*args, **kwargs):
            calls.append(dynamic)
            if dynamic in broken:
                raise InductorError(RuntimeError("C++ compile error (test)"), None)
            return update(*args, **kwargs)

        return call

    monkeypatch.setattr(compiler, "compiler_missing", lambda device_type: missing)
    monkeypatch.setattr(compiler, "AUTOMATIC", True)
    monkeypatch.setattr(laplacian_smoothed, "_compiled", compiled)
    return calls


@pytest.mark.parametrize("case", ["ladam variance_lap, L2 decay", "ladagrad", "lrmsprop momentum"])
def test_the_default_compiles_where_a_compiler_is_found(case, monkeypatch):
    calls = fake_compiler(monkeypatch, missing=None)
    (fused, opt), seen = notices(lambda: train(FUSED_CASES[case], steps=3))
    assert opt.param_groups[0]["fused"] is None and calls == [False] * 3 and seen == []
    eager, _ = train(lambda p: FUSED_CASES[case](p, fused=False), steps=3)
    torch.testing.assert_close(fused, eager, atol=1e-12, rtol=0)


def test_without_a_compiler_the_update_is_eager_with_one_notice(monkeypatch):
    calls = fake_compiler(monkeypatch, missing="no C++ compiler (test)")
    eager, _ = train(lambda p: LAdam(p, c2=0.05, fused=False), steps=3)
    (auto, _), seen = notices(lambda: train(lambda p: LAdam(p, c2=0.05), steps=3))
    assert torch.equal(auto, eager) and calls == []
    assert len(seen) == 1 and "no C++ compiler (test)" in seen[0]
    assert "eagerly" in seen[0] and "Pass fused=False" in seen[0]
    (asked, _), seen = notices(lambda: train(lambda p: LAdam(p, c2=0.05, fused=True), steps=3))
    assert torch.equal(asked, eager) and calls == []
    assert len(seen) == 1 and "fused=True was asked for" in seen[0]
    assert notices(lambda: train(lambda p: LAdam(p, c2=0.05, fused=False), steps=3))[1] == []


@pytest.mark.parametrize("case", ["ladam variance_lap, L2 decay", "lrmsprop momentum"])
@pytest.mark.parametrize("own_call_numel", [2**17, 60])  # all in one call; 20x20, 3x20 alone
def test_a_failed_compilation_falls_back_to_the_eager_update(case, own_call_numel, monkeypatch):
    monkeypatch.setattr(laplacian_smoothed, "FUSED_OWN_CALL_NUMEL", own_call_numel)
    eager, _ = train(lambda p: FUSED_CASES[case](p, min_spatial_size=4, fused=False), steps=4)
    # the one call for the small tensors fails; with 60, after the two large tensors' calls
    # have updated them: they must not be updated again
    calls = fake_compiler(monkeypatch, broken=(False,))
    (fused, opt), seen = notices(lambda: train(lambda p: FUSED_CASES[case](p, min_spatial_size=4),
                                               steps=4))  # fmt: skip
    torch.testing.assert_close(fused, eager, atol=1e-12, rtol=0)
    assert calls == ([False] if own_call_numel > 400 else [True, True, False])  # then eager
    assert len(seen) == 1 and "compiling the fused update failed" in seen[0]
    assert "C++ compile error (test)" in seen[0] and "fused=False" in seen[0]


def test_an_error_while_the_compiled_update_runs_is_not_swallowed(monkeypatch):
    def compiled(update, dynamic):
        def call(*args, **kwargs):
            raise RuntimeError("the kernel failed (test)")

        return call

    monkeypatch.setattr(compiler, "compiler_missing", lambda device_type: None)
    monkeypatch.setattr(compiler, "AUTOMATIC", True)
    monkeypatch.setattr(laplacian_smoothed, "_compiled", compiled)
    with pytest.raises(RuntimeError, match=r"the kernel failed \(test\)"):
        train(lambda p: LAdam(p), steps=1)


@pytest.mark.skipif(sys.platform == "win32", reason="inductor looks for cl or CXX there")
def test_the_compiler_check_looks_for_inductors_cpp_compiler(monkeypatch):
    import torch._inductor.config as inductor_config  # (monkeypatch's undo would delete it)

    check = compiler.compiler_missing
    check.cache_clear()
    try:
        with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
            assert "no C++ compiler" in check("cpu") and "no-such-c++-compiler" in check("cpu")
        check.cache_clear()
        with inductor_config.patch({"cpp.cxx": (None, sys.executable)}):  # one that exists
            assert check("cpu") is None
        check.cache_clear()
        monkeypatch.delitem(sys.modules, "torch._inductor.config")  # not imported: $CXX
        monkeypatch.setenv("CXX", "no-such-c++-compiler")
        assert "no-such-c++-compiler" in check("cpu")
    finally:
        check.cache_clear()
    assert inductor_config.cpp.cxx  # still there for the next compilation


def test_state_dicts_keep_fused_and_old_ones_load_as_automatic():
    w = torch.nn.Parameter(torch.zeros(4, 4, dtype=DTYPE))
    for fused in (None, True, False):
        saved = LAdaGrad([w], fused=fused).state_dict()
        opt = LAdaGrad([w], fused=not fused)
        opt.load_state_dict(saved)
        assert opt.param_groups[0]["fused"] is fused
    saved = copy.deepcopy(saved)
    del saved["param_groups"][0]["fused"]  # saved before ``fused`` existed
    opt = LAdaGrad([w], fused=False)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["fused"] is None


FRESH_FUSED_STEP = """
import shutil
import warnings

import torch

from pinnopt.optim.laplacian_smoothed import FusedFallbackWarning, LAdam


def run(width, fused):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(),
                                torch.nn.Linear(width, 1)).double()
    opt = LAdam(model.parameters(), c2=0.05, min_spatial_size=4, fused=fused)
    x = torch.randn(16, 3, dtype=torch.float64)
    for _ in range(2):
        opt.zero_grad()
        ((model(x) - 1.0) ** 2).mean().backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


with warnings.catch_warnings():
    warnings.simplefilter("error", DeprecationWarning)
    run(8, True)
print("stepped")
# A compiler that is found but does not work: new shapes, so a new compilation, fails.
false = shutil.which("false")
if false is None:
    print("no false")
else:
    import torch._inductor.config as inductor_config

    inductor_config.cpp.cxx = (false,)
    inductor_config.fx_graph_cache = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = run(9, None)
    eager = run(9, False)
    seen = [str(w.message) for w in caught if w.category is FusedFallbackWarning]
    print(len(seen), "compiling the fused update failed" in seen[0],
          float((fused - eager).abs().max()))
"""


def test_in_a_fresh_process_a_fused_step_warns_nothing_and_a_broken_compiler_falls_back():
    # torch.compile's first call imports torch.utils.mkldnn, which warns that
    # `torch.jit.script_method` is deprecated. That import happens once per process,
    # so only a fresh interpreter sees it. The broken compiler is a real compilation
    # failure (torch raises it), not a monkeypatched one.
    done = subprocess.run([sys.executable, "-c", FRESH_FUSED_STEP], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "stepped"
    assert lines[1] in ("no false", "1 True 0.0"), lines[1]

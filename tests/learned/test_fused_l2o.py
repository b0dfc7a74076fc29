"""The compiled ``l2o`` step (pinnopt.learned.fused_l2o) against the eager rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pinnopt.learned import LearnedOptimizer, MetaOptimizer, MetaOptimizerConfig


def model(dtype=torch.float64):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    return net.to(dtype)


def trained_rule(tmp_path, dtype="float64"):
    """A saved l2o rule with every weight random (the untrained rule's MLP output layer
    and head are zero, which would hide errors in the MLP and the LSTM)."""
    mo = MetaOptimizer(nn.Linear(2, 1), MetaOptimizerConfig(method="l2o", dtype=dtype))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for w in mo.rule.parameters():
            w.copy_(0.5 * torch.randn(w.shape, generator=gen))
    path = tmp_path / "l2o.pt"
    mo.save(path)
    return path


def run(path, fused, steps=4, dtype=torch.float64, late=False, scale=1.0):
    """Parameters and optimizer after ``steps`` steps on a fixed least-squares loss;
    ``late``: the last layer gets no gradient at the first step."""
    net = model(dtype)
    opt = LearnedOptimizer(net.parameters(), path, fused=fused, scale=scale)
    x = torch.linspace(-1, 1, 40, dtype=dtype).reshape(20, 2)
    for k in range(steps):
        opt.zero_grad()
        (net(x) - x[:, :1] ** 2).square().mean().backward()
        if late and k == 0:
            net[4].weight.grad = net[4].bias.grad = None
        opt.step()
    return [p.detach().clone() for p in net.parameters()], opt


def test_compiled_and_eager_l2o_give_the_same_updates(tmp_path):
    """Over 4 steps, the first of which leaves out the last layer (no gradient yet)."""
    path = trained_rule(tmp_path)
    fused, opt_f = run(path, True, late=True, scale=0.5)
    eager, opt_e = run(path, False, late=True, scale=0.5)
    start = [p.detach() for p in model().parameters()]
    assert all((p - p0).abs().max() > 1e-3 for p, p0 in zip(eager, start))  # they moved
    for p, q in zip(fused, eager):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    for sf, se in zip(opt_f.state.values(), opt_e.state.values()):
        assert sf.keys() == se.keys()
        for key in sf:
            torch.testing.assert_close(sf[key].reshape(se[key].shape), se[key], atol=1e-12,
                                       rtol=0)  # fmt: skip


def test_compiled_step_on_float32_parameters_with_a_float64_rule(tmp_path):
    path = trained_rule(tmp_path)
    fused, _ = run(path, True, dtype=torch.float32)
    eager, _ = run(path, False, dtype=torch.float32)
    for p, q in zip(fused, eager):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_fused_state_continues_in_an_eager_optimizer_and_back(tmp_path):
    path = trained_rule(tmp_path)
    reference, _ = run(path, False, steps=4)
    params, opt = run(path, True, steps=2)
    net = model()
    with torch.no_grad():
        for p, q in zip(net.parameters(), params):
            p.copy_(q)
    eager = LearnedOptimizer(net.parameters(), path, fused=False)
    eager.load_state_dict(opt.state_dict())
    x = torch.linspace(-1, 1, 40, dtype=torch.float64).reshape(20, 2)
    for _ in range(2):
        eager.zero_grad()
        (net(x) - x[:, :1] ** 2).square().mean().backward()
        eager.step()
    for p, q in zip(net.parameters(), reference):
        torch.testing.assert_close(p.detach(), q, atol=1e-12, rtol=0)


def test_fused_is_validated(tmp_path):
    path = trained_rule(tmp_path)
    with pytest.raises(ValueError, match=r"Invalid fused: 'yes'"):
        LearnedOptimizer(model().parameters(), path, fused="yes")


def test_automatic_choice_compiles_where_a_compiler_is_found(tmp_path, monkeypatch):
    from pinnopt.learned import learned_optimizer
    from pinnopt.optim import compiler

    calls = []
    real = learned_optimizer.fused_l2o_step
    monkeypatch.setattr(learned_optimizer, "fused_l2o_step",
                        lambda *a: calls.append(1) or real(*a))  # fmt: skip
    monkeypatch.setattr(compiler, "AUTOMATIC", True)
    monkeypatch.setattr(compiler, "compiler_missing", lambda device: None)
    path = trained_rule(tmp_path)
    run(path, None, steps=2)
    assert len(calls) == 2
    monkeypatch.setattr(compiler, "compiler_missing", lambda device: "no C++ compiler (test)")
    with pytest.warns(compiler.FusedFallbackWarning, match="no C.. compiler") as caught:
        eager, _ = run(path, None, steps=3)
    assert len(caught) == 1 and len(calls) == 2  # one notice, nothing compiled
    reference, _ = run(path, False, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(eager, reference))


def test_a_failed_compilation_falls_back_to_the_eager_step(tmp_path, monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    from pinnopt.learned import learned_optimizer
    from pinnopt.optim.compiler import FusedFallbackWarning

    def refuse(*args):
        raise TorchDynamoException("cannot compile (test)")

    monkeypatch.setattr(learned_optimizer, "fused_l2o_step", refuse)
    path = trained_rule(tmp_path)
    with pytest.warns(FusedFallbackWarning, match="compiling the l2o step failed") as caught:
        fallen_back, opt = run(path, True, steps=3)
    assert len(caught) == 1 and opt._compile_failed
    reference, _ = run(path, False, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(fallen_back, reference))

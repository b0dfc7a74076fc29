"""LearnedOptimizer's chunked lstm step and state dtypes; smoke run of
benchmarks/learned_memory.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pinnopt.learned import LearnedOptimizer, MetaOptimizer, MetaOptimizerConfig
from pinnopt.learned.learned_optimizer import chunk_plan


def model32():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 40), nn.Tanh(), nn.Linear(40, 7), nn.Tanh(), nn.Linear(7, 1))


def saved(tmp_path, method, dtype="float32"):
    path = tmp_path / f"{method}-{dtype}.pt"
    config = MetaOptimizerConfig(method=method, dtype=dtype, seed=3)
    mo = MetaOptimizer(nn.Linear(2, 1).to(getattr(torch, dtype)), config)
    if method == "lstm":  # a larger output layer: updates well above rounding
        with torch.no_grad():
            mo.rule.out.weight.normal_()
    mo.save(path)
    return path


def run(path, steps=3, **kw):
    """Parameters and optimizer after ``steps`` steps on fixed random gradients, and the
    largest number of coordinates in one call of the rule."""
    model = model32()
    opt = LearnedOptimizer(model.parameters(), path, **kw)
    calls = []
    opt.rule.register_forward_pre_hook(lambda _, a: calls.append(sum(g.numel() for g in a[0])))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():  # magnitudes 1e-6 to 1: both preprocessing branches
            scale = 10.0 ** torch.randint(-6, 1, p.shape, generator=gen)
            p.grad = torch.randn(p.shape, generator=gen) * scale
        opt.step()
    return list(model.parameters()), opt, calls


def test_chunk_plan_cuts_in_order_and_keeps_unsplittable_tensors_whole():
    assert chunk_plan([3, 5], 100) == [[(0, 0, 3), (1, 0, 5)]]
    assert chunk_plan([3, 5], 4) == [[(0, 0, 3), (1, 0, 1)], [(1, 1, 5)]]
    assert chunk_plan([3, 0, 5], 3) == [[(0, 0, 3), (1, 0, 0)], [(2, 0, 3)], [(2, 3, 5)]]
    assert chunk_plan([2, 6, 2], 4, [True, False, True]) == [[(0, 0, 2)], [(1, 0, 6)], [(2, 0, 2)]]
    for sizes, chunk in (([7, 1, 30, 2], 5), ([1] * 9, 2), ([100], 7)):
        calls = chunk_plan(sizes, chunk)
        assert all(sum(b - a for _, a, b in c) <= chunk for c in calls)
        covered = [(i, k) for c in calls for i, a, b in c for k in range(a, b)]
        assert covered == [(i, k) for i, n in enumerate(sizes) for k in range(n)]


@pytest.mark.parametrize("chunk", [1, 7, 64, 300])
def test_chunked_lstm_step_equals_one_call(tmp_path, chunk):
    path = saved(tmp_path, "lstm")
    whole, opt_w, calls_w = run(path)
    chunked, opt_c, calls_c = run(path, chunk_size=chunk)
    n = sum(p.numel() for p in whole)
    assert n == 3 * 40 + 40 + 40 * 7 + 7 + 7 + 1 and calls_w == [n] * 3  # default: one call
    assert max(calls_c) <= chunk and len(calls_c) == 3 * -(-n // chunk)
    for p, q in zip(whole, chunked):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
        for key in ("hidden", "cell"):
            a, b = opt_w.state[p][key], opt_c.state[q][key]
            assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
            assert a.shape == (2, p.numel(), 20)
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
        assert float(opt_c.state[q]["step"]) == 3.0
    assert all(not torch.equal(p, p0) for p, p0 in zip(whole, model32().parameters()))


def test_chunked_lstm_equals_compute_update(tmp_path):
    model = model32()
    mo = MetaOptimizer(model, MetaOptimizerConfig(method="lstm", dtype="float32", seed=3))
    with torch.no_grad():
        mo.rule.out.weight.normal_()
    path = tmp_path / "lstm.pt"
    mo.save(path)
    state = mo.init_state(list(model.parameters()))
    opt = LearnedOptimizer(model.parameters(), path, chunk_size=5)
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        before = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            updates, state = mo.compute_update([p.grad for p in model.parameters()], state)
        opt.step()
        for p, b, u in zip(model.parameters(), before, updates):
            torch.testing.assert_close(p, b + u, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["lstm", "l2o"])
def test_float64_rule_on_float32_params_round_trips_state_dict(tmp_path, method):
    """torch's load_state_dict casts state to the parameter's dtype; the rule's LSTM
    state must stay in the rule's dtype (else the next step mixes Float and Double)."""
    path = saved(tmp_path, method, dtype="float64")
    a, opt_a, _ = run(path, steps=2, chunk_size=11)
    b = [p.detach().clone() for p in a]
    opt_b = LearnedOptimizer(b, path, chunk_size=11)
    opt_b.load_state_dict(opt_a.state_dict())
    for p in b:
        assert opt_b.state[p]["hidden"].dtype == opt_b.state[p]["cell"].dtype == torch.float64
    for params, opt in ((a, opt_a), (b, opt_b)):
        for p in params:
            p.grad = torch.full_like(p, 1e-3)
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_chunk_size_is_validated(tmp_path):
    path = saved(tmp_path, "lstm")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"Invalid chunk_size: .*integer >= 1"):
            LearnedOptimizer(model32().parameters(), path, chunk_size=bad)


def test_state_size_counts_every_tensor(load_benchmark):
    module = load_benchmark("learned_memory")
    params = list(model32().parameters())
    n = sum(p.numel() for p in params)
    adam = torch.optim.Adam(params, foreach=True)
    for p in params:
        p.grad = torch.ones_like(p)
    adam.step()
    s = module.state_size(adam, params)
    assert s["per_coordinate"] == 8.0 and s["per_tensor"] == 4 * len(params)  # step scalars
    assert s["bytes"] == 8 * n + 4 * len(params)
    assert s["keys"] == {"step": "tensor", "exp_avg": "coordinate", "exp_avg_sq": "coordinate"}
    adam.state[params[0]]["extra"] = [torch.zeros(3, dtype=torch.float64)]  # on one tensor only
    assert module.state_size(adam, params)["per_tensor"] == 4 * len(params) + 24


def test_learned_memory_smoke(tmp_path, load_benchmark):
    module = load_benchmark("learned_memory")
    out = tmp_path / "memory.md"
    results = module.main(["--smoke", "--optimizers", "l2o", "--out", str(out)])
    assert list(results) == ["adam", "l2o"]  # the baseline comes first
    assert all(r["params"] == 105 and r["seconds"] > 0 and r["rss_mib"] > 0
               for r in results.values())  # fmt: skip
    # measured in the child processes: 2 floats (float32) per coordinate for both
    assert {n: r["state"]["per_coordinate"] / 4 for n, r in results.items()} == {
        "adam": 2.0, "l2o": 2.0
    }  # fmt: skip
    assert results["l2o"]["state"]["keys"] == {
        "step": "tensor", "hidden": "tensor", "cell": "tensor", "m": "coordinate", "v": "coordinate"
    }  # fmt: skip
    # l2o's per-tensor state: its LSTM's (h, c), 2 layers × 20, and the step, per tensor
    assert results["l2o"]["state"]["per_tensor"] == 6 * (2 * 2 * 20 + 1) * 4
    text = out.read_text()
    assert text.startswith("`python benchmarks/learned_memory.py --smoke --optimizers l2o --out ")
    assert "| optimizer | params | state bytes / param | state floats / param |" in text
    assert "| adam | 105 | 8.2286 | 2.0571 | 2 | 24 |" in text and "| 1.00 |" in text
    assert "| l2o | 105 | 26.5143 | 6.6286 | 2 | 1944 |" in text


def test_lstm_state_measured_in_process(tmp_path, load_benchmark):
    module = load_benchmark("learned_memory")
    rule = module.save_rule("lstm", tmp_path)
    r = module.measure([2, 8, 8, 1], "lstm", rule, warmup=1, steps=2, chunk_size=10)
    assert r["seconds"] > 0 and r["first"] > 0 and r["params"] == 105
    assert r["state"]["per_coordinate"] == 4 * 2 * 2 * 20  # (h, c) × 2 layers × 20, float32
    assert r["state"]["keys"] == {"step": "tensor", "hidden": "coordinate", "cell": "coordinate"}
    assert r["state"]["bytes"] == 105 * 320 + 6 * 4


def test_l2o_mlp_in_chunks_equals_one_call_with_its_meta_gradient(monkeypatch):
    from pinnopt.learned import methods
    from pinnopt.learned.methods import L2ORule

    torch.manual_seed(0)
    rule = L2ORule(8, 1, 0.01).double()
    with torch.no_grad():
        for p in rule.parameters():  # nonzero everywhere, so the MLP matters
            p.normal_(0.0, 0.3)
    params = [torch.randn(30, 7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    grads = [torch.randn_like(p) for p in params]
    results = []
    for chunk in (methods.MLP_CHUNK, 16):
        monkeypatch.setattr(methods, "MLP_CHUNK", chunk)
        rule.zero_grad()
        updates, _ = rule(grads, rule.init_state(params))
        sum(u.square().sum() for u in updates).backward()
        results.append(([u.detach() for u in updates], [p.grad.clone() for p in rule.parameters()]))
    (u1, g1), (u2, g2) = results
    assert all(torch.allclose(a, b, rtol=1e-13, atol=1e-16) for a, b in zip(u1 + g1, u2 + g2))

"""MetaOptimizer (lstm, meta_sgd, l2o), truncated-BPTT meta-training, LearnedOptimizer."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from pinnopt.learned import (
    METHODS,
    Episode,
    EpisodeSampler,
    L2ORule,
    LearnedOptimizer,
    LSTMRule,
    MetaOptimizer,
    MetaOptimizerConfig,
    MetaSGDRule,
    QuadraticFamily,
    SinusoidFamily,
    preprocess_gradient,
)
from pinnopt.learned.meta import build_rule, register_rule
from pinnopt.learned.methods import ScheduleRule, WarpGradRule

QUAD = QuadraticFamily(dim=4, condition=10.0)


def tasks(n=3):
    return EpisodeSampler(QUAD).take(n)


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)).double()


def test_preprocessing_formula_on_given_numbers():
    e = math.exp
    g = torch.tensor([1.0, 100.0, -e(-5), 1e-6, 0.0, -1e-20], dtype=torch.float64)
    got = preprocess_gradient(g, p=10.0)
    want = torch.tensor(
        [
            [0.0, 1.0],
            [math.log(100.0) / 10, 1.0],
            [-0.5, -1.0],  # |g| = e^-5 >= e^-10: (log|g|/p, sign g)
            [-1.0, e(10) * 1e-6],  # 1e-6 < e^-10 = 4.5e-5: (-1, e^p g)
            [-1.0, 0.0],
            [-1.0, -e(10) * 1e-20],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-300)


def test_lstm_update_is_zero_with_zero_output_layer_and_state_moves():
    model = small_model()
    mo = MetaOptimizer(model, MetaOptimizerConfig(method="lstm"))
    nn.init.zeros_(mo.rule.out.weight)
    nn.init.zeros_(mo.rule.out.bias)
    grads = [torch.randn_like(p) for p in model.parameters()]
    state = mo.init_state(list(model.parameters()))
    updates, new = mo.compute_update(grads, state)
    assert all(torch.equal(u, torch.zeros_like(u)) for u in updates)
    assert [u.shape for u in updates] == [p.shape for p in model.parameters()]
    assert new.step_count == 1 and any(bool(h.abs().sum() > 0) for h in new.hidden)
    assert [h.shape for h in new.hidden] == [(2, p.numel(), 20) for p in model.parameters()]


def test_meta_sgd_inner_step_is_theta_minus_alpha_times_gradient():
    model = small_model()
    mo = MetaOptimizer(model, MetaOptimizerConfig(method="meta_sgd", inner_lr=0.05))
    lr = mo.get_learned_lr()
    assert list(lr) == [n for n, _ in model.named_parameters()]
    assert lr == pytest.approx({n: 0.05 for n in lr}, rel=1e-15)
    with torch.no_grad():
        for i, a in enumerate(mo.rule.alpha):
            a.copy_(torch.linspace(0.1, 0.3, a.numel(), dtype=a.dtype).reshape(a.shape) * (i + 1))
    grads = [torch.randn_like(p) for p in model.parameters()]
    updates, _ = mo.compute_update(grads)
    for u, a, g in zip(updates, mo.rule.alpha, grads):
        torch.testing.assert_close(u, -a.detach() * g, rtol=0, atol=0)
    # the differentiable inner step on L = ½‖θ‖², whose gradient is θ: θ' = θ − α∘θ
    from pinnopt.learned.meta import _LossOf

    bound = _LossOf(model, lambda m: 0.5 * sum(p.square().sum() for p in m.parameters()))
    theta = list(mo.rule.init)
    new = mo.inner_step_meta_sgd(bound, mo.names, theta, create_graph=True)
    for t, a, n in zip(theta, mo.rule.alpha, new):
        torch.testing.assert_close(n, t - a * t, rtol=1e-15, atol=1e-15)
    assert new[0].requires_grad  # connected to θ_0 and α


def test_lstm_meta_training_lowers_the_meta_loss_and_stays_finite():
    cfg = MetaOptimizerConfig(method="lstm", meta_lr=1e-2, inner_steps=20, unroll_steps=10)
    train = tasks(3)
    mo = MetaOptimizer(train[0].init_model(), cfg)
    results = [mo.meta_train_step(Episode.from_tasks(train)) for _ in range(20)]
    first, last = results[0], results[-1]
    assert not any(r.exploded for r in results) and all(r.steps == 2 for r in results)
    assert all(math.isfinite(r.meta_loss) and math.isfinite(r.final_loss) for r in results)
    assert max(r.final_loss for r in results) < 10 * first.initial_loss
    assert last.meta_loss < 0.5 * first.meta_loss, (first.meta_loss, last.meta_loss)


@pytest.mark.parametrize("method", ["lstm", "l2o", "meta_sgd", "warp_grad", "schedule"])
def test_explosion_guard_skips_the_update_and_keeps_the_parameters(method):
    task = tasks(1)[0]
    huge = dataclasses.replace(task, loss=lambda m, f=task.loss: 1e30 * f(m))
    cfg = MetaOptimizerConfig(method=method, inner_steps=4, unroll_steps=2)
    mo = MetaOptimizer(task.init_model(), cfg)
    before = [p.detach().clone() for p in mo.rule.parameters()]
    result = mo.meta_train_step([huge])
    assert result.exploded and result.steps == 0 and result.skipped >= 1
    assert not (result.grad_norm <= cfg.max_grad_norm)  # > bound or NaN
    assert not result.diverged
    assert all(torch.equal(a, b) for a, b in zip(before, mo.rule.parameters()))
    ok = mo.meta_train_step([task])  # the same optimizer still trains on a sane task
    assert not ok.exploded and ok.steps >= 1


def trained(method, tmp_path):
    cfg = MetaOptimizerConfig(method=method, meta_lr=1e-2, inner_steps=4, unroll_steps=2)
    train = tasks(2)
    mo = MetaOptimizer(train[0].init_model(), cfg)
    for _ in range(3):
        mo.meta_train_step(train)
    path = tmp_path / f"{method}.pt"
    mo.save(path)
    return mo, path


@pytest.mark.parametrize("method", ["lstm", "l2o", "meta_sgd", "warp_grad", "schedule"])
def test_saved_optimizer_steps_like_compute_update(method, tmp_path):
    mo, path = trained(method, tmp_path)
    model = tasks(1)[0].init_model()
    opt = LearnedOptimizer(model.parameters(), path)
    state = mo.init_state(list(model.parameters()))
    f = tasks(1)[0].loss
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        f(model).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        with torch.no_grad():
            updates, state = mo.compute_update(grads, state)
        opt.step()
        for p, b, u in zip(model.parameters(), before, updates):
            torch.testing.assert_close(p.detach(), b + u, rtol=1e-14, atol=1e-15)
            assert not torch.equal(u, torch.zeros_like(u))


@pytest.mark.parametrize("method", ["lstm", "l2o", "warp_grad", "schedule"])
def test_learned_optimizer_state_dict_round_trip(method, tmp_path):
    _, path = trained(method, tmp_path)
    f = tasks(1)[0].loss
    a = tasks(1)[0].init_model()
    opt_a = LearnedOptimizer(a.parameters(), path)
    for _ in range(2):
        opt_a.zero_grad()
        f(a).backward()
        opt_a.step()
    b = tasks(1)[0].init_model()
    b.load_state_dict(a.state_dict())
    opt_b = LearnedOptimizer(b.parameters(), path)
    opt_b.load_state_dict(opt_a.state_dict())
    for model, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        f(model).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_meta_sgd_learned_optimizer_needs_matching_shapes(tmp_path):
    _, path = trained("meta_sgd", tmp_path)
    with pytest.raises(ValueError, match="meta_sgd.*shapes"):
        LearnedOptimizer(nn.Linear(4, 4).double().parameters(), path)


def test_l2o_state_is_two_floats_per_parameter(tmp_path):
    _, path = trained("l2o", tmp_path)
    model = small_model()
    opt = LearnedOptimizer(model.parameters(), path)
    model(torch.ones(5, 3, dtype=torch.float64)).sum().backward()
    opt.step()
    cfg = opt.config
    for p in model.parameters():
        state = opt.state[p]
        per_coordinate = [k for k, t in state.items() if t.numel() == p.numel() and t.dim() > 0]
        assert sorted(per_coordinate) == ["m", "v"]
        assert state["m"].shape == p.shape and state["v"].shape == p.shape
        # the LSTM state is per tensor: 2·L·H floats whatever the tensor's size
        assert state["hidden"].numel() == state["cell"].numel() == cfg.num_layers * cfg.hidden_size
        assert set(state) == {"step", "hidden", "cell", "m", "v"}
    total_coord = sum(opt.state[p]["m"].numel() + opt.state[p]["v"].numel()
                      for p in model.parameters())  # fmt: skip
    assert total_coord == 2 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("method", ["l2o", "schedule"])
def test_untrained_l2o_and_schedule_are_adam(method, tmp_path):
    model = small_model()
    mo = MetaOptimizer(model, MetaOptimizerConfig(method=method, inner_lr=0.01))
    mo.save(tmp_path / "rule.pt")
    ref = small_model()
    opt = LearnedOptimizer(model.parameters(), tmp_path / "rule.pt")
    adam = torch.optim.Adam(ref.parameters(), lr=0.01)
    x = torch.linspace(-1, 1, 15, dtype=torch.float64).reshape(5, 3)
    for _ in range(3):
        for m, o in ((model, opt), (ref, adam)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)


def test_meta_sgd_on_sinusoids_uses_the_query_set_and_improves():
    fam = SinusoidFamily(k_shot=5, k_query=10, width=8, depth=1)
    train = EpisodeSampler(fam).take(3)
    ep = Episode(train[0])
    model = train[0].init_model()
    with torch.no_grad():
        assert float(ep.query()(model)) != float(ep.support()(model))
    cfg = MetaOptimizerConfig(method="meta_sgd", meta_lr=1e-2, inner_steps=1)
    mo = MetaOptimizer(model, cfg)
    results = [mo.meta_train_step(train, base_model=model) for _ in range(10)]
    assert results[-1].meta_loss < 0.99 * results[0].meta_loss
    assert mo.get_learned_lr() != {n: cfg.inner_lr for n in mo.names}
    init = mo.learned_init()
    assert list(init) == mo.names
    assert not all(torch.equal(init[n], p) for n, p in model.named_parameters())


def test_same_seed_same_rule():
    model = small_model()
    a = MetaOptimizer(model, MetaOptimizerConfig(seed=3))
    b = MetaOptimizer(model, MetaOptimizerConfig(seed=3))
    c = MetaOptimizer(model, MetaOptimizerConfig(seed=4))
    pa, pb, pc = (list(m.rule.parameters()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "adam"),
        ("schedule_knots", 0),
        ("hidden_size", 0),
        ("num_layers", 1.5),
        ("meta_lr", -1.0),
        ("unroll_steps", 0),
        ("gradient_clipping", math.inf),
        ("inner_steps", 0),
        ("inner_lr", math.nan),
        ("coordinatewise", False),
        ("preconditioning", "yes"),
        ("dtype", "float16"),
        ("seed", -1),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"Invalid {field}"):
        MetaOptimizerConfig(**{field: value})


def test_rules_register_by_name_and_build_rule_names_an_unknown_one():
    assert list(METHODS) == ["lstm", "meta_sgd", "warp_grad", "l2o", "schedule"]
    init = [torch.zeros(3, 2, dtype=torch.float32)]
    kinds = {"lstm": LSTMRule, "meta_sgd": MetaSGDRule, "warp_grad": WarpGradRule,
             "l2o": L2ORule, "schedule": ScheduleRule}  # fmt: skip
    for name, kind in kinds.items():
        rule = build_rule(MetaOptimizerConfig(method=name), init)
        assert isinstance(rule, kind)
        assert all(p.dtype == torch.float64 for p in rule.parameters())
    with pytest.raises(ValueError, match=r"learned rule 'lstm' is already registered"):
        register_rule("lstm")(METHODS["lstm"])
    config = MetaOptimizerConfig()
    object.__setattr__(config, "method", "adam")
    with pytest.raises(ValueError, match=r"Invalid method: 'adam'; allowed: lstm, meta_sgd"):
        build_rule(config, init)


def test_bad_saved_file_is_a_clear_error(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="Invalid path"):
        LearnedOptimizer(small_model().parameters(), path)
    with pytest.raises(ValueError, match="Invalid method for get_learned_lr"):
        MetaOptimizer(small_model()).get_learned_lr()


def test_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Invalid path"):
        LearnedOptimizer(small_model().parameters(), tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Invalid path"):
        LearnedOptimizer(small_model().parameters(), tmp_path / "junk.pt")


@pytest.mark.parametrize("method", ["lstm", "l2o"])
def test_meta_trained_optimizer_beats_its_untrained_self_on_held_out_tasks(method, tmp_path):
    cfg = MetaOptimizerConfig(method=method, meta_lr=1e-2, inner_steps=20, unroll_steps=10,
                              inner_lr=0.05)  # fmt: skip
    train, val = tasks(3), EpisodeSampler(QUAD, "val").take(3)
    mo = MetaOptimizer(train[0].init_model(), cfg)
    mo.save(tmp_path / "untrained.pt")
    for _ in range(20):
        mo.meta_train_step(train)
    mo.save(tmp_path / "trained.pt")

    def mean_final_loss(path):
        final = []
        for task in val:
            model = task.init_model()
            opt = LearnedOptimizer(model.parameters(), path)
            for _ in range(20):
                opt.step(task.closure(model, opt))
            final.append(task.evaluate(model))
        return sum(final) / len(final)

    untrained, meta_trained = (
        mean_final_loss(tmp_path / f) for f in ("untrained.pt", "trained.pt")
    )
    assert meta_trained < 0.2 * untrained, (untrained, meta_trained)


def test_meta_training_runs_through_a_pinn_objective():
    from pinnopt.learned import PoissonFamily

    family = PoissonFamily(dim=1, modes=2, n_pde=16, n_bc=2, width=4, depth=1)
    task = EpisodeSampler(family).task(0)
    mo = MetaOptimizer(task.init_model(), MetaOptimizerConfig(inner_steps=2, unroll_steps=2))
    before = [p.detach().clone() for p in mo.rule.parameters()]
    result = mo.meta_train_step([task])
    assert result.steps == 1 and not result.exploded
    assert math.isfinite(result.meta_loss) and 0 < result.grad_norm < math.inf
    assert not all(torch.equal(a, b) for a, b in zip(before, mo.rule.parameters()))


def test_learned_optimizer_handles_a_parameter_that_gets_its_gradient_late(tmp_path):
    _, path = trained("lstm", tmp_path)
    model = small_model()
    opt = LearnedOptimizer(model.parameters(), path)
    x = torch.ones(5, 3, dtype=torch.float64)
    model[2].bias.requires_grad_(False)
    model(x).sum().backward()
    opt.step()
    assert "step" not in opt.state[model[2].bias]
    model[2].bias.requires_grad_(True)
    opt.zero_grad()
    model(x).sum().backward()
    before = model[2].bias.detach().clone()
    opt.step()
    assert int(opt.state[model[2].bias]["step"]) == 2
    assert not torch.equal(before, model[2].bias.detach())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_episode_query_loss_of_digits_is_the_query_cross_entropy():
    from pinnopt.learned import DigitsFamily

    task = DigitsFamily(n_way=2, k_shot=2, k_query=3, width=4).sample(0)
    model = task.init_model()
    xq, yq = task.info["query"]
    with torch.no_grad():
        want = float(nn.functional.cross_entropy(model(xq), yq))
        assert float(Episode(task).query()(model)) == want
        assert float(Episode(tasks(1)[0]).query()(tasks(1)[0].init_model())) == float(
            tasks(1)[0].loss(tasks(1)[0].init_model())
        )


def test_meta_sgd_learned_optimizer_applies_alpha_on_a_multi_tensor_model(tmp_path):
    model = small_model()
    mo = MetaOptimizer(model, MetaOptimizerConfig(method="meta_sgd"))
    with torch.no_grad():
        for i, a in enumerate(mo.rule.alpha):
            a.fill_(0.1 * (i + 1))
    mo.save(tmp_path / "msgd.pt")
    opt = LearnedOptimizer(model.parameters(), tmp_path / "msgd.pt")
    model(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    before = [(p.detach().clone(), p.grad.clone()) for p in model.parameters()]
    opt.step()
    for i, (p, (b, g)) in enumerate(zip(model.parameters(), before)):
        torch.testing.assert_close(p.detach(), b - 0.1 * (i + 1) * g, rtol=1e-15, atol=1e-15)


def scalar_meta_sgd(model, **options):
    cfg = MetaOptimizerConfig(method="meta_sgd", per_parameter_lr=False, **options)
    return MetaOptimizer(model, cfg)


def test_scalar_meta_sgd_step_is_theta_minus_one_alpha_times_gradient():
    model = small_model()
    mo = scalar_meta_sgd(model, inner_lr=0.05)
    assert len(mo.rule.alpha) == 1 and mo.rule.alpha[0].numel() == 1
    assert sum(a.numel() for a in mo.rule.alpha) == 1  # one α for all 4 tensors
    assert mo.get_learned_lr() == {n: 0.05 for n, _ in model.named_parameters()}
    with torch.no_grad():
        mo.rule.alpha[0].fill_(0.3)
    grads = [torch.randn_like(p) for p in model.parameters()]
    updates, _ = mo.compute_update(grads)
    for u, g in zip(updates, grads):
        assert u.shape == g.shape
        torch.testing.assert_close(u, -0.3 * g, rtol=0, atol=0)
    from pinnopt.learned.meta import _LossOf

    bound = _LossOf(model, lambda m: 0.5 * sum(p.square().sum() for p in m.parameters()))
    theta = list(mo.rule.init)
    new = mo.inner_step_meta_sgd(bound, mo.names, theta, create_graph=True)
    for t, n in zip(theta, new):
        torch.testing.assert_close(n, t - 0.3 * t, rtol=1e-15, atol=1e-15)
    # the meta-gradient reaches the one shared α (a scalar) through every tensor
    sum(n.sum() for n in new).backward()
    want = -sum(float(t.detach().sum()) for t in theta)
    assert mo.rule.alpha[0].grad.shape == ()
    assert float(mo.rule.alpha[0].grad) == pytest.approx(want, rel=1e-12)


def test_scalar_meta_sgd_trains_saves_loads_and_steps(tmp_path):
    fam = SinusoidFamily(k_shot=5, k_query=10, width=8, depth=1)
    train = EpisodeSampler(fam).take(3)
    model = train[0].init_model()
    mo = scalar_meta_sgd(model, meta_lr=1e-2, inner_steps=1, inner_lr=0.01)
    results = [mo.meta_train_step(train, base_model=model) for _ in range(10)]
    assert results[-1].meta_loss < results[0].meta_loss
    alpha = float(mo.rule.alpha[0].detach())
    assert alpha != 0.01 and mo.get_learned_lr() == {n: alpha for n in mo.names}
    mo.save(tmp_path / "scalar.pt")
    from pinnopt.learned import load_learned

    blob = load_learned(tmp_path / "scalar.pt")
    assert blob["config"]["per_parameter_lr"] is False
    assert blob["rule"]["alpha.0"].shape == ()
    # a fresh MetaOptimizer with the saved config and weights is the same rule
    again = MetaOptimizer(model, MetaOptimizerConfig(**blob["config"]))
    again.rule.load_state_dict(blob["rule"])
    assert all(torch.equal(a, b) for a, b in zip(mo.rule.parameters(), again.rule.parameters()))
    assert again.learned_init().keys() == mo.learned_init().keys()
    # and LearnedOptimizer steps θ − α g with that one α on every tensor
    opt = LearnedOptimizer(model.parameters(), tmp_path / "scalar.pt")
    train[1].loss(model).backward()
    before = [(p.detach().clone(), p.grad.clone()) for p in model.parameters()]
    opt.step()
    for p, (b, g) in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b - alpha * g, rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match="meta_sgd.*shapes"):
        LearnedOptimizer(nn.Linear(4, 4).double().parameters(), tmp_path / "scalar.pt")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "meta_sgd", "per_parameter_lr": "no"}, r"Invalid per_parameter_lr: 'no'"),
        ({"method": "lstm", "per_parameter_lr": False}, r"Invalid per_parameter_lr: False"),
        ({"method": "l2o", "per_parameter_lr": False}, r"Invalid per_parameter_lr: False"),
    ],
)
def test_per_parameter_lr_validation_names_the_field(options, match):
    with pytest.raises(ValueError, match=match):
        MetaOptimizerConfig(**options)

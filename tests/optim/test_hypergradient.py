"""HypergradientOptimizer (``meta``): the rule by hand, reductions, direction, bounds, state."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from pinnopt.config import make_config
from pinnopt.optim import build_optimizer, get_optimizer_spec
from pinnopt.optim.hypergradient import HypergradientOptimizer
from pinnopt.solve import build_trainer
from pinnopt.train import load_checkpoint
from pinnopt.train.trainer import CHECKPOINT_NAME

DTYPE = torch.float64


def quadratic_steps(opt, theta, curvature, steps):
    """``steps`` steps on f = ½ Σ c_i θ_i²; returns the lr seen after each step."""
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (curvature * theta**2).sum()).backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_additive_rule_by_hand_with_sgd():
    # f = ½ a θ²; g_t = a θ_{t−1}, u_t = g_t (SGD); α_t = α_{t−1} + β g_t u_{t−1}
    a, theta0, alpha0, beta = 3.0, 0.7, 0.05, 0.01
    theta = torch.tensor([theta0], dtype=DTYPE, requires_grad=True)
    opt = HypergradientOptimizer([theta], base="sgd", lr=alpha0, hyper_lr=beta,
                                 variant="additive")  # fmt: skip
    lrs = quadratic_steps(opt, theta, torch.tensor([a], dtype=DTYPE), 3)
    t1 = theta0 - alpha0 * a * theta0  # step 1 keeps α (no previous update)
    alpha2 = alpha0 + beta * (a * t1) * (a * theta0)
    t2 = t1 - alpha2 * a * t1
    alpha3 = alpha2 + beta * (a * t2) * (a * t1)
    t3 = t2 - alpha3 * a * t2
    assert lrs[0] == alpha0
    assert lrs[1] == pytest.approx(alpha2, rel=1e-12, abs=0)
    assert lrs[2] == pytest.approx(alpha3, rel=1e-12, abs=0)
    assert float(theta.detach()) == pytest.approx(t3, rel=1e-12, abs=0)


def test_multiplicative_rule_by_hand_with_adam():
    # Adam's first direction is u_1 = g/(|g| + eps); in 1-D cos(g_2, u_1) = sign(g_2 g_1)
    theta = torch.tensor([0.4], dtype=DTYPE, requires_grad=True)
    opt = HypergradientOptimizer([theta], lr=1e-2, hyper_lr=0.1)  # adam, multiplicative
    lrs = quadratic_steps(opt, theta, torch.tensor([1.0], dtype=DTYPE), 2)
    assert lrs == [1e-2, pytest.approx(1e-2 * 1.1, rel=1e-12, abs=0)]


def test_measured_update_is_the_base_direction():
    # additive with Adam: α_2 = α_1 + β g_2 · u_1, u_1 = m̂/(√v̂ + eps) = g_1/(|g_1| + eps)
    theta = torch.tensor([0.4, -2.0], dtype=DTYPE, requires_grad=True)
    c = torch.tensor([1.0, 0.5], dtype=DTYPE)
    opt = HypergradientOptimizer([theta], lr=1e-2, hyper_lr=0.3, variant="additive", eps=1e-8)
    g1 = c * theta.detach()
    lrs = quadratic_steps(opt, theta, c, 1)
    u1 = g1 / (g1.abs() + 1e-8)
    g2 = c * theta.detach()
    lrs += quadratic_steps(opt, theta, c, 1)
    assert lrs[1] == pytest.approx(1e-2 + 0.3 * float(g2 @ u1), rel=1e-12, abs=0)


def _regression():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, generator=g, dtype=DTYPE)
    y = torch.randn(16, generator=g, dtype=DTYPE)
    w = torch.randn(3, generator=g, dtype=DTYPE)
    b = torch.zeros(1, dtype=DTYPE)
    return x, y, [w, b]


def _fit(opt, params, x, y, steps=15):
    for _ in range(steps):
        opt.zero_grad()
        ((x @ params[0] + params[1] - y) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize(("base", "options"), [("adam", {"weight_decay": 1e-2}),
                                               ("sgd", {"momentum": 0.9})])  # fmt: skip
def test_zero_hyper_lr_is_the_base_optimizer_exactly(base, options):
    x, y, init = _regression()
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    opt = HypergradientOptimizer(ours, base=base, lr=0.05, hyper_lr=0.0, **options)
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[base]
    _fit(opt, ours, x, y)
    _fit(cls(theirs, lr=0.05, **options), theirs, x, y)
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)
    assert opt.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
@pytest.mark.parametrize(("base", "small", "large"), [("sgd", 0.01, 0.95), ("adam", 1e-3, 1.5)])
def test_lr_rises_when_gradients_agree_and_falls_when_they_alternate(variant, base, small, large):
    c = torch.tensor([1.0, 2.0], dtype=DTYPE)  # with SGD, lr > 2/2 = 1 overshoots along θ_2
    beta = {"additive": 0.01, "multiplicative": 0.05}[variant]
    for lr, rises in [(small, True), (large, False)]:
        theta = torch.tensor([0.3, -0.5], dtype=DTYPE, requires_grad=True)
        opt = HypergradientOptimizer([theta], base=base, lr=lr, hyper_lr=beta, variant=variant)
        lrs = quadratic_steps(opt, theta, c, 8)
        assert (lrs[-1] > lr) == rises, (lr, lrs)


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
def test_bounds_hold_under_a_huge_hyper_lr(variant):
    theta = torch.tensor([1.0, -1.0], dtype=DTYPE, requires_grad=True)
    c = torch.tensor([3.0, 1.0], dtype=DTYPE)
    opt = HypergradientOptimizer([theta], base="sgd", lr=0.01, hyper_lr=1e6, variant=variant,
                                 lr_min=1e-3, lr_max=0.5)  # fmt: skip
    lrs = quadratic_steps(opt, theta, c, 12)
    assert all(1e-3 <= lr <= 0.5 for lr in lrs)
    assert 0.5 in lrs and 1e-3 in lrs  # it ran into both bounds (0.5 · 3 overshoots)
    assert torch.isfinite(theta).all()


def test_an_lr_outside_the_bounds_is_clamped_at_the_first_step():
    # a group's own lr need not lie within the bounds it shares with the others
    w, v = (torch.ones(2, dtype=DTYPE, requires_grad=True) for _ in range(2))
    opt = HypergradientOptimizer([{"params": [w]}, {"params": [v], "lr": 5.0}], base="sgd",
                                 lr=1e-3, hyper_lr=0.0)  # fmt: skip
    assert opt.param_groups[1]["lr_max"] == 1.0
    (w.sum() + v.sum()).backward()
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1.0]
    assert torch.equal(v.detach(), torch.zeros(2, dtype=DTYPE))  # 1 − 1.0 · 1


def test_closure_step_returns_the_loss_and_matches_backward_then_step():
    x, y, init = _regression()
    a = [p.clone().requires_grad_() for p in init]
    b = [p.clone().requires_grad_() for p in init]
    opt_a = HypergradientOptimizer(a, lr=0.05, hyper_lr=0.1)
    opt_b = HypergradientOptimizer(b, lr=0.05, hyper_lr=0.1)
    for _ in range(5):

        def closure():
            opt_a.zero_grad()
            loss = ((x @ a[0] + a[1] - y) ** 2).mean()
            loss.backward()
            return loss

        loss = opt_a.step(closure)
        assert torch.is_tensor(loss) and loss.ndim == 0
        _fit(opt_b, b, x, y, steps=1)
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"] != 0.05


def test_state_dict_round_trip_continues_bit_for_bit():
    x, y, init = _regression()
    params = [p.clone().requires_grad_() for p in init]
    opt = HypergradientOptimizer(params, lr=0.05, hyper_lr=0.1, weight_decay=1e-3)
    _fit(opt, params, x, y, steps=5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint does
    snapshot = [p.detach().clone() for p in params]
    _fit(opt, params, x, y, steps=5)

    again = [p.clone().requires_grad_() for p in snapshot]
    fresh = HypergradientOptimizer(again, lr=0.05, hyper_lr=0.1, weight_decay=1e-3)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.base.param_groups[0] is fresh.param_groups[0]  # lr shared with the base
    assert set(fresh.base.state[again[0]]) == {"step", "exp_avg", "exp_avg_sq"}
    _fit(fresh, again, x, y, steps=5)
    for p, q in zip(params, again):
        assert torch.equal(p, q)
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="no 'base_state'"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "base_state"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hyper_lr": -1.0}, r"Invalid hyper_lr: -1\.0"),
        ({"lr": 0.0}, r"Invalid learning rate: 0\.0"),
        ({"lr_min": 0.0}, r"Invalid lr_min: 0\.0"),
        ({"lr_min": 2.0}, r"Invalid lr_min: 2\.0 \(need 0 < lr_min <= lr_max = 1\.0\)"),
        ({"lr_max": float("inf")}, r"Invalid lr_max: inf"),
        ({"variant": "bogus"}, r"Invalid variant: 'bogus'; allowed: additive, multiplicative"),
        ({"base": "lbfgs"}, r"Invalid base: 'lbfgs'; allowed .*adam"),
        ({"base": "hypergradient"}, r"Invalid base: 'hypergradient'"),
        ({"base": 3}, r"Invalid base: 3"),
    ],
)
def test_errors_name_the_parameter(kwargs, match):
    w = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        HypergradientOptimizer([w], **kwargs)


def test_param_group_bounds_are_checked_per_group_and_base_options_pass_through():
    w, v = (torch.zeros(2, dtype=DTYPE, requires_grad=True) for _ in range(2))
    with pytest.raises(ValueError, match=r"Invalid lr_min: -1\.0"):
        HypergradientOptimizer([{"params": [w]}, {"params": [v], "lr_min": -1.0}], lr=1e-3)
    opt = HypergradientOptimizer([w], base=torch.optim.SGD, lr=1e-2, momentum=0.5)
    opt.add_param_group({"params": [v], "lr": 2e-2, "lr_max": 0.1})
    assert opt.base.param_groups[1] is opt.param_groups[1]
    assert opt.param_groups[1]["momentum"] == 0.5 and opt.param_groups[1]["lr_min"] == 1e-5
    with pytest.raises(ValueError, match="bad option for optimizer hypergradient"):
        build_optimizer("hypergradient", [torch.zeros(1, requires_grad=True)], nosuch=1)


def _meta_config(out, steps=20):
    return make_config(
        {
            "problem": {"name": "poisson1d", "points": {"pde": 64}},
            "model": {"width": 8},
            "optim": {
                "optimizer": "hypergradient",
                "lr": 1e-2,
                "scheduler": "exponential",  # lr ← lr·γ: composes with adaptation
                "options": {"hypergradient": {"hyper_lr": 0.05, "lr_max": 0.05}},
            },
            "training": {"steps": steps, "checkpoint_every": 5, "eval_every": 10},
            "output": {"out": str(out), "quiet": True},
        }
    )


def test_meta_by_name_through_the_trainer_and_resume(tmp_path):
    spec = get_optimizer_spec("hypergradient")
    assert spec.closure is None and spec.default_lr == 1e-3
    full = build_trainer(_meta_config(tmp_path / "a"), tmp_path / "a")
    first = float(full.objective.loss().detach())
    ra = full.fit()
    assert ra.status == "completed" and ra.final_loss < first
    group = full.optimizer.param_groups[0]
    assert isinstance(full.optimizer, HypergradientOptimizer)
    assert group["hyper_lr"] == 0.05 and group["lr_min"] <= group["lr"] <= 0.05
    assert group["lr"] != pytest.approx(1e-2 * 0.01, rel=1e-3)  # not the bare schedule

    part = build_trainer(_meta_config(tmp_path / "b"), tmp_path / "b")
    part.callbacks.append(lambda state: state.step >= 10)
    assert part.fit().status == "stopped"
    resumed = build_trainer(_meta_config(tmp_path / "b"), tmp_path / "b")
    resumed.load_state_dict(load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME))
    rb = resumed.fit()
    assert [r["loss"] for r in rb.history] == [r["loss"] for r in ra.history]
    for p, q in zip(full.params, resumed.params):
        assert torch.equal(p, q)

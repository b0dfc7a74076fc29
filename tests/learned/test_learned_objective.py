"""The log-loss meta-objective, its validation, PoissonFamily's architectures, and the
learned-vs-Adam benchmark."""

from __future__ import annotations

import math

import pytest
import torch

from pinnopt.learned import (
    EpisodeSampler,
    MetaOptimizer,
    MetaOptimizerConfig,
    PoissonFamily,
    QuadraticFamily,
)
from pinnopt.learned.train import validate
from pinnopt.models.chebykan import ChebyKAN


def adam_losses(task, lr: float, steps: int) -> list[float]:
    """f(θ_1) … f(θ_steps) under torch's Adam: what the untrained l2o rule produces."""
    model = task.init_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        opt.step(task.closure(model, opt))
        with torch.no_grad():
            out.append(float(task.loss(model)))
    return out


@pytest.mark.parametrize("objective", ["loss", "log_loss"])
def test_meta_loss_of_a_truncation_is_the_mean_loss_or_mean_log_loss(objective):
    task = EpisodeSampler(QuadraticFamily(dim=4), "train").task(0)
    cfg = MetaOptimizerConfig(method="l2o", inner_lr=0.05, inner_steps=5, unroll_steps=5,
                              meta_objective=objective)  # fmt: skip
    result = MetaOptimizer(task.init_model(), cfg).meta_train_step([task])
    ref = adam_losses(task, 0.05, 5)
    expected = sum(map(math.log, ref)) / 5 if objective == "log_loss" else sum(ref) / 5
    assert result.losses[0] == pytest.approx(expected, rel=1e-12)


def test_log_loss_validation_is_the_geometric_mean():
    tasks = EpisodeSampler(QuadraticFamily(dim=4), "val").take(3)
    finals = [adam_losses(t, 0.05, 4)[-1] for t in tasks]
    for objective, expected in [
        ("loss", sum(finals) / 3),
        ("log_loss", math.exp(sum(map(math.log, finals)) / 3)),
    ]:
        cfg = MetaOptimizerConfig(method="l2o", inner_lr=0.05, inner_steps=4,
                                  meta_objective=objective)  # fmt: skip
        assert validate(MetaOptimizer(tasks[0].init_model(), cfg), tasks) == pytest.approx(
            expected, rel=1e-12
        )


def test_bad_meta_objective_names_the_field():
    with pytest.raises(ValueError, match="Invalid meta_objective: 'mse'"):
        MetaOptimizerConfig(meta_objective="mse")


def test_poisson_family_builds_the_named_architecture():
    fam = PoissonFamily(model="chebykan", width=4, depth=1, degree=3, n_pde=8, n_bc=4)
    task = EpisodeSampler(fam, "test").task(0)
    model = task.init_model()
    assert isinstance(model, ChebyKAN)
    assert math.isfinite(float(task.loss(model).detach()))
    deeper = EpisodeSampler(PoissonFamily(depth=4), "test").task(0).init_model()
    assert sum(1 for _ in deeper.parameters()) > sum(
        1 for _ in EpisodeSampler(PoissonFamily(), "test").task(0).init_model().parameters()
    )
    with pytest.raises(ValueError, match="Invalid model: 'cnn'"):
        PoissonFamily(model="cnn")


@pytest.mark.parametrize("family", ["quadratic", "poisson"])
def test_learned_vs_adam_smoke(family, tmp_path, load_benchmark):
    module = load_benchmark("learned_vs_adam")
    out = tmp_path / family
    res = module.main(["--family", family, "--smoke", "--out", str(out)])
    assert res["adam_lr"] in (1e-2, 1e-1)
    assert res["summary"]["tasks"] == 2 and len(res["tasks"]) == 2
    for row in res["tasks"]:
        assert len(row["adam_losses"]) == len(row["learned_losses"]) == 7  # 6 steps + final
        assert row["n_adam"] is not None and row["adam_losses"][row["n_adam"]] <= row["target"]
    text = (out / "results.md").read_text()
    assert "median step ratio (learned / Adam)" in text
    assert (out / "curves.png").stat().st_size > 0 and (out / "meta" / "optimizer.pt").exists()
    assert bool(res["archs"]) == (family == "poisson")
    assert len(res["archs"]) in (0, 3)


def test_first_reach_and_geometric_mean(load_benchmark):
    module = load_benchmark("learned_vs_adam")
    assert module.first_reach([3.0, 2.0, 1.0, 0.5], 1.0) == 2
    assert module.first_reach([3.0, 2.0], 1.0) is None
    assert module.geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert module.geometric_mean([1.0, math.inf]) == math.inf


@pytest.mark.parametrize("method", ["l2o", "lstm"])
def test_default_meta_gradient_is_exact_by_finite_differences(method):
    """With ∂g/∂φ kept (the default), the meta-gradient is the derivative of the
    truncation's meta-loss; for l2o the first-order one (second_order=False) is not."""
    task = EpisodeSampler(QuadraticFamily(dim=3), "train").task(0)
    grads = {}
    for second in (True, False):
        cfg = MetaOptimizerConfig(method=method, inner_lr=0.1, inner_steps=4, unroll_steps=4,
                                  second_order=second)  # fmt: skip
        mo = MetaOptimizer(task.init_model(), cfg)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in mo.rule.parameters():  # nonzero everywhere, so every path counts
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))

        def capture(mo=mo, second=second):
            grads[second] = [p.grad.clone() for p in mo.rule.parameters()]
            mo.meta_optimizer.zero_grad(set_to_none=True)
            return 0.0, False  # φ unchanged

        mo._meta_update = capture
        mo.meta_train_step([task])
    params = list(mo.rule.parameters())  # the same initial φ for both runs
    fd = []
    for i, idx in [(len(params) - 1, 0), (0, 0)]:  # the head's bias, the first weight
        values = []
        for h in (1e-6, -1e-6):
            with torch.no_grad():
                params[i].view(-1)[idx] += h
            values.append(mo.meta_train_step([task]).losses[0])
            with torch.no_grad():
                params[i].view(-1)[idx] -= h
        fd.append(((values[0] - values[1]) / 2e-6, i, idx))
    for value, i, idx in fd:
        assert grads[True][i].view(-1)[idx].item() == pytest.approx(value, rel=1e-5, abs=1e-9)
    if method == "l2o":  # lstm reads log|g| and sign g, whose ∂/∂θ is small: no test there
        assert any(
            abs(grads[False][i].view(-1)[idx].item() - v) > 1e-3 * abs(v) for v, i, idx in fd
        )


def test_learned_vs_adam_on_the_pde_mixture_and_a_saved_rule(tmp_path, load_benchmark):
    """Meta-train on pde_mix (smoke), then score that saved rule on kinds outside the
    mixture without meta-training again."""
    module = load_benchmark("learned_vs_adam")
    res = module.main(["--family", "pde_mix", "--smoke", "--out", str(tmp_path / "mix")])
    rule = tmp_path / "mix" / "meta" / "optimizer.pt"
    assert res["meta"] is not None and rule.exists()
    out = tmp_path / "unseen"
    res = module.main(["--family", "pde_mix", "--smoke", "--kinds", "reaction", "advection",
                       "--rule", str(rule), "--out", str(out)])  # fmt: skip
    assert res["meta"] is None and not (out / "meta").exists()
    assert res["family_options"]["kinds"] == ("reaction", "advection")
    assert f"the saved rule `{rule}`" in (out / "results.md").read_text()

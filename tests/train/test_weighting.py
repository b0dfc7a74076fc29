"""Loss balancing on toy objectives whose gradients, kernels and residuals are known."""

import math

import pytest
import torch
from torch import nn

from pinnopt.config import ConfigError, make_config
from pinnopt.objective import Objective
from pinnopt.problems import Box, Problem, Term
from pinnopt.solve import resume_config, solve
from pinnopt.train.point_weights import rba_step, sa_step
from pinnopt.train.weighting import (
    METHODS,
    LossBalancer,
    WeightingSettings,
    bernoulli,
    grad_norm_weights,
    gradient_norms,
    ntk_traces,
    ntk_weights,
    relobralo_balance,
)


class Constant(nn.Module):
    """u(x) = θ everywhere: one parameter."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value], dtype=torch.float64))

    def forward(self, x):
        return self.theta.expand(x.shape[0], 1)


def two_terms(a: float = 3.0, b: float = 1.0, theta: float = 0.5) -> Objective:
    """r_a = a θ, r_b = b θ: L_a = ½ a² θ², so ‖∇L_a‖ = a² |θ| and ‖∇L_b‖ = b² |θ|."""
    box = Box([0.0], [1.0])
    terms = [
        Term("a", box.interior, lambda u, x: a * u.u, order=0, n=10),
        Term("b", box.interior, lambda u, x: b * u.u, order=0, n=30),
    ]
    problem = Problem("toy", box, terms, lambda x: 0 * x[:, 0])
    return Objective(problem, Constant(theta), problem.sample(torch.Generator().manual_seed(0)))


def test_gradient_norms_are_the_hand_computed_ones():
    norms = gradient_norms(two_terms())
    assert norms["a"] == pytest.approx(9 * 0.5, rel=1e-12)
    assert norms["b"] == pytest.approx(1 * 0.5, rel=1e-12)


def test_grad_norm_weights_equalise_the_weighted_gradient_norms():
    w = grad_norm_weights({"a": 4.5, "b": 0.5})
    assert w == {"a": pytest.approx(5 / 4.5), "b": pytest.approx(10.0)}
    assert w["a"] * 4.5 == pytest.approx(w["b"] * 0.5)


def test_balancer_averages_with_alpha_and_tells_the_objective():
    objective = two_terms()
    seen = []
    objective.subscribe(seen.append)
    values = LossBalancer(objective, WeightingSettings("grad_norm", alpha=0.5)).update()
    assert objective.weights["a"] == pytest.approx(0.5 * 1 + 0.5 * 5 / 4.5)
    assert objective.weights["b"] == pytest.approx(0.5 * 1 + 0.5 * 10.0)
    assert values == {"weight_a": objective.weights["a"], "weight_b": objective.weights["b"]}
    assert seen == ["weights"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "ntkk"}, "method: unknown 'ntkk'; allowed: fixed, grad_norm, ntk, relobralo"),
        ({"period": 0}, "period must be >= 1"),
        ({"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
        ({"method": "sa", "lr": 0.0}, "lr must be > 0"),
        ({"method": "rba", "lr": math.inf}, "lr must be > 0"),
        ({"method": "rba", "gamma": 1.0}, r"gamma must be in \[0, 1\)"),
        ({"method": "relobralo", "temperature": 0.0}, "temperature must be > 0"),
        ({"method": "relobralo", "expected_rho": 1.5}, r"expected_rho must be in \[0, 1\]"),
        ({"method": "ntk", "terms": ["pde"]}, "terms: only for the per-point methods sa, rba"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        WeightingSettings(**settings)
    if settings.get("method") == "ntkk":
        with pytest.raises(ConfigError, match="weighting.method: unknown method"):
            make_config({"weighting": settings})


@pytest.mark.parametrize("optimizer", ["adam", "gn"])
def test_a_run_logs_its_weights(tmp_path, optimizer):
    cfg = make_config({
        "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
        "model": {"width": 6, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": 8, "log_every": 1},
        "weighting": {"method": "grad_norm", "period": 4},
        "output": {"out": str(tmp_path / "run"), "quiet": True},
    })  # fmt: skip
    solve(cfg)
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"weight_pde", "weight_bc", "weight_ic"} <= set(header)
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert [r["step"] for r in rows if r["weight_pde"]] == ["4", "8"]


@pytest.mark.parametrize("optimizer", ["adam:1000,lbfgs", "gn"])
def test_a_resumed_balanced_run_continues_with_its_weights(tmp_path, optimizer):
    """gn: the weights come back from the checkpoint; adam:1000,lbfgs: a stage cut short by
    the step budget is continued, not skipped, by a resume with more steps."""

    def config(where, steps):
        return make_config({
            "problem": {"name": "heat1d", "points": {"pde": 60, "bc": 20, "ic": 20}},
            "model": {"width": 6, "depth": 1},
            "optim": {"optimizer": optimizer},
            "training": {"steps": steps, "log_every": 1, "checkpoint_every": 6},
            "weighting": {"method": "grad_norm", "period": 4, "alpha": 0.0},
            "output": {"out": str(where / "run"), "quiet": True},
        })  # fmt: skip

    whole = solve(config(tmp_path / "a", 10))
    solve(config(tmp_path / "b", 6))  # weights set at step 4, next update at step 8
    resumed = solve(resume_config(tmp_path / "b" / "run", {"training": {"steps": 10}}), resume=True)
    assert resumed["final_loss"] == whole["final_loss"]


# ---------------------------------------------------------------- ntk


def test_ntk_traces_are_the_hand_computed_kernel_diagonals():
    """r_a = a θ, r_b = b θ: ∇_θ r at every point is a resp. b, so tr(K)/N is a² resp. b²,
    whatever the objective's weights and point weights are."""
    objective = two_terms()
    objective.set_weights({"a": 0.0, "b": 7.0})
    objective.set_point_weights({"a": torch.zeros(10)})
    traces = ntk_traces(objective)
    assert traces == {"a": pytest.approx(9.0, rel=1e-12), "b": pytest.approx(1.0, rel=1e-12)}
    assert ntk_weights(traces) == {"a": pytest.approx(10 / 9), "b": pytest.approx(10.0)}


def test_ntk_balancer_averages_with_alpha():
    objective = two_terms()
    values = LossBalancer(objective, WeightingSettings("ntk", alpha=0.25)).update()
    assert objective.weights["a"] == pytest.approx(0.25 + 0.75 * 10 / 9, rel=1e-12)
    assert objective.weights["b"] == pytest.approx(0.25 + 0.75 * 10.0, rel=1e-12)
    assert values == {"weight_a": objective.weights["a"], "weight_b": objective.weights["b"]}


# ---------------------------------------------------------------- relobralo


def offset_terms(theta: float = 0.5) -> Objective:
    """r_a = 3 θ and r_b = θ − 1: L_a = 4.5 θ², L_b = ½ (θ − 1)², which move apart."""
    box = Box([0.0], [1.0])
    terms = [
        Term("a", box.interior, lambda u, x: 3 * u.u, order=0, n=10),
        Term("b", box.interior, lambda u, x: u.u - 1, order=0, n=30),
    ]
    problem = Problem("toy", box, terms, lambda x: 0 * x[:, 0])
    return Objective(problem, Constant(theta), problem.sample(torch.Generator().manual_seed(0)))


def balance(la, lb, ref_a, ref_b, t):
    """K · softmax of the loss ratios, written out for two terms."""
    ea, eb = math.exp(la / (t * ref_a)), math.exp(lb / (t * ref_b))
    return 2 * ea / (ea + eb), 2 * eb / (ea + eb)


def set_theta(objective, value):
    with torch.no_grad():
        objective.model.theta.fill_(value)


@pytest.mark.parametrize("rho", [0.0, 1.0])
def test_relobralo_updates_are_the_hand_computed_ones(rho):
    objective = offset_terms(0.5)
    settings = WeightingSettings("relobralo", alpha=0.5, temperature=2.0, expected_rho=rho)
    balancer = LossBalancer(objective, settings)  # L(0) = (1.125, 0.125)
    l0 = (4.5 * 0.25, 0.5 * 0.25)
    set_theta(objective, 0.8)
    l1 = (4.5 * 0.64, 0.5 * 0.04)
    balancer.update(1)
    recent = balance(*l1, *l0, 2.0)  # t − 1 is the start: both lookbacks are the same
    w1 = [0.5 * (rho * 1.0 + (1 - rho) * recent[i]) + 0.5 * recent[i] for i in (0, 1)]
    assert objective.weights == {"a": pytest.approx(w1[0]), "b": pytest.approx(w1[1])}
    set_theta(objective, 0.6)
    l2 = (4.5 * 0.36, 0.5 * 0.16)
    values = balancer.update(2)
    lookback, recent = balance(*l2, *l0, 2.0), balance(*l2, *l1, 2.0)
    w2 = [0.5 * (rho * w1[i] + (1 - rho) * lookback[i]) + 0.5 * recent[i] for i in (0, 1)]
    assert objective.weights == {"a": pytest.approx(w2[0]), "b": pytest.approx(w2[1])}
    assert values == {"weight_a": objective.weights["a"], "weight_b": objective.weights["b"]}
    assert w2[0] != pytest.approx(w1[0])


def test_relobralo_balance_sums_to_the_number_of_terms_and_survives_zero_losses():
    w = relobralo_balance({"a": 3.0, "b": 1.0, "c": 2.0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 1.0)
    assert sum(w.values()) == pytest.approx(3.0)
    assert w["a"] > w["c"] > w["b"]
    assert relobralo_balance({"a": 0.0, "b": 1.0}, {"a": 0.0, "b": 0.0}, 0.1) == {
        "a": 0.0,
        "b": 2.0,
    }


def test_random_lookback_repeats_for_a_seed_and_index():
    draws = [bernoulli(0.5, 3, i) for i in range(40)]
    assert draws == [bernoulli(0.5, 3, i) for i in range(40)]
    assert set(draws) == {0.0, 1.0}
    assert draws != [bernoulli(0.5, 4, i) for i in range(40)]
    assert {bernoulli(1.0, 3, i) for i in range(40)} == {1.0}
    assert {bernoulli(0.0, 3, i) for i in range(40)} == {0.0}


# ---------------------------------------------------------------- per-point weights


class Slope(nn.Module):
    """u(x) = θ x: residual a u differs from point to point."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value], dtype=torch.float64))

    def forward(self, x):
        return self.theta * x[:, :1]


def sloped(weight_a: float = 2.0) -> Objective:
    """Term "a" (order 2, the PDE term): r_a = 3 θ x at 10 points; "b" (order 0): θ x."""
    box = Box([0.0], [1.0])
    terms = [
        Term("a", box.interior, lambda u, x: 3 * u.u, order=2, n=10, weight=weight_a),
        Term("b", box.interior, lambda u, x: u.u, order=0, n=30),
    ]
    problem = Problem("toy", box, terms, lambda x: 0 * x[:, 0])
    points = problem.sample(torch.Generator().manual_seed(0))
    points = {k: v.to(torch.float64) for k, v in points.items()}
    return Objective(problem, Slope(0.5), points)


def test_sa_step_is_gradient_ascent_on_the_loss():
    objective = sloped(weight_a=2.0)
    r = 3 * 0.5 * objective.points["a"][:, 0]
    balancer = LossBalancer(objective, WeightingSettings("sa", lr=0.3))
    assert balancer.points.terms == ["a"]  # the default: the highest derivative order
    values = balancer.update()
    lam1 = 1 + 0.3 * (2.0 / 10) * r**2
    torch.testing.assert_close(objective.point_weights["a"], lam1, rtol=1e-14, atol=0)
    # the same step from autograd: ∂/∂λ of ½ Σ (sqrt(w/N) λ r)², taken at λ1
    lam = lam1.clone().requires_grad_()
    loss = 0.5 * (math.sqrt(2.0 / 10) * lam * r).square().sum()
    (grad,) = torch.autograd.grad(loss, lam)
    balancer.update()
    torch.testing.assert_close(objective.point_weights["a"], lam1 + 0.3 * grad, rtol=1e-14, atol=0)
    assert "b" not in objective.point_weights
    assert values == {"pw_mean_a": float(lam1.mean()), "pw_max_a": float(lam1.max())}


def test_rba_update_is_decayed_sum_of_normalised_residuals():
    objective = sloped()
    a = (3 * 0.5 * objective.points["a"][:, 0]).abs()
    balancer = LossBalancer(objective, WeightingSettings("rba", terms=("a", "b")))
    balancer.update()
    lam1 = 0.01 * a / a.max()  # λ0 = 0
    torch.testing.assert_close(objective.point_weights["a"], lam1, rtol=1e-14, atol=0)
    set_theta(objective, -2.0)  # |r| / max|r| does not depend on θ here
    values = balancer.update()
    torch.testing.assert_close(
        objective.point_weights["a"], 0.999 * lam1 + lam1, rtol=1e-14, atol=0
    )
    assert {"pw_mean_a", "pw_max_a", "pw_mean_b", "pw_max_b"} == set(values)
    assert values["pw_max_a"] == pytest.approx(1.999 * 0.01)


def test_steps_on_known_residuals():
    lam, r = torch.tensor([1.0, 2.0]), torch.tensor([2.0, -4.0])
    torch.testing.assert_close(sa_step(lam, r, 0.5, 0.1), torch.tensor([1.2, 2.0 + 1.6]))
    torch.testing.assert_close(rba_step(lam, r, 0.5, 0.1), torch.tensor([0.55, 1.1]))
    torch.testing.assert_close(rba_step(lam, torch.zeros(2), 0.5, 0.1), torch.tensor([0.5, 1.0]))


def test_point_weights_reach_the_residual_vector_and_the_jacobian():
    objective = sloped(weight_a=2.0)
    LossBalancer(objective, WeightingSettings("rba")).update()
    m = objective.point_weights["a"]
    r = 3 * 0.5 * objective.points["a"][:, 0]
    rows = objective.split(objective.residual_vector().detach())
    torch.testing.assert_close(rows["a"], math.sqrt(2.0 / 10) * m * r, rtol=1e-14, atol=0)
    vector, J = objective.jacobian()
    torch.testing.assert_close(vector, objective.residual_vector().detach())
    # ∂r_a/∂θ = 3 x, scaled like the residual
    x = objective.points["a"][:, 0]
    torch.testing.assert_close(objective.split(J)["a"][:, 0], math.sqrt(0.2) * m * 3 * x)


def test_new_points_restart_the_multipliers_at_their_initial_value():
    objective = sloped()
    balancer = LossBalancer(objective, WeightingSettings("sa", lr=5.0))
    balancer.update()
    balancer.update()
    fresh = torch.linspace(0.1, 0.9, 7, dtype=torch.float64).unsqueeze(1)
    objective.set_points({"a": fresh})  # adaptive sampling would do this
    assert "a" not in objective.point_weights
    balancer.update()
    r = 3 * 0.5 * fresh[:, 0]
    expected = 1 + 5.0 * (2.0 / 7) * r**2  # from λ0 = 1 again, w = 2, N = 7
    torch.testing.assert_close(objective.point_weights["a"], expected, rtol=1e-14, atol=0)


def test_unknown_terms_are_named():
    with pytest.raises(ValueError, match="terms: unknown term 'pde'; allowed: a, b"):
        LossBalancer(sloped(), WeightingSettings("rba", terms=("pde",)))


# ---------------------------------------------------------------- runs and config


def heat(method, optimizer, where, steps=8, **weighting):
    return make_config({
        "problem": {"name": "heat1d", "points": {"pde": 40, "bc": 10, "ic": 10}},
        "model": {"width": 5, "depth": 1},
        "optim": {"optimizer": optimizer},
        "training": {"steps": steps, "log_every": 1, "checkpoint_every": 6, "seed": 3},
        "weighting": {"method": method, "period": 2, **weighting},
        "output": {"out": str(where / "run"), "quiet": True},
    })  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "gn"])
@pytest.mark.parametrize("method", [m for m in METHODS if m != "fixed"])
def test_every_method_runs_and_logs(tmp_path, method, optimizer):
    metrics = solve(heat(method, optimizer, tmp_path))
    assert math.isfinite(metrics["final_loss"])
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    column = "pw_max_pde" if method in ("sa", "rba") else "weight_pde"
    assert [r["step"] for r in rows if r.get(column)] == ["2", "4", "6", "8"]
    if method in ("sa", "rba"):  # only the PDE term is weighted point by point
        assert "pw_max_bc" not in header and "weight_pde" not in header
        assert float(rows[-1]["pw_max_pde"]) > float(rows[-1]["pw_mean_pde"]) > 0


@pytest.mark.parametrize("method", ["relobralo", "rba"])
def test_a_resumed_run_continues_bit_for_bit(tmp_path, method):
    """relobralo: its loss history comes back from the checkpoint (and ρ is drawn per
    update number); rba: its multipliers come back with the objective's point weights."""
    extra = {"expected_rho": 0.5, "temperature": 1.0, "alpha": 0.5} if method == "relobralo" else {}
    whole = solve(heat(method, "gn", tmp_path / "a", 10, **extra))
    solve(heat(method, "gn", tmp_path / "b", 6, **extra))
    resumed = solve(resume_config(tmp_path / "b" / "run", {"training": {"steps": 10}}), resume=True)
    assert resumed["final_loss"] == whole["final_loss"]


@pytest.mark.parametrize(
    ("weighting", "message"),
    [
        ({"method": "rba", "lr": -1.0}, "weighting.lr: Input should be greater than 0"),
        ({"method": "rba", "gamma": 1.0}, "weighting.gamma: Input should be less than 1"),
        ({"method": "relobralo", "expected_rho": 2.0}, "weighting.expected_rho: Input should be"),
        ({"method": "relobralo", "temperature": math.nan}, "weighting.temperature: Input should"),
        ({"method": "sa", "term": ["pde"]}, "weighting.term: unknown key; allowed: method, period"),
    ],
)
def test_config_errors_name_the_field(weighting, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"weighting": weighting})


def test_solve_names_bad_terms(tmp_path):
    with pytest.raises(ConfigError, match="weighting: terms: unknown term 'pd'; allowed: pde, bc"):
        solve(heat("sa", "adam", tmp_path, terms=["pd"]))
    with pytest.raises(ConfigError, match="weighting: terms: only for the per-point methods"):
        solve(heat("ntk", "adam", tmp_path, terms=["pde"]))

import copy
import math
import warnings

import pytest
import torch

from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.optim import build_optimizer
from pinnopt.optim.lbfgs import LBFGS
from pinnopt.optim.quasi_newton import QuasiNewton, dense_limit_error
from pinnopt.problems import get_problem
from pinnopt.train import Trainer, TrainerSettings
from pinnopt.train.chain import parse_chain

METHODS = ("bfgs", "ssbfgs", "ssbroyden")


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def closure_for(opt, x, f):
    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    return closure


def run(opt, closure, chunk=20, max_calls=100):
    """Calls of ``step(closure, max_iter=chunk)`` until one does fewer (the trainer's rule)."""
    total = 0
    for _ in range(max_calls):
        opt.step(closure, max_iter=chunk)
        total += opt.iterations
        if opt.iterations < chunk:
            break
    return total


@pytest.mark.parametrize("method", METHODS)
def test_rosenbrock_to_machine_precision(method):
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(method, [x])
    assert isinstance(opt, QuasiNewton) and opt.param_groups[0]["method"] == method
    iterations = run(opt, closure_for(opt, x, rosenbrock))
    # f ≤ 1e-12 and x* to 1e-6 at least; the rescaled loss takes it much further (without
    # rescaling the tolerances stop all three near f = 1e-15)
    assert float(rosenbrock(x.detach())) <= 1e-20
    assert torch.allclose(x.detach(), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-9)
    assert iterations < 100  # converged (fewer iterations than asked), not stopped by the cap
    state = opt.state[x]
    assert state["n_updates"] > 10 and state["loss_scale"] > 1e6  # rescaled as the loss fell
    H = state["H"]
    assert H.dtype == torch.float64 and torch.equal(H, H.T)  # exactly symmetric
    assert torch.linalg.eigvalsh(H).min() > 0


# ---------------------------------------------------------------- updates by hand

A = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], dtype=torch.float64)
X_STAR = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def quadratic(x):
    """½ (x − x*)ᵀ A (x − x*) + 1: the scaled loss stays above 1e-2, so H is never rescaled."""
    e = x - X_STAR
    return 0.5 * e @ A @ e + 1.0


def ssbroyden_by_hand(h, b, n, first):
    """τ, φ of Urbán, Stefanou & Pons (2025) eqs. (13)–(23), written out independently."""
    a = b * h - 1
    c = (a / (1 + a)) ** 0.5
    rho_m = min(1.0, h * (1 - c))
    theta_m, theta_p = (rho_m - 1) / a, 1 / rho_m
    theta = max(theta_m, min(theta_p, (1 - b) / b))
    sigma = 1 + theta * a
    phi = (1 - theta) / sigma
    if first:
        return h / sigma, phi
    rho_k = min(1.0, 1 / b)
    if theta <= 0:
        return min(rho_k * sigma ** (1 / (1 - n)), sigma), phi
    return rho_k * min(sigma ** (1 / (1 - n)), 1 / theta), phi


def expected_update(method, H, s, y, first):
    """The update of H from (s, y) as the papers write it."""
    n = len(s)
    I = torch.eye(n, dtype=torch.float64)
    ys = y @ s
    rho = 1 / ys
    if method == "bfgs":  # Nocedal & Wright eq. 6.17, with H₀ = (yᵀs/yᵀy) I (eq. 6.20) first
        if first:
            H = (ys / (y @ y)) * I
        return (I - rho * torch.outer(s, y)) @ H @ (
            I - rho * torch.outer(y, s)
        ) + rho * torch.outer(s, s)
    Hy = H @ y
    yHy = y @ Hy
    h = float(yHy / ys)
    b = float(s @ torch.linalg.solve(H, s) / ys)  # sᵀ B s / yᵀs with B = H⁻¹
    if method == "ssbfgs":
        tau, phi = (h if first else min(1.0, 1 / b)), 1.0
    else:
        tau, phi = ssbroyden_by_hand(h, b, n, first)
    v = yHy.sqrt() * (s / ys - Hy / yHy)
    return (H - torch.outer(Hy, Hy) / yHy + phi * torch.outer(v, v)) / tau + torch.outer(s, s) / ys


@pytest.mark.parametrize("method", METHODS)
def test_first_and_second_updates_match_the_formulas_by_hand(method):
    x = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method=method)
    closure = closure_for(opt, x, quadratic)
    state = opt.state[x]
    H = torch.eye(3, dtype=torch.float64)
    for k in range(2):
        x0 = x.detach().clone()
        opt.step(closure, max_iter=1)
        assert opt.iterations == 1 and state["n_updates"] == k + 1
        c = state["loss_scale"]
        assert c == 1 / float(quadratic(torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)))
        s = x.detach() - x0
        y = c * (A @ s)  # the change of the scaled gradient
        if k == 0:  # H₀ = I: the first step is along −g
            g0 = c * (A @ (x0 - X_STAR))
            assert torch.allclose(s / s.norm(), -g0 / g0.norm(), rtol=0, atol=1e-14)
        H = expected_update(method, H, s, y, first=k == 0)
        assert torch.allclose(state["H"], H, rtol=1e-11, atol=1e-14)
        H = state["H"].clone()
    if method != "bfgs":
        assert state["tau"] != 1.0  # the self-scaling did act


@pytest.mark.parametrize("method", METHODS)
def test_every_update_satisfies_the_secant_equation(method):
    torch.manual_seed(0)
    M = torch.randn(6, 6, dtype=torch.float64)
    A6 = M @ M.T + 0.5 * torch.eye(6, dtype=torch.float64)

    def f(x):
        return 0.5 * x @ A6 @ x + 0.1 * (x**4).sum() + 1.0

    x = torch.ones(6, dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method=method)
    closure = closure_for(opt, x, f)
    state = opt.state[x]
    for _ in range(4):
        x0 = x.detach().clone()
        g0 = torch.func.grad(f)(x0)
        opt.step(closure, max_iter=1)
        s = x.detach() - x0
        y = state["loss_scale"] * (torch.func.grad(f)(x.detach()) - g0)
        assert torch.allclose(state["H"] @ y, s, rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------- state


def _fit_constant(dtype):
    """Least squares of a 1-4-1 tanh net to u = 5 at 16 points (13 parameters)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    net = net.to(dtype)
    x = torch.linspace(0, 1, 16, dtype=dtype)[:, None]
    return net, lambda: 0.5 * ((net(x) - 5.0) ** 2).mean()


def _closure(opt, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["bfgs", "ssbroyden"])
def test_state_dict_round_trip_continues_bit_for_bit(method, dtype):
    net, loss_fn = _fit_constant(dtype)
    opt = QuasiNewton(net.parameters(), method=method)
    for _ in range(3):
        opt.step(_closure(opt, loss_fn), max_iter=4)
    saved = copy.deepcopy(opt.state_dict())  # torch's state_dict shares live tensors
    params = [p.detach().clone() for p in net.parameters()]
    for _ in range(3):
        opt.step(_closure(opt, loss_fn), max_iter=4)
    after = [p.detach().clone() for p in net.parameters()]

    net2, loss_fn2 = _fit_constant(dtype)
    with torch.no_grad():
        for p, q in zip(net2.parameters(), params):
            p.copy_(q)
    fresh = QuasiNewton(net2.parameters(), method=method)
    fresh.load_state_dict(saved)
    H = fresh.state[next(iter(net2.parameters()))]["H"]
    assert H.dtype == torch.float64  # not cast to the parameters' dtype
    for _ in range(3):
        fresh.step(_closure(fresh, loss_fn2), max_iter=4)
    assert all(torch.equal(p, q) for p, q in zip(net2.parameters(), after))
    with pytest.raises(ValueError, match=r"its inverse Hessian is 13×13, this one has 3 param"):
        QuasiNewton([torch.zeros(3, requires_grad=True)], method=method).load_state_dict(saved)
    assert float(loss_fn2().detach()) < 1e-3 * float(_fit_constant(dtype)[1]().detach())


def test_step_returns_the_unscaled_starting_loss_and_counts_iterations():
    net, loss_fn = _fit_constant(torch.float64)
    opt = QuasiNewton(net.parameters(), method="ssbfgs")
    closure = _closure(opt, loss_fn)
    opt.step(closure, max_iter=5)
    assert opt.iterations == 5 and opt.state[opt._params[0]]["n_iter"] == 5
    current = float(loss_fn().detach())
    assert float(opt.step(closure, max_iter=3)) == current
    assert opt.iterations == 3


def test_objective_changed_keeps_h_and_pairs_only_gradients_of_the_new_objective():
    def old(x):
        return quadratic(x)

    def new(x):  # a nearby objective: the minimiser moved
        e = x - X_STAR - 0.3
        return 0.5 * e @ A @ e + 1.0

    x = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method="ssbroyden")
    opt.step(closure_for(opt, x, old), max_iter=3)
    state = opt.state[x]
    H, scale, updates = state["H"], state["loss_scale"], state["n_updates"]
    kept = H.clone()
    opt.objective_changed("points")
    assert state["H"] is H and torch.equal(H, kept)  # H is kept, untouched
    assert state["loss_scale"] == scale
    # the next step is the same as a fresh optimizer's that holds this H and scale alone
    snapshot = {k: copy.deepcopy(v) for k, v in state.items()}
    x0 = x.detach().clone()
    opt.step(closure_for(opt, x, new), max_iter=1)
    x1 = x.detach().clone()
    y_fresh = x0.clone().requires_grad_(True)
    fresh = QuasiNewton([y_fresh], method="ssbroyden")
    fresh.state[y_fresh].update(snapshot)
    fresh.step(closure_for(fresh, y_fresh, new), max_iter=1)
    assert torch.equal(y_fresh.detach(), x1)
    # and the pair it used is of the new objective alone: H now satisfies its secant
    # equation, which a pair with the old gradient at x0 would not
    assert state["n_updates"] == updates + 1
    s = x1 - x0
    y = state["loss_scale"] * (torch.func.grad(new)(x1) - torch.func.grad(new)(x0))
    assert torch.allclose(state["H"] @ y, s, rtol=1e-10, atol=1e-14)
    y_mixed = state["loss_scale"] * (torch.func.grad(new)(x1) - torch.func.grad(old)(x0))
    assert not torch.allclose(state["H"] @ y_mixed, s, rtol=1e-3)


# ---------------------------------------------------------------- dense limit, options


def test_dense_limit_is_refused_with_a_message_naming_it():
    p = torch.zeros(12_345, requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"^ssbroyden: 12,345 parameters exceed max_params=10000 \(a dense 12345×12345 "
        r"inverse Hessian, 1\.2 GB in float64\); raise max_params or use fallback='lbfgs'$",
    ):
        build_optimizer("ssbroyden", [p])
    with pytest.raises(ValueError, match=r"^bfgs: 101 parameters exceed max_params=100 "):
        QuasiNewton([torch.zeros(101, requires_grad=True)], max_params=100)
    assert isinstance(build_optimizer("bfgs", [p], max_params=20_000), QuasiNewton)  # H is lazy
    assert dense_limit_error("bfgs", 10_000, 10_000) is None
    assert dense_limit_error("bfgs", 10_001, 10_000, fallback="lbfgs") is None
    assert dense_limit_error("bfgs", 10_001, 10_000).startswith("bfgs: 10,001 parameters")


def test_fallback_lbfgs_returns_our_lbfgs_and_warns():
    p = torch.zeros(12_345, requires_grad=True)
    with pytest.warns(UserWarning, match=r"ssbfgs: 12,345 parameters exceed max_params=10000; "
                      r"using lbfgs instead \(fallback='lbfgs'\)"):  # fmt: skip
        opt = build_optimizer("ssbfgs", [p], fallback="lbfgs", tolerance_grad=1e-9)
    assert type(opt) is LBFGS
    group = opt.param_groups[0]
    assert (group["line_search_fn"], group["history_size"]) == ("strong_wolfe", 100)
    assert group["tolerance_grad"] == 1e-9 and group["tolerance_change"] == 1e-14
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the limit: the dense method, no warning
        assert isinstance(
            build_optimizer("ssbfgs", [torch.zeros(10)], fallback="lbfgs"), QuasiNewton
        )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 0.0}, r"Invalid lr: 0\.0 \(need 0 < lr < inf\)"),
        ({"lr": math.inf}, r"Invalid lr: inf"),
        ({"max_iter": 0}, r"Invalid max_iter: 0 \(need an integer >= 1\)"),
        ({"max_iter": 2.5}, r"Invalid max_iter: 2\.5"),
        ({"max_eval": 0}, r"Invalid max_eval: 0"),
        ({"tolerance_grad": -1e-3}, r"Invalid tolerance_grad: -0\.001 \(need 0 <= tolerance_g"),
        ({"tolerance_change": 1.0}, r"Invalid tolerance_change: 1\.0"),
        ({"curvature_eps": -1.0}, r"Invalid curvature_eps: -1\.0 \(need 0 <= curvature_eps < 1\)"),
        ({"max_params": 0}, r"Invalid max_params: 0 \(need an integer >= 1\)"),
        ({"fallback": "adam"}, r"Invalid fallback: 'adam'; allowed: None, 'lbfgs'"),
        ({"history_size": 5}, r"unknown option\(s\) \['history_size'\] for optimizer bfgs"),
    ],
)
def test_invalid_hyperparameters_name_the_parameter(options, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer("bfgs", [torch.zeros(3, requires_grad=True)], **options)


def test_invalid_method_groups_and_calls():
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"Invalid method: 'newton'; allowed: bfgs, ssbfgs"):
        QuasiNewton([x], method="newton")
    with pytest.raises(ValueError, match="ssbfgs takes one parameter group"):
        QuasiNewton([{"params": [x]}, {"params": [torch.zeros(2)]}], method="ssbfgs")
    opt = QuasiNewton([x])
    with pytest.raises(ValueError, match="bfgs needs a closure"):
        opt.step(None)
    with pytest.raises(ValueError, match=r"Invalid max_iter: 0"):
        opt.step(closure_for(opt, x, lambda v: (v**2).sum()), max_iter=0)


# ---------------------------------------------------------------- in a trainer chain


def _poisson1d():
    problem = get_problem("poisson1d")
    lower, upper = problem.domain.lower, problem.domain.upper
    model = build_model("mlp", 1, lower, upper, width=6, depth=2, seed=0)
    points = problem.sample(torch.Generator().manual_seed(0), {"pde": 24})
    return Objective(problem, model, points)


def test_ssbroyden_stage_in_a_trainer_chain():
    results = {}
    for chain in ("adam:50,ssbroyden", "adam"):
        settings = TrainerSettings(steps=150, lr=1e-2, quiet=True)
        results[chain] = Trainer(_poisson1d(), parse_chain(chain), settings).fit()
    quasi, adam = results["adam:50,ssbroyden"], results["adam"]
    assert quasi.history[-1]["stage"] == "ssbroyden" and quasi.steps == 150
    assert quasi.final_loss < 1e-3 * adam.final_loss


def test_a_resumed_ssbfgs_run_repeats_the_uninterrupted_one_bit_for_bit():
    def trainer():
        settings = TrainerSettings(steps=60, lr=1e-2, quiet=True)
        return Trainer(_poisson1d(), parse_chain("adam:20,ssbfgs"), settings)

    full = trainer()
    ra = full.fit()
    part = trainer()
    part.callbacks.append(lambda state: state.step >= 40)
    assert part.fit().status == "stopped"
    resumed = trainer()
    resumed.load_state_dict(copy.deepcopy(part.state_dict()))
    rb = resumed.fit()
    assert rb.steps == ra.steps == 60 and rb.history[-1]["stage"] == "ssbfgs"
    assert all(torch.equal(p, q) for p, q in zip(full.params, resumed.params))
    assert rb.final_loss == ra.final_loss

import copy
import math

import torch

from pinnopt.optim.lbfgs import LBFGS


def _fit_constant(optimizer_class, iterations=600, **options):
    """Least squares of a 1-4-1 tanh net to u = 5 at 16 points: exact fit possible."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()
    x = torch.linspace(0, 1, 16, dtype=torch.float64)[:, None]
    opt = optimizer_class(
        net.parameters(), history_size=100, line_search_fn="strong_wolfe",
        tolerance_grad=0.0, tolerance_change=0.0, max_iter=20, max_eval=500, **options,
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = 0.5 * ((net(x) - 5.0) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(iterations // 20):
        opt.step(closure)
    return float(closure().detach()), opt, closure


def test_rescaled_lbfgs_reaches_machine_precision_where_torch_stalls():
    torch_loss, _, _ = _fit_constant(torch.optim.LBFGS)
    ours, _, _ = _fit_constant(LBFGS)
    # torch's absolute y's > 1e-10 test stops its memory updates around loss 1e-8
    assert torch_loss > 1e-10
    assert ours < 1e-13 and ours < 1e-3 * torch_loss


def test_rescaled_lbfgs_state_round_trips():
    _, opt, closure = _fit_constant(LBFGS, iterations=40)
    state = copy.deepcopy(opt.state_dict())  # torch's state_dict shares live tensors
    assert 0 < state["state"][0]["loss_scale"] < math.inf
    params = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    opt.step(closure)
    after = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    with torch.no_grad():
        for p, q in zip(opt.param_groups[0]["params"], params):
            p.copy_(q)
    opt.load_state_dict(state)
    opt.step(closure)
    for p, q in zip(opt.param_groups[0]["params"], after):
        assert torch.equal(p, q)


def test_step_returns_unscaled_loss():
    _, opt, closure = _fit_constant(LBFGS, iterations=40)
    current = float(closure().detach())
    assert float(opt.step(closure)) == current


def _net_and_closure():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()
    x = torch.linspace(0, 1, 16, dtype=torch.float64)[:, None]

    def closure_for(opt, target=5.0):
        def closure():
            opt.zero_grad()
            loss = 0.5 * ((net(x) - target) ** 2).mean()
            loss.backward()
            return loss

        return closure

    return net, closure_for


def test_objective_changed_drops_the_history_and_keeps_the_loss_scale():
    options = dict(history_size=100, line_search_fn="strong_wolfe", max_iter=20, max_eval=500)
    net, closure_for = _net_and_closure()
    opt = LBFGS(net.parameters(), **options)
    for _ in range(3):
        opt.step(closure_for(opt))
    state = opt.state[opt._params[0]]
    assert len(state["old_dirs"]) > 0 and state["n_iter"] == 60
    scale = state["loss_scale"]
    opt.objective_changed("points")
    assert dict(state) == {"loss_scale": scale}
    # the next step on the new objective (target 3) is a first step with that scale:
    # the same as a fresh optimizer's whose state holds the scale alone
    start = [p.detach().clone() for p in net.parameters()]
    opt.step(closure_for(opt, 3.0))
    after = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p, q in zip(net.parameters(), start):
            p.copy_(q)
    fresh = LBFGS(net.parameters(), **options)
    fresh.state[fresh._params[0]]["loss_scale"] = scale
    fresh.step(closure_for(fresh, 3.0))
    for p, q in zip(net.parameters(), after):
        assert torch.equal(p, q)
    # and it goes on: the new objective is fitted as well as the old one was
    for _ in range(10):
        opt.step(closure_for(opt, 3.0))
    assert float(closure_for(opt, 3.0)().detach()) < 1e-13
    assert len(opt.state[opt._params[0]]["old_dirs"]) > 0


def test_objective_changed_before_any_step_is_harmless():
    net, closure_for = _net_and_closure()
    opt = LBFGS(net.parameters(), line_search_fn="strong_wolfe")
    opt.objective_changed("weights")
    assert len(opt.state) == 0
    opt.step(closure_for(opt))
    assert 0 < opt.state[opt._params[0]]["loss_scale"] < math.inf

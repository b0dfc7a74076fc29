"""K-FAC: factors against brute force, inverses, exact products, the optimizer's step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pinnopt.derivatives import Jet, register_jet_hook
from pinnopt.models import build_model
from pinnopt.objective import Objective, ResidualClosure
from pinnopt.optim import build_optimizer
from pinnopt.optim.kfac import JET, KFAC, VALUE, KFACPreconditioner, stack_slots
from pinnopt.problems import get_problem

DTYPE = torch.float64


def small_pinn(problem="poisson2d", width=5, depth=2, seed=0, points=None):
    """A tiny PINN objective: few points, a narrow tanh MLP."""
    problem = get_problem(problem)
    points = points or {t.name: 12 if t.name == "pde" else 6 for t in problem.terms}
    model = build_model(
        "mlp", problem.domain.dim, problem.domain.lower, problem.domain.upper,
        width=width, depth=depth, seed=seed,
    )  # fmt: skip
    pts = problem.sample(torch.Generator().manual_seed(seed), points)
    return Objective(problem, model, pts)


def linear_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def brute_force_factors(objective: Objective, layer: nn.Linear) -> dict[str, torch.Tensor]:
    """A_g, G_g of one layer from their definitions, without K-FAC's code.

    ã_ns: the layer's input slots, read by a jet/forward hook, with the bias column
    (1 on the value slot, 0 elsewhere). g_ns = ∂r_n/∂z_ns: the diagonal of the
    Jacobian of r with respect to perturbations e added to every output slot.
    """
    inputs, sizes = [], []

    def keep_jet(module, z_in, z_out):
        inputs.append(stack_slots(z_in.parts).detach())

    def keep_value(module, args, out):
        inputs.append(args[0].detach().unsqueeze(1))

    handles = [register_jet_hook(layer, keep_jet), layer.register_forward_hook(keep_value)]
    objective.residual_vector()
    for h in handles:
        h.remove()
    sizes = [(a.shape[0], a.shape[1]) for a in inputs]
    perturbations = [
        torch.zeros(n, s, layer.out_features, dtype=DTYPE) for n, s in sizes
    ]  # one per pass, in pass order

    def residuals(*es):
        queue = list(es)

        def add_jet(module, z_in, z_out):
            e = queue.pop(0)
            parts = [p for p in z_out.parts if p is not None]
            slots = stack_slots(parts) + e
            new, i = [], 0
            for p in z_out.parts:
                if p is None:
                    new.append(None)
                elif p.ndim == 2:
                    new.append(slots[:, i])
                    i += 1
                else:
                    new.append(slots[:, i : i + p.shape[1]])
                    i += p.shape[1]
            return Jet(*new)

        def add_value(module, args, out):
            return out + queue.pop(0)[:, 0]

        hs = [register_jet_hook(layer, add_jet), layer.register_forward_hook(add_value)]
        try:
            return objective.residual_vector()
        finally:
            for h in hs:
                h.remove()

    jac = torch.autograd.functional.jacobian(residuals, tuple(perturbations))
    factors: dict[str, torch.Tensor] = {}
    start = 0
    for a, (n, s), j in zip(inputs, sizes, jac):
        rows = torch.arange(n)
        g = j[start + rows, rows]  # (n, s, O): ∂r_n/∂z_ns
        start += n
        bias = torch.zeros(n, s, 1, dtype=DTYPE)
        bias[:, 0] = 1.0
        a = torch.cat([a, bias], dim=-1)
        group = VALUE if s == 1 else JET
        a2 = torch.einsum("nsi,nsj->ij", a, a)
        g2 = torch.einsum("nsi,nsj->ij", g, g)
        factors[f"A{group}"] = factors.get(f"A{group}", 0) + a2
        factors[f"G{group}"] = factors.get(f"G{group}", 0) + g2
        factors[f"n{group}"] = factors.get(f"n{group}", 0) + n * s
    for group in (VALUE, JET):
        if f"A{group}" in factors:
            factors[f"A{group}"] = factors[f"A{group}"] / factors[f"n{group}"]
    return factors


def recorded_preconditioner(objective, **options) -> KFACPreconditioner:
    pre = KFACPreconditioner(objective.model, hooks=False, **options)
    with pre.recording():
        r = objective.residual_vector()
    pre.residual_gradients(r)
    pre.update_factors()
    return pre


@pytest.mark.parametrize("problem", ["poisson2d", "heat1d"])
def test_factors_equal_brute_force_covariances(problem):
    # poisson2d: Laplacian (trace) jets; heat1d: gradient + Hessian-diagonal jets
    objective = small_pinn(problem)
    pre = recorded_preconditioner(objective)
    for layer in linear_layers(objective.model):
        expected = brute_force_factors(objective, layer)
        state = pre.curvature(next(x for x in pre.layers if x.module is layer)).state
        assert set(pre.curvature(pre.layers[0]).groups()) == {VALUE, JET}
        for key in ("A0", "G0", "A1", "G1"):
            torch.testing.assert_close(state[key], expected[key], atol=1e-12, rtol=1e-10)
        assert state["n0"] == expected["n0"] and state["n1"] == expected["n1"]


def test_kronecker_product_is_the_exact_gauss_newton_block_of_a_linear_model():
    # one linear layer with one output: J_n = ã_nᵀ, so JᵀJ = Σ ã ãᵀ = A ⊗ G with G = N
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, generator=g, dtype=DTYPE)
    y = torch.randn(9, generator=g, dtype=DTYPE)
    model = nn.Linear(3, 1, dtype=DTYPE)
    pre = KFACPreconditioner(model, hooks=False)
    with pre.recording():
        r = model(x)[:, 0] - y
    pre.residual_gradients(r)
    pre.update_factors()
    st = pre.curvature(pre.layers[0]).state
    a1 = torch.cat([x, torch.ones(9, 1, dtype=DTYPE)], 1)
    torch.testing.assert_close(torch.kron(st["G0"], st["A0"]), a1.t() @ a1)


def test_gradient_and_jacobian_products_are_exact():
    objective = small_pinn("heat1d")
    pre = KFACPreconditioner(objective.model, hooks=False)
    with pre.recording():
        r = objective.residual_vector()
    grads = pre.residual_gradients(r)
    r_ref, jac = objective.jacobian(pre.params)
    flat = torch.cat([t.reshape(-1) for t in grads])
    torch.testing.assert_close(flat, jac.t() @ r_ref, atol=1e-13, rtol=1e-10)
    v = [torch.randn_like(p) for p in pre.params]
    torch.testing.assert_close(
        pre.jvp(v), jac @ torch.cat([t.reshape(-1) for t in v]), atol=1e-12, rtol=1e-10
    )


def test_eigen_inverse_solves_the_sum_of_two_kronecker_products():
    objective = small_pinn("poisson2d")
    damping = 1e-2
    pre = recorded_preconditioner(objective, damping=damping, damping_split="sqrt")
    pre.update_inverses()
    layer = pre.layers[1]
    st = pre.curvature(layer).state
    s = math.sqrt(damping)

    def eye(n):
        return torch.eye(n, dtype=DTYPE)

    a0, a1 = (st[k] + s * eye(st[k].shape[0]) for k in ("A0", "A1"))
    g0, g1 = (st[k] + s * eye(st[k].shape[0]) for k in ("G0", "G1"))
    m = torch.randn(g0.shape[0], a0.shape[0], dtype=DTYPE)
    x = pre.curvature(layer).solve(m)
    torch.testing.assert_close(g0 @ x @ a0 + g1 @ x @ a1, m, atol=1e-9, rtol=1e-9)


def test_cholesky_inverse_pools_the_groups_into_one_product():
    objective = small_pinn("poisson2d")
    damping = 1e-2
    pre = recorded_preconditioner(objective, damping=damping, damping_split="sqrt",
                                  inverse="cholesky")  # fmt: skip
    pre.update_inverses()
    layer = pre.layers[0]
    st = pre.curvature(layer).state
    n0, n1 = st["n0"], st["n1"]
    s = math.sqrt(damping)
    a = (n0 * st["A0"] + n1 * st["A1"]) / (n0 + n1) + s * torch.eye(st["A0"].shape[0], dtype=DTYPE)
    g = st["G0"] + st["G1"] + s * torch.eye(st["G0"].shape[0], dtype=DTYPE)
    m = torch.randn(g.shape[0], a.shape[0], dtype=DTYPE)
    x = pre.curvature(layer).solve(m)
    torch.testing.assert_close(g @ x @ a, m, atol=1e-9, rtol=1e-9)


def test_running_averages_follow_the_decay():
    objective = small_pinn("poisson2d")
    pre = recorded_preconditioner(objective, decay=0.5)
    first = pre.curvature(pre.layers[0]).state["G1"].clone()
    with torch.no_grad():
        for p in objective.model.parameters():
            p.mul_(1.1)
    pre.clear()
    with pre.recording():
        r = objective.residual_vector()
    pre.residual_gradients(r)
    new = brute_force_factors(objective, pre.layers[0].module)["G1"]
    pre.update_factors()
    torch.testing.assert_close(
        pre.curvature(pre.layers[0]).state["G1"], 0.5 * first + 0.5 * new, atol=1e-12, rtol=1e-10
    )


def kfac_run(objective, steps, **options):
    opt = KFAC(objective.model.parameters(), model=objective.model, **options)
    closure = ResidualClosure(objective)
    losses = [float(opt.step(closure)) for _ in range(steps)]
    return opt, losses + [float(objective.loss().detach())]


@pytest.mark.parametrize("inverse", ["eigen", "cholesky"])
def test_kfac_lowers_the_loss_every_step_and_beats_adam(inverse):
    objective = small_pinn("poisson2d", width=8, points={"pde": 60, "bc": 24})
    start = [p.detach().clone() for p in objective.model.parameters()]
    _, losses = kfac_run(objective, 30, inverse=inverse)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    with torch.no_grad():
        for p, p0 in zip(objective.model.parameters(), start):
            p.copy_(p0)
    adam = build_optimizer("adam", objective.model.parameters(), lr=1e-2)
    for _ in range(30):
        adam.zero_grad()
        objective.loss().backward()
        adam.step()
    assert losses[-1] < 0.1 * float(objective.loss().detach()) and losses[-1] < 1e-2 * losses[0]


@pytest.mark.parametrize(
    "options",
    [{"update": "line_search"}, {"update": "line_search", "momentum": 0.5}, {"base": "adam",
     "base_options": {"lr": 1e-2}}],
)  # fmt: skip
def test_other_updates_lower_the_loss(options):
    objective = small_pinn("poisson2d", width=8, points={"pde": 60, "bc": 24})
    _, losses = kfac_run(objective, 30, **options)
    assert losses[-1] < 0.5 * losses[0]


def test_damping_adapts_both_ways():
    objective = small_pinn("poisson2d", width=8, points={"pde": 60, "bc": 24})
    opt, _ = kfac_run(objective, 1, damping=1e2)  # huge damping: model fits, ρ ≈ 1 → less
    state = opt._state()
    assert state["damping"] < 1e2
    objective = small_pinn("poisson2d", width=8, points={"pde": 60, "bc": 24})
    opt, _ = kfac_run(objective, 1, damping=1e-12, damping_min=1e-12)  # tiny: bad steps
    state = opt._state()
    assert state["damping"] > 1e-12 and (state["rejected"] > 0 or state["rho"] < 0.25)


def test_state_dict_round_trips_and_continues_bit_for_bit():
    a = small_pinn("poisson2d")
    opt_a, _ = kfac_run(a, 3, momentum=0.0)
    saved_model = {k: v.clone() for k, v in a.model.state_dict().items()}
    saved = copy.deepcopy(opt_a.state_dict())  # as a checkpoint file would: torch shares tensors
    b = small_pinn("poisson2d", seed=1)  # other weights, same points
    b.points = a.points
    b.model.load_state_dict(saved_model)
    opt_b = KFAC(b.model.parameters(), model=b.model)
    opt_b.load_state_dict(saved)
    for opt, obj in ((opt_a, a), (opt_b, b)):
        for _ in range(3):
            opt.step(ResidualClosure(obj))
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert opt_a._state()["damping"] == opt_b._state()["damping"]


def test_state_dict_round_trips_with_a_base_optimizer():
    a = small_pinn("poisson2d")
    opt_a, _ = kfac_run(a, 2, base="adam")
    saved = opt_a.state_dict()
    opt_b = KFAC(a.model.parameters(), model=a.model, base="adam")
    opt_b.load_state_dict(saved)
    assert opt_b.base.state_dict()["state"][0]["step"] == 2
    torch.testing.assert_close(opt_b.state_dict()["base"], saved["base"])


def test_a_step_that_produces_nan_is_rejected_not_applied():
    # r = z − 5 for z = w·1, undefined (NaN) beyond z = 2: the full step lands at NaN
    model = nn.Linear(1, 1, bias=False, dtype=DTYPE)
    nn.init.zeros_(model.weight)
    x = torch.ones(1, 1, dtype=DTYPE)

    def closure():
        z = model(x)[:, 0]
        return torch.where(z > 2, torch.full_like(z, math.nan), z - 5)

    opt = KFAC(model.parameters(), model=model, damping=1e-6)
    opt.step(closure)
    assert opt._state()["rejected"] >= 1
    w = float(model.weight.detach())
    assert math.isfinite(w) and 0 < w <= 2


def test_a_non_finite_start_leaves_the_parameters():
    objective = small_pinn("poisson2d")
    before = [p.detach().clone() for p in objective.model.parameters()]
    opt = KFAC(objective.model.parameters(), model=objective.model)
    loss = opt.step(lambda: ResidualClosure(objective)() * math.inf)
    assert not math.isfinite(float(loss))
    for p, p0 in zip(objective.model.parameters(), before):
        assert torch.equal(p, p0)


def test_preconditioner_in_front_of_sgd_with_an_ordinary_loss():
    # empirical Fisher from loss.backward(): regression with plain forward passes
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=DTYPE)
    y = torch.sin(x.sum(1, keepdim=True))
    losses = {}
    for preconditioned in (True, False):
        model = build_model("mlp", 2, width=8, depth=1, seed=0)
        pre = KFACPreconditioner(model, damping=1e-2) if preconditioned else None
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(50):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            if pre is not None:
                pre.step()
            opt.step()
        losses[preconditioned] = float(loss.detach())
    assert losses[True] < 0.25 * losses[False]
    pre = KFACPreconditioner(model)  # the last model; hooks on
    model(x).square().mean().backward()
    pre.step()
    pre.remove()
    assert pre.steps == 1 and all(not layer.passes for layer in pre.layers)
    model(x)  # not recorded any more
    assert all(not layer.passes for layer in pre.layers)
    restored = KFACPreconditioner(model)
    restored.load_state_dict(pre.state_dict())
    assert restored.steps == 1
    torch.testing.assert_close(
        restored.curvature(restored.layers[0]).state["A0"],
        pre.curvature(pre.layers[0]).state["A0"],
    )


def test_step_without_gradients_names_what_to_call():
    model = build_model("mlp", 2, width=4, depth=1)
    pre = KFACPreconditioner(model)
    model(torch.zeros(3, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"call loss.backward\(\) or pre.backward\(r\)"):
        pre.step()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 0.0}, "Invalid lr: 0.0"),
        ({"damping": -1.0}, "Invalid damping: -1.0"),
        ({"decay": 1.0}, "Invalid decay: 1.0"),
        ({"factor_period": 0}, "Invalid factor_period: 0"),
        ({"inverse_period": 1.5}, "Invalid inverse_period: 1.5"),
        ({"inverse": "svd"}, "Invalid inverse: 'svd'"),
        ({"damping_split": "x"}, "Invalid damping_split: 'x'"),
        ({"update": "sgd"}, "Invalid update: 'sgd'"),
        ({"momentum": 1.0}, "Invalid momentum: 1.0"),
        ({"line_search_steps": 0}, "Invalid line_search_steps: 0"),
        ({"damping_factor": 1.0}, "Invalid damping_factor: 1.0"),
        ({"damping_min": 1.0}, "Invalid damping_min/damping_max"),
        ({"max_retries": -1}, "Invalid max_retries: -1"),
        ({"base": "lbfgs"}, "Invalid base: 'lbfgs' is not a first-order optimizer"),
        ({"base": "nosuch"}, "Invalid base: unknown optimizer 'nosuch'"),
        ({"base_options": {"lr": 1.0}}, "Invalid base_options: given without base"),
    ],
)
def test_invalid_hyperparameters_name_the_parameter(options, match):
    model = build_model("mlp", 2, width=4, depth=1)
    with pytest.raises(ValueError, match=match):
        KFAC(model.parameters(), model=model, **options)


def test_invalid_models_and_params():
    model = build_model("mlp", 2, width=4, depth=1)
    with pytest.raises(ValueError, match="no nn.Linear layer with trained weight"):
        KFAC([model[-1].bias], model=model)
    with pytest.raises(ValueError, match="does not support them"):
        KFAC([nn.Parameter(torch.zeros(1))], model=nn.Sequential(nn.Tanh()))
    with pytest.raises(ValueError, match="parameters of model"):
        KFAC([nn.Parameter(torch.zeros(1))], model=model)


def test_kfac_stage_in_a_trainer_chain():
    from pinnopt.train import Trainer, TrainerSettings
    from pinnopt.train.chain import parse_chain

    results = {}
    for chain in ("adam:20,kfac", "adam"):
        objective = small_pinn("poisson2d", width=8, points={"pde": 60, "bc": 24})
        settings = TrainerSettings(steps=60, lr=1e-2, quiet=True)
        results[chain] = Trainer(objective, parse_chain(chain), settings).fit()
    kfac, adam = results["adam:20,kfac"], results["adam"]
    assert kfac.steps == 60 and kfac.history[-1]["stage"] == "kfac"
    assert kfac.final_loss < 0.1 * adam.final_loss


def test_the_closure_s_pass_sizes_are_checked_against_the_passes():
    objective = small_pinn()
    assert objective.pass_sizes() == [12, 6] and ResidualClosure(objective).pass_sizes == [12, 6]

    class TermsOutOfOrder(ResidualClosure):
        @property
        def pass_sizes(self):
            return self.objective.pass_sizes()[::-1]

    opt = KFAC(objective.model.parameters(), model=objective.model)
    with pytest.raises(ValueError, match=r"terms have \[6, 12\] points, but the layers saw "
                       r"forward passes of \[12, 6\]: each term must be one pass"):  # fmt: skip
        opt.step(TermsOutOfOrder(objective))

import re

import pytest
import torch

from pinnopt.optim import OPTIMIZERS, build_optimizer
from pinnopt.train.chain import Stage, parse_chain


def test_parse_chain_stages():
    assert parse_chain("adam:2000,lbfgs") == [Stage("adam", 2000), Stage("lbfgs", None)]
    assert parse_chain(" sgd ") == [Stage("sgd", None)]
    assert parse_chain("adam:5,lbfgs:7") == [Stage("adam", 5), Stage("lbfgs", 7)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty entry"),
        ("adam:10,,lbfgs", "empty entry"),
        ("nosuch", "unknown optimizer 'nosuch'; allowed: .*adam"),
        ("adam:x,lbfgs", "step count 'x' of adam is not an integer"),
        ("adam:0,lbfgs", "step count of adam must be >= 1"),
        ("adam,lbfgs", r"every stage but the last needs a step count \(adam:N\)"),
        ("adam:100,lbfgs:", r"chain 'adam:100,lbfgs:': empty step count after 'lbfgs:'"),
        ("adam:,lbfgs", r"chain 'adam:,lbfgs': empty step count after 'adam:'"),
        ("adam:100, lbfgs: ", r"empty step count after 'lbfgs:'; .*\(e.g. 'lbfgs:1000'\)"),
        ("l2o:", r"chain 'l2o:': empty step count after 'l2o:'"),
    ],
)
def test_parse_chain_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_chain(text)


def test_parse_chain_l2o_path_with_empty_step_count(tmp_path):
    rule = tmp_path / "optimizer.pt"
    rule.write_bytes(b"")  # parse_chain only checks that the file exists
    assert parse_chain(f"adam:3,l2o:{rule}") == [Stage("adam", 3), Stage(f"l2o:{rule}")]
    assert parse_chain(f"l2o:{rule}:4,lbfgs") == [Stage(f"l2o:{rule}", 4), Stage("lbfgs")]
    with pytest.raises(ValueError, match=re.escape(f"empty step count after 'l2o:{rule}:'")):
        parse_chain(f"adam:3,l2o:{rule}:")


def test_every_registered_optimizer_builds_and_steps():
    # r(w) = I·w through a bias-free linear layer (K-FAC needs a layer to hook), loss ½‖w‖²
    x = torch.eye(2, dtype=torch.float64)
    for name, spec in OPTIMIZERS.items():
        model = torch.nn.Linear(2, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[3.0, -2.0]]))
        w = model.weight
        opt = build_optimizer(name, model.parameters(), model=model)
        assert opt.param_groups[0]["lr"] == spec.default_lr

        def residuals(model=model):
            return model(x).reshape(-1)

        def closure(opt=opt, residuals=residuals):
            opt.zero_grad()
            loss = 0.5 * residuals().square().sum()
            loss.backward()
            return loss

        before = float((w**2).sum().detach())
        for _ in range(5):
            if spec.closure == "residuals":
                opt.step(residuals)
            elif spec.closure == "loss":
                opt.step(closure)
            else:
                closure()
                opt.step()
        assert float((w**2).sum().detach()) < before, name


def test_optimizer_that_needs_the_model_says_so():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="optimizer kfac needs the model"):
        build_optimizer("kfac", [w])


def test_lbfgs_defaults_are_for_float64_precision():
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    group = build_optimizer("lbfgs", [w]).param_groups[0]
    assert group["line_search_fn"] == "strong_wolfe"
    assert group["history_size"] == 100
    assert group["tolerance_change"] <= 1e-14
    group = build_optimizer("lbfgs", [w], history_size=7).param_groups[0]
    assert group["history_size"] == 7


def test_bad_option_names_optimizer_and_the_allowed_options():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['nosuch'\] for optimizer adam; "
                       r"allowed: betas, eps, weight_decay"):  # fmt: skip
        build_optimizer("adam", [w], nosuch=1)
    with pytest.raises(ValueError, match=r"\['solvr'\] for optimizer gn; allowed: .*solver"):
        build_optimizer("gn", [w], solvr="cg")
    with pytest.raises(ValueError, match=r"\['scal'\] for optimizer l2o; allowed: path, scale"):
        build_optimizer("l2o", [w], scal=2.0)


def test_options_of_every_optimizer_come_from_its_signature():
    for name, spec in OPTIMIZERS.items():
        if spec.options is None:  # takes **kwargs: the base optimizer's options (meta)
            assert name == "hypergradient"
            continue
        assert "lr" not in spec.options and "params" not in spec.options, name

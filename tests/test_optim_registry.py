import pytest
import torch

from pinnopt.optim import OPTIMIZERS, Stage, build_optimizer, parse_chain


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
    ],
)
def test_parse_chain_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_chain(text)


def test_every_registered_optimizer_builds_and_steps():
    for name, spec in OPTIMIZERS.items():
        w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
        opt = build_optimizer(name, [w])
        assert opt.param_groups[0]["lr"] == spec.default_lr

        def closure(opt=opt, w=w):
            opt.zero_grad()
            loss = (w**2).sum()
            loss.backward()
            return loss

        before = float((w**2).sum().detach())
        for _ in range(5):
            if spec.closure == "residuals":
                opt.step(lambda w=w: w * 1.0)  # r(w) = w, loss ½‖w‖²
            elif spec.closure == "loss":
                opt.step(closure)
            else:
                closure()
                opt.step()
        assert float((w**2).sum().detach()) < before, name


def test_lbfgs_defaults_are_for_float64_precision():
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    group = build_optimizer("lbfgs", [w]).param_groups[0]
    assert group["line_search_fn"] == "strong_wolfe"
    assert group["history_size"] == 100
    assert group["tolerance_change"] <= 1e-14
    group = build_optimizer("lbfgs", [w], history_size=7).param_groups[0]
    assert group["history_size"] == 7


def test_bad_option_names_optimizer():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="bad option for optimizer adam"):
        build_optimizer("adam", [w], nosuch=1)

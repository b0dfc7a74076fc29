"""A chain string is parsed once per run, into stages that carry their spec and options."""

import pytest
import torch

import pinnopt.config
import pinnopt.train
import pinnopt.train.chain
from pinnopt.cli import main
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems import get_problem
from pinnopt.train import Trainer, TrainerSettings
from pinnopt.train.chain import parse_chain


@pytest.fixture
def parse_calls(monkeypatch):
    """Every call of parse_chain, wherever it was imported from."""
    calls = []
    real = pinnopt.train.chain.parse_chain

    def spy(text, options=None):
        calls.append(text)
        return real(text, options)

    for module in (pinnopt.train.chain, pinnopt.train, pinnopt.config):
        monkeypatch.setattr(module, "parse_chain", spy)
    return calls


def test_a_solve_parses_its_chain_once(tmp_path, capsys, parse_calls):
    out = tmp_path / "run"
    args = ["solve", "poisson1d", "--optimizer", "adam:3,gn", "--steps", "5", "--width", "4",
            "--depth", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert parse_calls == ["adam:3,gn"]
    assert main(["solve", "--resume", str(out), "--steps", "7", "--quiet"]) == 0
    assert parse_calls == ["adam:3,gn"] * 2  # the resumed run: once more


def test_a_bench_parses_each_run_s_chain_once(tmp_path, capsys, parse_calls):
    args = ["bench", "--problems", "poisson1d", "--optimizers", "adam", "sgd:2,adam", "--seeds",
            "2", "--steps", "3", "--width", "4", "--depth", "1", "--quiet", "--out",
            str(tmp_path / "b")]  # fmt: skip
    assert main(args) == 0
    assert sorted(parse_calls) == ["adam", "adam", "sgd:2,adam", "sgd:2,adam"]


def test_every_option_reaches_its_optimizer_or_raises():
    options = {"adam": {"eps": 1e-6}, "lbfgs": {"history_size": 7}}
    stages = parse_chain("adam:2,lbfgs", options)
    assert [s.options for s in stages] == [{"eps": 1e-6}, {"history_size": 7}]
    problem = get_problem("poisson1d")
    model = build_model("mlp", 1, [0.0], [1.0], width=4, depth=1).double()
    points = {k: v.double() for k, v in problem.sample(torch.Generator().manual_seed(1)).items()}
    trainer = Trainer(Objective(problem, model, points), stages, TrainerSettings(steps=4))
    assert trainer.build_optimizer(0).param_groups[0]["eps"] == 1e-6
    assert trainer.build_optimizer(1).param_groups[0]["history_size"] == 7
    assert trainer.build_optimizer(1).param_groups[0]["line_search_fn"] == "strong_wolfe"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['eps'\] for optimizer lbfgs"):
        parse_chain("adam:2,lbfgs", {"lbfgs": {"eps": 1.0}})


def test_stages_carry_their_spec_and_compare_by_name_and_steps():
    adam, lbfgs = parse_chain("adam:5, lbfgs")
    assert (adam.spec.name, adam.spec.closure, lbfgs.spec.closure) == ("adam", None, "loss")
    assert adam == pinnopt.train.Stage("adam", 5) and lbfgs.text == "lbfgs"


def test_renamed_optimizer_names_its_new_name(capsys):
    assert main(["solve", "poisson1d", "--optimizer", "meta"]) == 2
    err = capsys.readouterr().err
    assert "unknown optimizer 'meta': it is now called 'hypergradient'" in err

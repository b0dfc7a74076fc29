"""The meta-training loop, ``pinnopt meta-train``, and ``l2o:PATH`` in optimizer chains."""

import csv
import dataclasses
import json
import math

import pytest
import torch

from pinnopt.cli import main
from pinnopt.learned import (
    EpisodeSampler,
    LearnedOptimizer,
    MetaOptimizer,
    MetaOptimizerConfig,
    QuadraticFamily,
    load_learned,
)
from pinnopt.learned import train as train_module
from pinnopt.learned.tasks import TaskFamily
from pinnopt.optim import OPTIMIZERS, build_optimizer
from pinnopt.train.chain import Stage, parse_chain

TINY = ["--meta-steps", "4", "--inner-steps", "6", "--unroll-steps", "3", "--episodes", "2",
        "--val-every", "2", "--val-episodes", "2", "--meta-lr", "0.01", "--quiet"]  # fmt: skip
FAST = ["--width", "8", "--depth", "1", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny l2o rule meta-trained on quadratics through the CLI."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("meta")
    code = main(["meta-train", "--family", "quadratic", "--method", "l2o", "--out", str(out),
                 *TINY])  # fmt: skip
    assert code == 0
    return out


def test_meta_train_writes_outputs(trained, capsys):
    for name in ["optimizer.pt", "history.csv", "metrics.json", "meta_loss.png"]:
        assert (trained / name).is_file(), name
    blob = load_learned(trained / "optimizer.pt")
    assert blob["config"]["method"] == "l2o" and blob["config"]["inner_steps"] == 6
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["meta_steps_done"] == 4
    assert metrics["family"] == "quadratic" and metrics["method"] == "l2o"
    rows = list(csv.DictReader((trained / "history.csv").open()))
    assert [int(r["meta_step"]) for r in rows] == [0, 1, 2, 3, 4]
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(vals) == 3  # before training, after meta-steps 2 and 4
    assert metrics["best_val_loss"] == min(vals)
    assert metrics["initial_val_loss"] == vals[0] and metrics["final_val_loss"] == vals[-1]
    assert all(math.isfinite(float(r["meta_loss"])) for r in rows[1:])


def test_meta_train_prints_where_the_optimizer_is(tmp_path, capsys):
    out = tmp_path / "m"
    code, stdout, _ = run(capsys, "meta-train", "--family", "quadratic", "--method", "lstm",
                          "--out", out, *TINY)  # fmt: skip
    assert code == 0
    assert str(out / "optimizer.pt") in stdout


def test_solve_with_learned_optimizer(trained, tmp_path, capsys):
    path = trained / "optimizer.pt"
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "solve", "poisson1d", "--optimizer", f"l2o:{path}",
                          "--steps", "5", "--out", out, *FAST)  # fmt: skip
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and math.isfinite(metrics["final_loss"])
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert rows[0]["stage"] == f"l2o:{path}"


def test_chain_adam_then_learned(trained, tmp_path, capsys):
    path = trained / "optimizer.pt"
    assert parse_chain(f"adam:3,l2o:{path}") == [Stage("adam", 3), Stage(f"l2o:{path}")]
    assert parse_chain(f"adam:3, l2o:{path}:4,lbfgs") == [
        Stage("adam", 3), Stage(f"l2o:{path}", 4), Stage("lbfgs")]  # fmt: skip
    assert parse_chain("l2o:7") == [Stage("l2o", 7)]
    out = tmp_path / "chain"
    code, _, _ = run(capsys, "solve", "poisson1d", "--optimizer", f"adam:3,l2o:{path}",
                     "--steps", "6", "--out", out, *FAST)  # fmt: skip
    assert code == 0
    stages = [r["stage"] for r in csv.DictReader((out / "history.csv").open())]
    assert stages[0] == "adam" and stages[-1] == f"l2o:{path}"


def test_build_optimizer_l2o_is_the_learned_optimizer(trained):
    path = trained / "optimizer.pt"
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = build_optimizer(f"l2o:{path}", [p], lr=123.0)
    assert isinstance(opt, LearnedOptimizer)
    assert opt.param_groups[0]["scale"] == 1.0  # lr is ignored
    same = build_optimizer("l2o", [p], path=str(path), scale=0.5)
    assert same.param_groups[0]["scale"] == 0.5
    assert "l2o" in OPTIMIZERS


def test_config_with_path_in_options(trained, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[problem]\nname = "poisson1d"\n[model]\nwidth = 8\ndepth = 1\n'
        f'[optim]\noptimizer = "adam:2,l2o"\noptions = {{ l2o = {{ path = "{trained}/optimizer.pt",'
        " scale = 0.5 } }\n"
        f'[training]\nsteps = 4\n[output]\nout = "{tmp_path / "r"}"\nquiet = true\n'
    )
    code, _, err = run(capsys, "solve", "--config", cfg)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["steps"] == 4


def test_list_shows_l2o(capsys):
    code, stdout, _ = run(capsys, "list")
    assert code == 0 and "l2o" in stdout


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--family", "nope", "--method", "lstm"], "--family: unknown task family 'nope'"),
        (
            ["--family", "quadratic", "--method", "lstm", "--meta-objective", "mse"],
            "--meta-objective: Invalid meta_objective: 'mse'",
        ),
        (["--family", "quadratic", "--method", "adam"], "--method: Invalid method: 'adam'"),
        (["--family", "quadratic", "--method", "lstm", "--meta-steps", "0"], "--meta-steps"),
        (["--family", "quadratic", "--method", "lstm", "--unroll-steps", "0"], "--unroll-steps"),
        (["--family", "quadratic", "--method", "lstm", "--meta-lr", "-1"], "--meta-lr"),
        (["--family", "quadratic", "--method", "lstm", "--val-every", "0"], "--val-every"),
    ],
)
def test_meta_train_bad_input_is_one_line(args, pattern, tmp_path, capsys):
    code, _, err = run(capsys, "meta-train", *args, "--out", tmp_path / "x")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "x").exists()


def test_missing_l2o_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "none.pt"
    code, _, err = run(capsys, "solve", "poisson1d", "--optimizer", f"adam:2,l2o:{missing}",
                       "--steps", "4", "--out", tmp_path / "r", *FAST)  # fmt: skip
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "optim.optimizer" in err and str(missing) in err and "does not exist" in err


def test_the_untrained_l2o_rule_is_adam(tmp_path):
    untrained = tmp_path / "untrained.pt"
    MetaOptimizer(torch.nn.Linear(1, 1), MetaOptimizerConfig(method="l2o")).save(untrained)
    torch.manual_seed(0)
    target = torch.randn(5, dtype=torch.float64)
    a = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    learned = build_optimizer(f"l2o:{untrained}", [a], lr=0.5)  # lr is ignored
    adam = torch.optim.Adam([b], lr=1e-2)
    for _ in range(4):
        for p, opt in ((a, learned), (b, adam)):
            opt.zero_grad()
            ((p - target) ** 4).sum().backward()
            opt.step()
    assert not torch.equal(a, torch.zeros_like(a))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_not_a_learned_optimizer_file(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    code, _, err = run(capsys, "solve", "poisson1d", "--optimizer", f"l2o:{bad}",
                       "--steps", "4", "--out", tmp_path / "r", *FAST)  # fmt: skip
    assert code == 2 and "Invalid path" in err and err.strip().count("\n") == 0


def test_the_best_on_val_rule_is_saved(tmp_path, monkeypatch):
    """Scripted validation losses 3, 1, 2: the rule after meta-step 2 must be the one saved."""
    scripted = iter([3.0, 1.0, 2.0])
    snapshots = []

    def fake_validate(meta, tasks):
        snapshots.append({k: v.clone() for k, v in meta.rule.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(train_module, "validate", fake_validate)
    config = MetaOptimizerConfig(method="lstm", inner_steps=4, unroll_steps=2, meta_lr=0.05)
    m = train_module.meta_train(QuadraticFamily(dim=3), config, tmp_path, meta_steps=4,
                                episodes_per_step=1, val_every=2, val_episodes=1,
                                progress=False, test_episodes=0)  # fmt: skip
    assert m["best_val_loss"] == 1.0 and m["best_meta_step"] == 2
    assert m["initial_val_loss"] == 3.0 and m["final_val_loss"] == 2.0
    saved = load_learned(tmp_path / "optimizer.pt")["rule"]
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[2][k]) for k in saved)  # training moved φ


def test_patience_stops_after_validations_without_a_new_best(tmp_path, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.1, 1.0, 0.5])
    monkeypatch.setattr(train_module, "validate", lambda meta, tasks: next(scripted))
    config = MetaOptimizerConfig(method="l2o", inner_steps=2, unroll_steps=2)
    m = train_module.meta_train(QuadraticFamily(dim=3), config, tmp_path, meta_steps=5,
                                episodes_per_step=1, val_every=1, val_episodes=1,
                                progress=False, patience=2, test_episodes=0)  # fmt: skip
    assert m["status"] == "stopped_early" and m["meta_steps_done"] == 3
    assert m["best_val_loss"] == 2.0 and m["best_meta_step"] == 1


def test_the_saved_and_the_untrained_rule_are_scored_on_test_tasks(tmp_path):
    family = QuadraticFamily(dim=3)
    config = MetaOptimizerConfig(method="l2o", inner_steps=4, unroll_steps=2, meta_lr=0.05)
    m = train_module.meta_train(family, config, tmp_path, meta_steps=3, episodes_per_step=1,
                                val_every=1, val_episodes=2, progress=False,
                                test_episodes=3)  # fmt: skip
    test = EpisodeSampler(family, "test").take(3)
    untrained = train_module.validate(MetaOptimizer(test[0].init_model(), config), test)
    assert m["untrained_test_loss"] == pytest.approx(untrained, rel=1e-12)
    best = MetaOptimizer(test[0].init_model(), config)
    best.rule.load_state_dict(load_learned(tmp_path / "optimizer.pt")["rule"])
    assert m["test_loss"] == pytest.approx(train_module.validate(best, test), rel=1e-12)
    assert m["test_episodes"] == 3 and m["patience"] is None


def test_bad_patience_and_test_episodes_name_the_argument(tmp_path):
    for kw, match in [({"patience": 0}, "Invalid patience"),
                      ({"test_episodes": -1}, "Invalid test_episodes")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            train_module.meta_train(QuadraticFamily(dim=3), MetaOptimizerConfig(), tmp_path,
                                    progress=False, **kw)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HugeQuadratics(TaskFamily):
    """Quadratics scaled by 1e30: every meta-gradient trips the explosion guard."""

    name: str = "huge"

    def sample(self, seed, split="train"):
        task = QuadraticFamily(dim=3).sample(seed, split)
        return dataclasses.replace(task, loss=lambda model, f=task.loss: 1e30 * f(model))


def test_exploding_meta_gradients_stop_the_loop(tmp_path):
    config = MetaOptimizerConfig(method="lstm", inner_steps=2, unroll_steps=2)
    m = train_module.meta_train(HugeQuadratics(), config, tmp_path, meta_steps=10,
                                episodes_per_step=1, val_every=5, val_episodes=1,
                                progress=False, max_exploded=2)  # fmt: skip
    assert m["status"] == "exploded" and m["meta_steps_done"] == 2
    assert m["skipped_updates"] == 2
    assert (tmp_path / "optimizer.pt").is_file() and (tmp_path / "meta_loss.png").is_file()


def test_meta_train_exits_3_when_it_stops_on_explosions(tmp_path, capsys, monkeypatch):
    real = train_module.meta_train

    def huge(family, config, out, **kw):
        return real(HugeQuadratics(), config, out, **{**kw, "max_exploded": 2})

    monkeypatch.setattr(train_module, "meta_train", huge)
    code, out, _ = run(capsys, "meta-train", "--family", "quadratic", "--method", "lstm",
                       "--out", tmp_path, *TINY)  # fmt: skip
    assert code == 3 and "(exploded)" in out
    assert (tmp_path / "optimizer.pt").is_file()


@pytest.mark.parametrize("method", ["warp_grad", "schedule"])
def test_meta_train_warp_grad_and_schedule(method, tmp_path, capsys):
    code, out, _ = run(capsys, "meta-train", "--family", "quadratic", "--method", method,
                       "--out", tmp_path, "--inner-lr", "0.05", "--meta-objective", "log_loss",
                       *TINY)  # fmt: skip
    assert code == 0 and "(completed)" in out
    blob = load_learned(tmp_path / "optimizer.pt")
    assert blob["config"]["method"] == method and blob["config"]["inner_lr"] == 0.05
    assert blob["config"]["meta_objective"] == "log_loss" and blob["config"]["second_order"]


def test_meta_sgd_loop_runs(tmp_path, capsys):
    config = MetaOptimizerConfig(method="meta_sgd", inner_steps=2, inner_lr=0.1)
    m = train_module.meta_train(QuadraticFamily(dim=3), config, tmp_path, meta_steps=2,
                                episodes_per_step=2, val_every=1, val_episodes=2,
                                progress=False)  # fmt: skip
    assert m["status"] == "completed" and math.isfinite(m["best_val_loss"])
    assert m["best_val_loss"] <= m["initial_val_loss"]
    # its α fits only the quadratic's shapes: refused on a PINN, in one line
    code, _, err = run(capsys, "solve", "poisson1d", "--optimizer",
                       f"l2o:{tmp_path / 'optimizer.pt'}", "--steps", "2",
                       "--out", tmp_path / "r", *FAST)  # fmt: skip
    assert code == 2 and "Invalid params for meta_sgd" in err
    assert err.strip().count("\n") == 0


def test_meta_train_config_file_with_family_options_and_rule_fields(tmp_path, capsys):
    config = tmp_path / "meta.toml"
    config.write_text(
        '[meta_train]\nfamily = "quadratic"\nmethod = "l2o"\nmeta_steps = 3\nepisodes = 1\n'
        f'val_every = 1\nval_episodes = 1\ntest_episodes = 2\nout = "{tmp_path / "run"}"\n'
        "[meta_train.family_options]\ndim = 5\ncondition = 4.0\n"
        "[meta_train.rule]\ninner_steps = 4\nunroll_steps = 2\nhidden_size = 6\n"
        'meta_objective = "log_loss"\n'
    )
    code, out, _ = run(capsys, "meta-train", "--config", config, "--meta-steps", "2", "--quiet")
    assert code == 0 and "test loss" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["meta_steps_done"] == 2  # the flag wins over the file
    assert metrics["family_options"]["dim"] == 5 and metrics["family_options"]["condition"] == 4.0
    assert metrics["config"]["hidden_size"] == 6 and metrics["config"]["inner_steps"] == 4
    assert metrics["config"]["meta_objective"] == "log_loss" and metrics["test_episodes"] == 2
    blob = load_learned(tmp_path / "run" / "optimizer.pt")
    assert blob["shapes"] == [[5]]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('[meta_train]\nfamily = "quadratic"\nmethod = "l2o"\nmeta_step = 3\n',
         r"meta_train: unknown key\(s\) \['meta_step'\]"),
        ('[meta_train]\nfamily = "quadratic"\nmethod = "l2o"\n[meta_train.rule]\nhidden = 3\n',
         r"meta_train.rule: unknown field\(s\) \['hidden'\]"),
        ('[meta_train]\nfamily = "quadratic"\nmethod = "l2o"\n[meta_train.family_options]\n'
         "dims = 3\n", "meta_train.family_options: bad option"),
        ('[meta_train]\nmethod = "l2o"\n', r"--family: required \(or meta_train.family"),
        ("[train]\nx = 1\n", "has no \\[meta_train\\] table"),
    ],
)  # fmt: skip
def test_meta_train_config_file_errors_are_one_line(text, pattern, tmp_path, capsys):
    config = tmp_path / "meta.toml"
    config.write_text(text)
    code, _, err = run(capsys, "meta-train", "--config", config, "--out", tmp_path / "x")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]

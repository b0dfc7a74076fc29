"""Systems of PDEs: a problem with several output components, end to end."""

import json

import pytest
import torch

from pinnopt.cli import main
from pinnopt.evaluation import Evaluator
from pinnopt.models import build_model
from pinnopt.objective import Objective
from pinnopt.problems import PROBLEMS, Box, Problem, Term
from pinnopt.train import Trainer, TrainerSettings, parse_chain


def oscillator(exact=None) -> Problem:
    """u' = v, v' = −u on [0, 1] with u(0) = 0, v(0) = 1: u = sin x, v = cos x."""
    box = Box([0.0], [1.0])
    start = box.face(0, "lower")
    return Problem(
        "oscillator", box, components=("u", "v"), input_names=("x",),
        exact=exact or (lambda x: torch.stack([torch.sin(x[:, 0]), torch.cos(x[:, 0])], dim=1)),
        terms=[
            # by name ...
            Term("du", box.interior, lambda u, x: u.d(0, "u") - u.of("v"), order=1, n=48),
            Term("dv", box.interior, lambda u, x: u.d(0, "v") + u.of("u"), order=1, n=48),
            # ... or by index
            Term("ic_u", start, lambda u, x: u.value[:, 0], order=0, n=1),
            Term("ic_v", start, lambda u, x: u.of(1) - 1.0, order=0, n=1),
        ],
    )  # fmt: skip


def test_exact_of_a_system_has_one_column_per_component():
    with pytest.raises(ValueError, match=r"exact must return shape \(N, C\) for C = 2 "
                       r"components for N points, here \(1001, 2\), got \(1001,\)"):  # fmt: skip
        Evaluator(oscillator(exact=lambda x: torch.sin(x[:, 0])))
    with pytest.raises(ValueError, match="components must be unique names"):
        Problem("p", Box([0.0], [1.0]), [], lambda x: x[:, 0], components=("u", "u"))


def test_a_system_trains_and_reports_every_component(tmp_path, saved_figures):
    problem = oscillator()
    model = build_model("mlp", 1, [0.0], [1.0], out_dim=2, width=8, depth=1)
    points = problem.sample(torch.Generator().manual_seed(0))
    trainer = Trainer(Objective(problem, model, points), parse_chain("gn"),
                      TrainerSettings(steps=40, eval_every=10, quiet=True), Evaluator(problem),
                      out_dir=tmp_path / "run")  # fmt: skip
    result = trainer.fit()
    assert result.rel_l2 < 1e-4
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in ("u", "v"):
        assert 0 < metrics[f"rel_l2_{name}"] < 1e-4 and metrics[f"max_abs_error_{name}"] > 0
    assert "rel_l2_v" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    solution = saved_figures[-1]  # solution.png: one row of two panels per component
    titles = [ax.get_title() for ax in solution.axes]
    assert titles == ["u: prediction and reference", "u: |error|",
                      "v: prediction and reference", "v: |error|"]  # fmt: skip


def test_the_command_line_builds_one_output_per_component(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROBLEMS, "oscillator", oscillator)
    out = tmp_path / "run"
    args = ["solve", "oscillator", "--optimizer", "gn", "--steps", "10", "--width", "8",
            "--depth", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"rel_l2_u", "rel_l2_v"} <= set(metrics) and metrics["rel_l2"] < 1e-2


def test_a_component_name_that_the_problem_lacks_is_named():
    problem = oscillator()
    problem.terms[0].residual = lambda u, x: u.d(0, "w")
    model = build_model("mlp", 1, [0.0], [1.0], out_dim=2, width=4, depth=1)
    points = problem.sample(torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown component 'w'; allowed: u, v"):
        Objective(problem, model, points).loss()


def test_multi_stage_training_of_a_system(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROBLEMS, "oscillator", oscillator)
    out = tmp_path / "run"
    args = ["solve", "oscillator", "--optimizer", "gn", "--steps", "8", "--width", "8",
            "--depth", "1", "--networks", "2", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["network"] for s in metrics["stages"]] == [1, 2]
    assert metrics["rel_l2"] <= metrics["stages"][0]["rel_l2"] and "rel_l2_v" in metrics

"""The command line of the new problem features: --param, --data, --constraints."""

import csv
import json

import pytest

from pinnopt.cli import main

FAST = ["--width", "8", "--depth", "1", "--quiet", "--optimizer", "gn"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_inverse_problem_with_params_reports_nu(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--param", "observations=50", "--param", "noise=0.01", "--steps", "3"]
    code, stdout, _ = run(capsys, "solve", "burgers1d_inverse", *args, "--out", str(out), *FAST)
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["param_nu_rel_error"] and "param_nu" in metrics
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "param_nu" in header and "param_nu_rel_error" in header
    assert "observations = 50.0" in (out / "config.toml").read_text()


def test_data_file_adds_a_term(tmp_path, capsys):
    path = tmp_path / "obs.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["x", "u"], [0.25, 0.7071], [0.5, 1.0]])
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "solve", "poisson1d", "--data", str(path), "--steps", "2",
                          "--out", str(out), *FAST)  # fmt: skip
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert "data" in metrics["loss_terms"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["poisson5d", "--constraints", "exact"],
         "problem.constraints: problem 'poisson5d' declares no exact constraint"),
        (["poisson1d", "--constraints", "hard"], "problem.constraints: Input should be"),
        (["poisson1d", "--param", "nu"], "--param: expected NAME=NUMBER, got 'nu'"),
        (["poisson1d", "--param", "nu=0.1"], "problem.params: unknown parameter 'nu'"),
        (["convection1d", "--param", "beta=-1"], "problem.params: beta"),
        (["poisson1d", "--data", "/no/such.csv"], "problem.data: observation file not found"),
    ],
)  # fmt: skip
def test_bad_problem_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "solve", *args, "--steps", "1", "--out", str(tmp_path / "r"),
                       *FAST)  # fmt: skip
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_data_file_with_a_nan_is_refused(tmp_path, capsys):
    path = tmp_path / "obs.csv"
    path.write_text("x,u\n0.25,nan\n")
    code, _, err = run(capsys, "solve", "poisson1d", "--data", str(path), "--steps", "1",
                       "--out", str(tmp_path / "r"), *FAST)  # fmt: skip
    assert code == 2
    assert "column 'u' has 1 non-finite value(s)" in err

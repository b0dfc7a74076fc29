"""``pinnopt bench``: the matrix runs, its files agree with the runs, bad input exits 2."""

import csv
import json
import math
import statistics

import pytest

from pinnopt.bench.matrix import slug
from pinnopt.bench.report import write_report
from pinnopt.cli import main, spread_values

TINY = ["--width", "6", "--depth", "1", "--steps", "30", "--eval-every", "10", "--time-limit",
        "20", "--threads", "1", "--quiet"]  # fmt: skip
PROBLEMS = ["poisson1d", "heat1d"]
OPTIMIZERS = ["adam", "adam:10,lbfgs"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """2 problems × 2 optimizers (one a chain, given space-separated) × 2 seeds."""
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--problems", *PROBLEMS, "--optimizers", *OPTIMIZERS,
                 "--seeds", "2", "--out", str(out), *TINY])  # fmt: skip
    assert code == 0
    return out


def test_matrix_writes_every_file(matrix):
    for name in ["results.csv", "results.md", "bench.json", "error_vs_time.csv",
                 "error_vs_time.png"]:  # fmt: skip
        assert (matrix / name).is_file(), name
    assert (matrix / "error_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for problem in PROBLEMS:
        for optimizer in OPTIMIZERS:
            for seed in (0, 1):
                run_dir = matrix / "runs" / problem / slug(optimizer) / f"seed{seed}"
                assert (run_dir / "metrics.json").is_file() and (run_dir / "history.csv").is_file()
    assert slug("adam:10,lbfgs") == "adam-10+lbfgs"


def test_results_csv_matches_each_runs_metrics(matrix):
    with open(matrix / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [(r["problem"], r["optimizer"], int(r["seed"])) for r in rows]
    assert cells == [(p, o, s) for p in PROBLEMS for o in OPTIMIZERS for s in (0, 1)]
    for r in rows:
        path = matrix / "runs" / r["problem"] / slug(r["optimizer"]) / f"seed{r['seed']}"
        m = json.loads((path / "metrics.json").read_text())
        assert m["optimizer"] == r["optimizer"] and m["seed"] == int(r["seed"])
        for key in ["rel_l2", "max_abs_error", "final_loss", "wall_time_s"]:
            assert float(r[key]) == m[key], key
        assert int(r["n_params"]) == m["n_params"] and int(r["steps"]) == m["steps"] == 30
        assert r["status"] == m["status"] == "completed"
        assert (r["model"], r["width"], r["depth"]) == ("mlp", "6", "1")
    # the two seeds are different runs
    assert rows[0]["rel_l2"] != rows[1]["rel_l2"]


def test_results_md_has_medians_and_the_command(matrix):
    text = (matrix / "results.md").read_text()
    assert "pinnopt bench --problems poisson1d heat1d --optimizers adam adam:10,lbfgs" in text
    assert "torch thread(s)" in text and "float64" in text
    with open(matrix / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["problem"] == "heat1d"]
    chain = [float(r["rel_l2"]) for r in rows if r["optimizer"] == "adam:10,lbfgs"]
    median = statistics.median(chain)
    assert min(chain) < median < max(chain)  # two seeds: the mean of the two
    line = next(x for x in text.splitlines() if x.startswith("| heat1d | `adam:10,lbfgs` |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4:7] == [f"{median:.2e}", f"{min(chain):.2e}", f"{max(chain):.2e}"]
    assert cells[-2:] == ["30", "completed ×2"]
    assert len([x for x in text.splitlines() if x.startswith("| poisson1d |")]) == 2


def test_report_is_rewritten_from_the_directory(matrix):
    (matrix / "results.md").unlink()
    write_report(matrix)
    assert "| poisson1d | `adam` |" in (matrix / "results.md").read_text()
    with open(matrix / "error_vs_time.csv", newline="") as f:
        points = list(csv.DictReader(f))
    evaluated = 0
    for history in matrix.glob("runs/*/*/seed*/history.csv"):
        with open(history, newline="") as f:
            evaluated += sum(1 for row in csv.DictReader(f) if row["rel_l2"])
    assert len(points) == evaluated > 8
    # Adam evaluates every 10 steps of 30, then once more at the end
    first = [p for p in points if p["problem"] == "heat1d" and p["optimizer"] == "adam"]
    assert [int(p["step"]) for p in first] == [0, 10, 20, 30] * 2
    assert all(float(p["time"]) > 0 and math.isfinite(float(p["rel_l2"])) for p in first)


def test_one_line_per_run_and_config_base(tmp_path, capsys):
    cfg = tmp_path / "base.toml"
    cfg.write_text('[problem]\nname = "poisson1d"\n[optim]\noptimizer = "lbfgs"\n'
                   "[model]\nwidth = 5\n[training]\nsteps = 7\n")  # fmt: skip
    out = tmp_path / "b"
    code, stdout, _ = run(capsys, "bench", "--config", str(cfg), "--depth", "1", "--quiet",
                          "--threads", "1", "--out", str(out))  # fmt: skip
    assert code == 0
    assert "[1/1] poisson1d lbfgs seed 0: rel_l2" in stdout
    with open(out / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    # the file's problem, optimizer, width and steps; the flag's depth
    assert (row["problem"], row["optimizer"], row["width"], row["depth"]) == (
        "poisson1d", "lbfgs", "5", "1",
    )  # fmt: skip
    assert int(row["steps"]) <= 7


def test_spread_values():
    argv = ["bench", "--optimizers", "gn", "adam:5,lbfgs", "--seeds", "2", "--problems=a", "b"]
    assert spread_values(argv) == ["bench", "--optimizers", "gn", "--optimizers",
                                   "adam:5,lbfgs", "--seeds", "2", "--problems=a",
                                   "--problems", "b"]  # fmt: skip
    assert spread_values(["solve", "poisson1d", "--optimizer", "adam"]) == [
        "solve", "poisson1d", "--optimizer", "adam",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--problems", "poisson9d"], "--problems: unknown problem 'poisson9d'; allowed:"),
        (["--problems", "poisson1d,nope"], "--problems: unknown problem 'nope'"),
        (["--optimizers", "adamx"], "--optimizers: unknown optimizer 'adamx'"),
        (["--optimizers", "adam,lbfgs"], "every stage but the last needs a step count"),
        (["--optimizers", "adam", "adam"], "--optimizers: given more than once: adam"),
        (["--seeds", "0"], "--seeds: must be >= 1, got 0"),
        (["--time-limit", "-1"], "training.time_limit: Input should be greater than 0"),
        (["--width", "0"], "model.width: Input should be greater than or equal to 1"),
        (["--model", "resnet"], "model.kind: unknown model 'resnet'; allowed: chebykan, mlp"),
        (["--config", "/no/such.toml"], "config file not found"),
        (["--seeds", "two"], "Invalid value for '--seeds'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "b"
    code, _, err = run(capsys, "bench", "--problems", "poisson1d", "--optimizers", "adam",
                       "--out", str(out), *args)  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert not out.exists()  # validated before any run


def test_bad_problem_params_fail_before_any_run(tmp_path, capsys):
    cfg = tmp_path / "base.toml"
    cfg.write_text("[problem]\npoints = { ic = 10 }\n")  # heat1d has ic, poisson1d has not
    out = tmp_path / "b"
    code, _, err = run(capsys, "bench", "--config", str(cfg), "--problems", "heat1d",
                       "poisson1d", "--optimizers", "adam", "--out", str(out))  # fmt: skip
    assert code == 2 and "problem.points: unknown term(s) ['ic'] for poisson1d" in err
    assert not out.exists()


def test_a_run_that_raises_is_recorded_and_the_matrix_goes_on(tmp_path, capsys, monkeypatch):
    import pinnopt.bench.runner as runner

    real_solve = runner.solve

    def flaky(config, **options):
        if config.training.seed == 0:
            raise RuntimeError("out of memory")
        return real_solve(config, **options)

    monkeypatch.setattr(runner, "solve", flaky)
    out = tmp_path / "b"
    code, stdout, _ = run(capsys, "bench", "--problems", "poisson1d", "--optimizers", "adam",
                          "--seeds", "2", "--steps", "5", "--out", str(out), *TINY[:4],
                          "--quiet")  # fmt: skip
    assert code == 0
    assert "[1/2] poisson1d adam seed 0: error (RuntimeError: out of memory)" in stdout
    assert "[2/2] poisson1d adam seed 1: rel_l2" in stdout
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["error", "completed"]
    assert rows[0]["rel_l2"] == "nan" and rows[0]["n_params"] == ""
    assert "out of memory" in (out / "runs/poisson1d/adam/seed0/error.txt").read_text()
    line = next(x for x in (out / "results.md").read_text().splitlines() if "| poisson1d" in x)
    assert line.endswith("| error, completed |")
    assert f"| {float(rows[1]['rel_l2']):.2e} |" in line  # the median of the finished seed


def test_slug_of_a_learned_optimizer_path_is_one_directory(tmp_path):
    from torch import nn

    from pinnopt.learned import MetaOptimizer, MetaOptimizerConfig

    rule = tmp_path / "m" / "optimizer.pt"
    rule.parent.mkdir()
    MetaOptimizer(nn.Linear(2, 1), MetaOptimizerConfig(method="l2o")).save(rule)
    name = slug(f"adam:3,l2o:{rule}")
    assert "/" not in name and name.startswith("adam-3+l2o-") and name.endswith("_m_optimizer.pt")


def test_error_vs_time_marks_each_evaluation_point(tmp_path, saved_figures):
    from pinnopt.bench.plot import Curve, plot_error_vs_time

    one = Curve("poisson1d", "gn", 0, [0, 10, 20], [0.1, 0.5, 2.0], [1.0, 1e-3, 1e-6])
    seeds = [Curve("poisson1d", "adam", s, [0, 10, 20], [0.1, 0.5 + s, 3.0], [1.0, 0.1, 0.01])
             for s in (0, 1)]  # fmt: skip
    plot_error_vs_time([one, *seeds], tmp_path / "error_vs_time.png")
    (fig,) = saved_figures
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata())]
    by_x = {tuple(ln.get_xdata()): ln for ln in lines}
    for c in [one, *seeds]:  # every run's evaluations are drawn as markers
        line = by_x[tuple(c.time)]
        assert line.get_marker() not in ("", "None", " ", None)
        assert list(line.get_ydata()) == c.rel_l2
    (median,) = [ln for ln in lines if ln.get_label() == "adam (median)"]
    assert len(median.get_xdata()) == 200 and median.get_marker() == "None"  # interpolated

import json

import pytest

from pinnopt.cli import main

FAST = ["--width", "8", "--depth", "1", "--quiet"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "solve", "poisson1d", "--optimizer", "adam:20,lbfgs",
                          "--steps", "60", "--out", str(out), *FAST)  # fmt: skip
    assert code == 0
    assert "rel_l2" in stdout and str(out) in stdout
    for name in ["config.toml", "metrics.json", "history.csv", "loss.png", "solution.png",
                 "checkpoint.pt"]:  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["problem", "optimizer", "steps", "wall_time_s", "final_loss", "rel_l2",
                "max_abs_error"]:  # fmt: skip
        assert key in metrics
    assert metrics["problem"] == "poisson1d" and metrics["steps"] == 60
    assert metrics["rel_l2"] < 0.5
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["step", "time", "stage", "lr", "loss"]
    assert {"loss_pde", "loss_bc", "rel_l2"} <= set(header)


def test_resume_continues_to_the_same_result(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["solve", "poisson1d", "--optimizer", "adam:20,lbfgs", *FAST]
    assert run(capsys, *common, "--steps", "60", "--out", str(a))[0] == 0
    assert run(capsys, *common, "--steps", "40", "--out", str(b))[0] == 0
    assert run(capsys, "solve", "--resume", str(b), "--steps", "60", "--quiet")[0] == 0
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert mb["steps"] == 60
    assert mb["final_loss"] == ma["final_loss"]
    assert mb["rel_l2"] == ma["rel_l2"]


def test_config_file_and_list(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[problem]\nname = "heat1d"\npoints = { pde = 64, bc = 16, ic = 16 }\n'
        '[model]\nkind = "chebykan"\nwidth = 4\ndepth = 1\ndegree = 3\n'
        '[optim]\noptimizer = "adam"\nscheduler = "cosine"\n'
        f'[training]\nsteps = 5\n[output]\nout = "{tmp_path / "r"}"\nquiet = true\n'
    )
    code, _, _ = run(capsys, "solve", "--config", str(cfg))
    assert code == 0
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["model"] == "chebykan"
    code, stdout, _ = run(capsys, "list")
    assert code == 0
    for word in ["poisson5d", "burgers1d", "lbfgs", "adam", "chebykan", "warmup_cosine"]:
        assert word in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "poisson9d"], "problem.name: unknown problem 'poisson9d'; allowed:"),
        (["solve", "poisson1d", "--optimizer", "adamx"], "unknown optimizer 'adamx'"),
        (["solve", "poisson1d", "--steps", "-3"], "training.steps: Input should be greater"),
        (["solve", "poisson1d", "--steps", "many"], "Invalid value for '--steps'"),
        (["solve", "poisson1d", "--dtype", "half"], "training.dtype"),
        (["solve", "poisson1d", "--colour", "red"], "No such option: --colour"),
        (["solve", "--config", "/no/such.toml"], "config file not found"),
        (["solve", "--resume", "/no/such/run"], "--resume: no run directory"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_corrupt_checkpoint_and_bad_resume_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "solve", "poisson1d", "--steps", "5", "--out", str(out), *FAST)[0] == 0
    code, _, err = run(capsys, "solve", "--resume", str(out), "--width", "9")
    assert code == 2 and "only --steps, --time-limit and --quiet" in err
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "solve", "--resume", str(out), "--quiet")
    assert code == 2 and "corrupt checkpoint" in err and len(err.strip().splitlines()) == 1
    (out / "config.toml").write_text('[model]\nwidth = 9\n[problem]\nname = "poisson1d"\n')
    code, _, err = run(capsys, "solve", "--resume", str(out), "--quiet")
    assert code == 2 and "error:" in err

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


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[optim]\noptimizer = "adam:2,gn"\noptions = { gn = { solvr = "cg" } }',
         "optim.options: unknown option(s) ['solvr'] for optimizer gn; allowed: damping, "),
        ('[optim]\noptimizer = "adam"\noptions = { lbfgs = { history_size = 5 } }',
         "optim.options: options for lbfgs, which the chain adam does not use; allowed: adam"),
        ('[optim]\noptimizer = "adam"\nscheduler = "cosine"\nscheduler_options = { x = 1 }',
         "optim.scheduler_options: "),
        ('[training]\nsteps = "100"', "training.steps: Input should be a valid integer"),
    ],
)  # fmt: skip
def test_bad_options_in_a_config_file_name_their_field(tmp_path, capsys, toml, message):
    path = tmp_path / "c.toml"
    path.write_text('[problem]\nname = "poisson1d"\n' + toml + "\n")
    code, _, err = run(capsys, "solve", "--config", str(path), "--out", str(tmp_path / "r"))
    assert code == 2
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()  # refused before anything ran


def test_a_stage_the_budget_never_reaches_is_said(tmp_path, capsys):
    code, _, err = run(capsys, "solve", "poisson1d", "--optimizer", "adam:10,lbfgs", "--steps",
                       "5", "--out", str(tmp_path / "r"), *FAST)  # fmt: skip
    assert code == 0
    assert err.strip() == (
        "warning: the step budget of 5 steps ends before stage(s) lbfgs of the chain "
        "adam:10,lbfgs: they will not run (raise steps to reach them)"
    )


def test_trailing_colon_in_a_chain_is_refused(capsys):
    code, _, err = run(capsys, "solve", "poisson1d", "--optimizer", "adam:100,lbfgs:")
    assert code == 2 and "empty step count after 'lbfgs:'" in err


def test_version_and_a_bare_solve(capsys):
    from importlib.metadata import version

    code, stdout, _ = run(capsys, "--version")
    assert code == 0 and stdout.strip() == f"pinnopt {version('pinnopt')}"
    code, stdout, err = run(capsys, "solve")  # no problem: usage, not a default run
    assert code == 2
    assert stdout.startswith("Usage: pinnopt solve")
    assert err.strip() == (
        "error: PROBLEM: missing; e.g. `pinnopt solve poisson2d` (see `pinnopt list`)"
    )


def test_summary_lines_are_not_broken_at_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "a_long_folder_name_for_the_run"
    code, stdout, _ = run(capsys, "solve", "poisson1d", "--optimizer", "adam", "--steps", "3",
                          "--out", str(out), *FAST)  # fmt: skip
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 3, stdout  # start, result, run directory
    assert lines[1].startswith("poisson1d with adam: rel_l2 = ") and lines[1].endswith(
        "(completed)"
    )


def test_threads_flag_sets_torch_threads(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        code, stdout, _ = run(capsys, "solve", "poisson1d", "--optimizer", "adam", "--steps", "2",
                              "--threads", "1", "--out", str(tmp_path / "r"), *FAST)  # fmt: skip
        assert code == 0 and "1 thread)" in stdout.splitlines()[0]
        assert torch.get_num_threads() == 1
        assert "threads = 1" in (tmp_path / "r" / "config.toml").read_text()
    finally:
        torch.set_num_threads(before)


def test_corrupt_checkpoint_and_bad_resume_flags(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["solve", "poisson1d", "--optimizer", "adam", "--steps", "5", "--out", str(out)]
    assert run(capsys, *args, *FAST)[0] == 0
    code, _, err = run(capsys, "solve", "--resume", str(out), "--width", "9")
    assert code == 2 and "only --steps, --time-limit, --threads and --quiet" in err
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "solve", "--resume", str(out), "--quiet")
    assert code == 2 and "corrupt checkpoint" in err and len(err.strip().splitlines()) == 1
    (out / "config.toml").write_text('[model]\nwidth = 9\n[problem]\nname = "poisson1d"\n')
    code, _, err = run(capsys, "solve", "--resume", str(out), "--quiet")
    assert code == 2 and "error:" in err

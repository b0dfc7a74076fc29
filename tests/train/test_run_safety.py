"""A run keeps what it did: output folders are not overwritten, Ctrl-C and SIGTERM leave a
resumable run directory, and a run killed at any moment (even while writing its
checkpoint) resumes to the same parameters as a run that was never stopped."""

import json
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pinnopt.cli import main
from pinnopt.train import load_checkpoint

# a small run: about a millisecond a step, a checkpoint every 10 steps
CONFIG = """
[problem]
name = "poisson1d"
points = { pde = 32, bc = 2 }

[model]
width = 8
depth = 1

[optim]
optimizer = "adam"
lr = 0.01

[training]
steps = STEPS
checkpoint_every = 10
eval_every = 50
threads = 1

[output]
quiet = true
"""


def write_config(folder: Path, steps: int) -> Path:
    path = folder / "run.toml"
    path.write_text(CONFIG.replace("STEPS", str(steps)))
    return path


def solve_process(config: Path, out: Path, prelude: str = "") -> subprocess.Popen:
    """``pinnopt solve --config CONFIG --out OUT`` in a new Python process; ``prelude`` runs
    first (to inject a fault)."""
    code = prelude + "\nimport sys\nfrom pinnopt.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "solve", "--config", str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until ``path`` exists (the run has started); fails if the process ends first."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def final_parameters(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoint.pt")["model"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_out_holding_a_run_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["solve", "poisson1d", "--optimizer", "adam", "--steps", "5", "--width", "4",
            "--depth", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert run(capsys, *args)[0] == 0
    before = (out / "metrics.json").read_text()
    code, _, err = run(capsys, *args[:-3], "--steps", "7", "--out", str(out))
    assert code == 2
    assert err.strip() == (f"error: output.out: {out} already holds a run; choose another "
                           "folder, resume it, or overwrite it (--overwrite)")  # fmt: skip
    assert (out / "metrics.json").read_text() == before
    (out / "notes.txt").write_text("mine")
    code, _, _ = run(capsys, *args[:-3], "--steps", "7", "--out", str(out), "--overwrite")
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 7
    assert (out / "notes.txt").read_text() == "mine"  # only a run's own files are replaced


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--optimizer", "bfgs", "--width", "110", "--depth", "2"],
            "optim.options.bfgs: .* exceed",
        ),
        (["--causal", "1"], "causal.method: problem 'poisson1d' has no time axis"),
        (["--sampling", "rand"], "sampling.method: unknown method 'rand'"),
    ],
)
def test_an_overwrite_refused_for_bad_input_keeps_the_old_run(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    args = ["solve", "poisson1d", "--steps", "3", "--quiet", "--out", str(out)]
    assert run(capsys, *args, "--optimizer", "adam", "--width", "4", "--depth", "1")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, *args, *flags, "--overwrite")
    assert code == 2
    assert re.fullmatch(f"error: {message}.*", err.strip())
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_default_run_directory_is_new_for_every_run_and_said_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["solve", "poisson1d", "--optimizer", "adam", "--steps", "3", "--width", "4",
            "--depth", "1", "--quiet"]  # fmt: skip
    for n in (1, 2):
        code, stdout, _ = run(capsys, *args)
        assert code == 0
        first = stdout.splitlines()[0]
        assert first.startswith("solving poisson1d with adam (mlp 4x1, 3 steps, float64")
        assert first.endswith(f"in runs/poisson1d-{n}")
        assert (tmp_path / "runs" / f"poisson1d-{n}" / "metrics.json").is_file()


def test_next_run_dir_counts_on_from_the_largest_number(tmp_path):
    from pinnopt.train.run_directory import next_run_dir

    assert next_run_dir(tmp_path, "heat1d") == tmp_path / "heat1d-1"
    for name in ("heat1d-1", "heat1d-7", "heat1d-x", "heat1d-2-old", "poisson1d-9"):
        (tmp_path / name).mkdir()
    assert next_run_dir(tmp_path, "heat1d") == tmp_path / "heat1d-8"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_before_the_first_periodic_checkpoint_leaves_a_resumable_run(tmp_path, sig, code):
    config = write_config(tmp_path, 10**6)
    config.write_text(
        config.read_text().replace("checkpoint_every = 10", "checkpoint_every = 10000000")
    )
    out = tmp_path / "run"
    proc = solve_process(config, out)
    wait_for(out / "checkpoint.pt", proc)  # written before the first step
    time.sleep(0.5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted: resume with" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert metrics["signal"] == signal.Signals(sig).name
    for name in ("history.csv", "loss.png", "solution.png", "config.toml"):
        assert (out / name).is_file(), name
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == metrics["steps"] > 0  # the state where the run stopped
    assert torch.equal(
        torch.cat([v.flatten() for v in state["model"].values()]),
        torch.cat([v.flatten() for v in final_parameters(out).values()]),
    )


# Faults injected inside a run's process: killed (SIGKILL, so no handler runs) while
# the temporary checkpoint is half written, or after it is written but before the
# rename that replaces the last checkpoint.
KILL_DURING_WRITE = textwrap.dedent("""
    import os, signal, torch
    import pinnopt.train.checkpoint as ckpt
    real_save, calls = torch.save, []
    def save(obj, f):
        calls.append(1)
        if len(calls) == 4:  # the fourth checkpoint: half of it, then killed
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(obj, f)
    ckpt.torch.save = save
""")
KILL_BEFORE_RENAME = textwrap.dedent("""
    import os, signal
    import pinnopt.train.checkpoint as ckpt
    real_replace, calls = os.replace, []
    def replace(src, dst):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
    ckpt.os.replace = replace
""")


def test_killed_runs_resume_to_the_parameters_of_an_uninterrupted_run(tmp_path, capsys):
    steps = 600
    config = write_config(tmp_path, steps)
    reference = tmp_path / "reference"
    assert run(capsys, "solve", "--config", str(config), "--out", str(reference))[0] == 0
    expected = final_parameters(reference)
    rng = random.Random(20)
    faults = [("write", KILL_DURING_WRITE), ("rename", KILL_BEFORE_RENAME)]
    faults.append(("at random", ""))  # SIGKILL at a random moment
    for label, prelude in faults:
        out = tmp_path / label.replace(" ", "_")
        proc = solve_process(config, out, prelude)
        if not prelude:  # SIGKILL at a random moment once the run has started
            wait_for(out / "checkpoint.pt", proc)
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, label
        state = load_checkpoint(out / "checkpoint.pt")  # loadable, whatever was cut short
        assert 0 <= state["step"] < steps, label
        code, _, err = run(capsys, "solve", "--resume", str(out))
        assert code == 0, (label, err)
        assert not list(out.glob("*.tmp")), label  # the killed write's leftovers are gone
        got = final_parameters(out)
        assert all(torch.equal(got[k], expected[k]) for k in expected), label
        assert json.loads((out / "metrics.json").read_text())["steps"] == steps


def test_resume_with_nothing_left_to_do_is_refused(tmp_path, capsys):
    config = write_config(tmp_path, 20)
    out = tmp_path / "run"
    assert run(capsys, "solve", "--config", str(config), "--out", str(out))[0] == 0
    for steps in ("10", "20"):
        code, _, err = run(capsys, "solve", "--resume", str(out), "--steps", steps)
        assert code == 2
        assert f"the run in {out} already did 20 steps and used its budget" in err
    assert run(capsys, "solve", "--resume", str(out), "--steps", "30")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30


def test_fit_puts_back_the_signal_handlers_it_found(tmp_path):
    from pinnopt.config import make_config
    from pinnopt.solve import build_trainer

    def mine(signum, frame):
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        cfg = make_config({"problem": {"name": "poisson1d"}, "model": {"width": 4, "depth": 1},
                           "optim": {"optimizer": "adam"}, "training": {"steps": 2},
                           "output": {"quiet": True}})  # fmt: skip
        assert build_trainer(cfg).fit().status == "completed"
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


SCRIPT = textwrap.dedent("""
    import sys
    from pinnopt.config import load_config
    from pinnopt.solve import build_trainer

    config = load_config(sys.argv[1])
    result = build_trainer(config, sys.argv[2]).fit()
    print("after fit:", result.status)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_script_saves_its_run_then_ends_as_the_signal_ends_it(tmp_path, sig):
    config = write_config(tmp_path, 10**6)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(config), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(out / "checkpoint.pt", proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert "after fit" not in stdout  # the script does not go on as if nothing happened
    assert proc.returncode == -sig  # Python ends on an uncaught KeyboardInterrupt by SIGINT
    assert ("KeyboardInterrupt" in stderr) == (sig == signal.SIGINT)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["signal"] == signal.Signals(sig).name
    assert load_checkpoint(out / "checkpoint.pt")["step"] == metrics["steps"]

"""`pinnopt blowup`: the time limit, Ctrl-C/SIGTERM, the files it names, bad flags."""

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import pytest

from pinnopt.blowup.plots import funnel_figure
from pinnopt.blowup.run import load_profile
from pinnopt.cli import main

TINY = ["--degree", "12", "--points", "30", "--max-steps", "15", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def listed_files(stdout: str) -> list[str]:
    """The file names of the summary's ``run directory: DIR  (a, b, …)`` line."""
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("run directory: ")]
    return line[line.index("(") + 1 : line.rindex(")")].split(", ")


def test_time_limit_flag_ends_the_run_with_status_time_limit(tmp_path, capsys):
    out = tmp_path / "b"
    code, stdout, _ = run_cli(capsys, "blowup", "burgers", "--time-limit", "1e-6",
                              "--out", str(out), *TINY)  # fmt: skip
    assert code == 0 and "(time_limit)" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "time_limit" and m["steps"] == 0 and m["lambda"] == m["lambda0"]
    assert load_profile(out).lam.item() == m["lambda"]


def test_without_a_scan_no_funnel_is_written_and_the_summary_names_every_file(tmp_path, capsys):
    out = tmp_path / "b"
    code, stdout, _ = run_cli(capsys, "blowup", "burgers", "--out", str(out), *TINY)
    assert code == 0
    assert not (out / "funnel.png").exists() and not (out / "funnel.csv").exists()
    names = ["profile.pt", "history.csv", "profile.png", "residual.png", "metrics.json"]
    assert sorted(listed_files(stdout)) == sorted(os.listdir(out)) == sorted(names)
    assert json.loads((out / "metrics.json").read_text())["files"] == listed_files(stdout)


SCAN3 = [-0.1, -0.01, -1e-3, 1e-3, 0.01, 0.1]  # (λ − λ_found)/λ_found of --funnel-scan 3


@pytest.mark.parametrize(
    ("trainings", "exact"),
    [
        (SCAN3 + [-0.08, -0.05, -1e-4, -1e-5, 6e-6], 1.3e-10),  # docs/img/blowup_funnel_order2
        (SCAN3, -2.2e-16),  # λ found to rounding: 15 decades on each side
        ([-0.1, 0.1], 1.7e-5),
    ],
)
def test_funnel_tick_labels_do_not_overlap(trainings, exact):
    lam = 0.25
    funnel = [{"lambda": lam * (1 + d), "rms": 1e-4, "signed": -d, "kind": "scan"}
              for d in trainings]  # fmt: skip
    funnel.append({"lambda": lam, "rms": 1e-12, "signed": 0.0, "kind": "found"})
    fig = funnel_figure(funnel, lam, lam * (1 + exact))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        labels = [t for t in ax.get_xticklabels()
                  if t.get_text() and lo <= t.get_position()[0] <= hi]  # fmt: skip
        assert len(labels) >= 3  # 0 and at least one decade on each side
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
            assert not box_a.overlaps(box_b), (a, b)
    plt.close(fig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_and_leaves_its_run_directory(tmp_path, sig):
    out = tmp_path / "b"
    # a run of about 10 s after its imports (the funnel scan alone is 20 fixed-λ trainings)
    args = ["blowup", "burgers", "--degree", "40", "--points", "100", "--max-steps", "200",
            "--funnel-scan", "10", "--threads", "1", "--quiet", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "pinnopt.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "profile.pt").exists():  # the first checkpoint: the run has begun
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["steps"] < 200
    assert "(interrupted)" in stdout and sorted(listed_files(stdout)) == sorted(os.listdir(out))
    assert load_profile(out).lam.item() == m["lambda"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["kind"] == "start" and int(rows[-1]["step"]) <= m["steps"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kdv"], "equation: unknown 'kdv'; allowed: burgers, ccf"),
        (["ccf", "--order", "3"], "--order: order 3 is beyond what ccf supports (0 … 2)"),
        (["ccf", "--lambda-mode", "projection"],
         "--lambda-mode: unknown 'projection' for ccf; allowed: trainable, funnel, branch"),
        (["ccf", "--bracket", "1.5", "0.3"], "--bracket: must be two numbers 0 < LO < HI"),
        (["ccf", "--lambda-mode", "trainable"], "--lambda0: trainable mode needs a starting λ"),
        (["ccf", "--degree", "2"], "--degree: must be an integer >= 3, got 2"),
        (["burgers", "--lambda-mode", "projected"],
         "--lambda-mode: unknown 'projected'; allowed: trainable, projection, funnel"),
        (["burgers", "--order", "-1"], "--order: must be an integer >= 0, got -1"),
        (["burgers", "--degree", "0"], "--degree: must be an integer >= 1, got 0"),
        (["burgers", "--degree", "50", "--points", "20"], "--points: must exceed --degree (50)"),
        (["burgers", "--max-steps", "0"], "--max-steps: must be an integer >= 1, got 0"),
        (["burgers", "--time-limit", "0"], "--time-limit: must be > 0 seconds, got 0.0"),
        (["burgers", "--time-limit", "-3"], "--time-limit: must be > 0 seconds, got -3.0"),
        (["burgers", "--funnel-scan", "-1"], "--funnel-scan: must be an integer >= 0, got -1"),
        (["burgers", "--lambda0", "-0.5"], "--lambda0: must be a number > 0, got -0.5"),
        (["burgers", "--lambda0", "nan"], "--lambda0: must be a number > 0, got nan"),
        (["burgers", "--hypernet", "/no/such.pt"], "--hypernet: no file /no/such.pt"),
        (["burgers", "--threads", "-1"], "--threads: must be >= 0, got -1"),
    ],
)  # fmt: skip
def test_bad_flags_are_one_line_exit_2_and_nothing_drawn_or_written(
    args, message, tmp_path, capsys
):
    out = tmp_path / "b"
    code, stdout, err = run_cli(capsys, "blowup", *args, "--out", str(out))
    assert code == 2 and err.startswith(f"error: {message}") and len(err.splitlines()) == 1, err
    assert stdout == "" and not out.exists()  # no progress bar, no run directory


def test_a_file_that_is_no_hypernet_is_named(tmp_path, capsys):
    (tmp_path / "h.pt").write_bytes(b"no")
    code, stdout, err = run_cli(capsys, "blowup", "burgers", "--hypernet",
                                str(tmp_path / "h.pt"), "--out", str(tmp_path / "b"))  # fmt: skip
    assert code == 2 and err.startswith("error: --hypernet: ") and "not a LambdaHyperNet" in err
    assert stdout == "" and not (tmp_path / "b").exists()


def test_an_out_folder_holding_a_run_is_refused_unless_overwrite(tmp_path, capsys, monkeypatch):
    out = tmp_path / "b"
    assert run_cli(capsys, "blowup", "burgers", "--out", str(out), *TINY)[0] == 0
    before = (out / "metrics.json").read_text()
    code, stdout, err = run_cli(capsys, "blowup", "burgers", "--out", str(out), *TINY)
    assert code == 2 and stdout == ""
    assert err.strip() == f"error: --out: {out} already holds a run; choose another folder or " \
                          "overwrite it (--overwrite)"  # fmt: skip
    assert (out / "metrics.json").read_text() == before
    args = ["blowup", "burgers", "--out", str(out), "--order", "1", "--overwrite", *TINY]
    assert run_cli(capsys, *args)[0] == 0
    assert json.loads((out / "metrics.json").read_text())["order"] == 1
    monkeypatch.chdir(tmp_path)  # without --out: a new folder (numbering: test_run_safety.py)
    (tmp_path / "runs" / "blowup-burgers-0-1").mkdir(parents=True)
    code, stdout, _ = run_cli(capsys, "blowup", "burgers", *TINY)
    assert code == 0 and "run directory: runs/blowup-burgers-0-2" in stdout


def test_ccf_bracket_without_a_sign_change_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, err = run_cli(capsys, "blowup", "ccf", "--bracket", "1.3", "1.5", "--degree",
                                "7", "--quiet", "--out", str(out))  # fmt: skip
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --bracket: the bracket [1.3, 1.5] holds 0 resolved sign")
    assert stdout == "" and not out.exists()


def test_ccf_run_writes_the_files_it_names_with_a_stability_count(tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, _ = run_cli(capsys, "blowup", "ccf", "--degree", "7", "--funnel-scan", "1",
                              "--lambda-mode", "trainable", "--lambda0", "1.1", "--quiet",
                              "--out", str(out))  # fmt: skip
    assert code == 0 and stdout.startswith("ccf order 0: λ = 1.18")
    assert sorted(listed_files(stdout)) == sorted(os.listdir(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["equation"] == "ccf" and m["degree"] == 7 and m["stages"][-1]["degree"] == 7
    assert m["stability"]["unstable_modes"] == 0 and m["lambda_digits"] is not None
    assert m["lambda_mode"] == "trainable" and m["lambda0"] == 1.1 and m["sign_changes"] == []

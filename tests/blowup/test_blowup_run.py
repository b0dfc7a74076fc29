"""The λ hypernetwork, the `pinnopt blowup` command and its benchmark's smoke run."""

import csv
import json

import pytest
import torch

from pinnopt.blowup.burgers import burgers_lambda
from pinnopt.blowup.hypernet import LambdaHyperNet
from pinnopt.blowup.profile import find_profile
from pinnopt.blowup.run import load_profile, run_burgers
from pinnopt.cli import main

TINY = ["--degree", "12", "--points", "30", "--max-steps", "15", "--quiet"]


def test_hypernet_extrapolates_an_inverse_rate_that_grows_linearly():
    orders = [0, 1, 2, 3]
    net = LambdaHyperNet(seed=1)
    misfit = net.fit(orders, [burgers_lambda(n) for n in orders])
    assert misfit < 1e-6
    for n in (4, 5):
        assert net.predict(n) == pytest.approx(burgers_lambda(n), rel=1e-3)


def test_hypernet_bends_where_the_data_bend():
    # 1/λ = 2 + n + n²/4: the linear part alone misses order 4 by 1.5/8.5 ≈ 18 %
    orders = [0, 1, 2, 3, 4, 5]
    net = LambdaHyperNet(seed=0)
    net.fit(orders, [1 / (2 + n + n * n / 4) for n in orders], ridge=1e-8)
    assert 1 / net.predict(3) == pytest.approx(2 + 3 + 9 / 4, rel=1e-2)


def test_hypernet_saves_loads_and_names_bad_input(tmp_path):
    net = LambdaHyperNet(width=8, depth=1)
    net.fit([0, 1, 2], [0.5, 0.25, 1 / 6])
    net.save(tmp_path / "h.pt")
    again = LambdaHyperNet.load(tmp_path / "h.pt")
    assert again.predict(7) == net.predict(7)
    (tmp_path / "bad.pt").write_bytes(b"no")
    with pytest.raises(ValueError, match="not a LambdaHyperNet file"):
        LambdaHyperNet.load(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="need at least 2"):
        net.fit([0], [0.5])
    with pytest.raises(ValueError, match="lambdas must be > 0"):
        net.fit([0, 1], [0.5, -1.0])
    with pytest.raises(ValueError, match="width must be"):
        LambdaHyperNet(width=0)


def test_funnel_scan_after_trainable_holds_lambda_fixed():
    result = find_profile(0, 0.48, "trainable", degree=12, points=30, max_steps=15,
                          funnel_scan=1, funnel_steps=8)  # fmt: skip
    kinds = [f["kind"] for f in result.funnel]
    assert kinds == ["found", "scan", "scan"]
    found, below, above = result.funnel
    assert below["lambda"] == pytest.approx(0.9 * result.lam, rel=1e-14)
    assert above["lambda"] == pytest.approx(1.1 * result.lam, rel=1e-14)
    assert min(below["rms"], above["rms"]) > 10 * found["rms"]
    assert below["signed"] > 0 > above["signed"]  # both ask to move back towards λ found
    assert abs(found["signed"]) < 1e-3 * abs(below["signed"])


def test_should_stop_ends_the_search_before_the_next_step():
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 3

    result = find_profile(0, 0.475, "trainable", degree=12, points=30, max_steps=15,
                          funnel_scan=1, should_stop=stop)  # fmt: skip
    assert result.status == "interrupted" and result.steps == 3 and len(polls) == 4
    assert [h["kind"] for h in result.history] == ["start", "step", "step", "step"]
    assert [f["kind"] for f in result.funnel] == ["found"]  # no scan after a stop
    assert result.lam == result.history[-1]["lambda"] == result.model.lam.item()
    assert result.metrics()["status"] == "interrupted"


def test_time_limit_ends_the_search_with_status_time_limit():
    result = find_profile(0, 0.475, "trainable", degree=12, points=30, max_steps=15,
                          funnel_scan=1, time_limit=1e-9)  # fmt: skip
    assert result.status == "time_limit" and result.steps == 0 and result.lam == 0.475
    assert [f["kind"] for f in result.funnel] == ["found"]
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        find_profile(0, 0.475, time_limit=0.0)


def test_a_stopped_funnel_search_keeps_its_best_fixed_lambda_training():
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 12

    result = find_profile(0, 0.46, "funnel", degree=12, points=30, funnel_steps=4,
                          funnel_scan=1, max_steps=300, should_stop=stop)  # fmt: skip
    assert result.status == "interrupted"
    trainings = [f for f in result.funnel if f["kind"] == "funnel"]
    assert len(trainings) >= 2 and result.funnel[-1]["kind"] == "found"
    assert not [f for f in result.funnel if f["kind"] == "scan"]
    best = min(trainings, key=lambda f: abs(f["signed"]))
    assert result.lam == best["lambda"]  # its trained profile, not the bare ansatz at λ0
    assert result.funnel[-1]["rms"] == pytest.approx(best["rms"], rel=1e-9)


def test_profile_pt_is_a_checkpoint_while_the_run_goes_on(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # an earlier run's files must go
    (out / "funnel.png").write_bytes(b"old")
    seen = []

    def poll() -> bool:  # called before each Gauss–Newton step
        seen.append((load_profile(out).lam.item(), (out / "metrics.json").exists()))
        return False

    m = run_burgers(0, out, quiet=True, degree=12, points=30, max_steps=7, checkpoint_every=3,
                    should_stop=poll)  # fmt: skip
    with open(out / "history.csv") as f:
        lam = [float(row["lambda"]) for row in csv.DictReader(f)]  # row k: after step k
    assert len(seen) == m["steps"] == 7
    # before step k + 1 the file holds the state after step 3 ⌊k/3⌋: at the start, 3, 6
    assert [s[0] for s in seen] == [lam[3 * (k // 3)] for k in range(7)]
    assert not any(s[1] for s in seen)  # metrics.json only once the run is complete
    assert m["status"] == "completed" and not (out / "funnel.png").exists()
    assert load_profile(out).lam.item() == m["lambda"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_blowup_command_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "b"
    code, stdout, _ = run_cli(capsys, "blowup", "burgers", "--order", "0", "--funnel-scan", "1",
                              "--out", str(out), *TINY)  # fmt: skip
    assert code == 0 and "burgers order 0: λ = " in stdout
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("run directory: ")]
    listed = line[line.index("(") + 1 : line.rindex(")")].split(", ")
    assert len(listed) == 7 and sorted(listed) == sorted(p.name for p in out.iterdir())
    m = json.loads((out / "metrics.json").read_text())
    for key in ("lambda", "lambda_exact", "lambda_rel_error", "max_residual",
                "profile_max_error", "seconds", "lambda0_source"):  # fmt: skip
        assert key in m
    assert m["lambda0"] == pytest.approx(0.475) and m["lambda_exact"] == 0.5
    assert m["lambda_rel_error"] < 1e-3  # degree 12, 15 steps
    for name in ("history.csv", "funnel.csv", "profile.png", "residual.png", "funnel.png"):
        assert (out / name).stat().st_size > 0
    model = load_profile(out)
    assert model.lam.item() == m["lambda"]
    y = torch.linspace(-3, 3, 7, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(model.profile(-y), -model.profile(y), atol=1e-15, rtol=0)


def test_blowup_command_starts_from_a_hypernet(tmp_path, capsys):
    net = LambdaHyperNet()
    net.fit([0, 1], [0.5, 0.25])
    net.save(tmp_path / "h.pt")
    out = tmp_path / "b"
    code, _, _ = run_cli(capsys, "blowup", "burgers", "--order", "1", "--hypernet",
                         str(tmp_path / "h.pt"), "--out", str(out), *TINY)  # fmt: skip
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["lambda0"] == pytest.approx(net.predict(1)) and m["lambda0_source"].startswith("hyp")


def test_blowup_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("blowup_burgers")
    results = module.main(["--smoke", "--out", str(tmp_path)])
    assert [m["order"] for m in results["found"]] == [0, 1]
    (pred,) = results["predicted"]
    assert pred["order"] == 2 and pred["prediction_error"] < 0.05
    text = (tmp_path / "results.md").read_text()
    assert "| 0 | trainable |" in text and "| 2 | 0.16" in text
    assert (tmp_path / "hypernet.pt").is_file()
    assert (tmp_path / "runs" / "order2_from_hypernet" / "profile.png").is_file()

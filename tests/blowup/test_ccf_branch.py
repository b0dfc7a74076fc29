"""The CCF branch solver (pinnopt.blowup.ccf_branch): its quadrature, and the profiles it
finds against the analytic series'."""

import csv
import json
import os

import pytest
import torch

from pinnopt.blowup.branch_run import branch_summary, run_branch
from pinnopt.blowup.ccf_branch import BranchError, LogGrid, find_branch_profile
from pinnopt.blowup.quadrature_check import ccf_residual_by_quadrature, quadrature_points
from pinnopt.cli import main

SMALL = (-10.0, 30.0)  # the grids' x = log y range: 3x faster than the default, as accurate


def test_velocity_of_a_known_hilbert_pair():
    # Ω = −y/(1+y²) has HΩ = 1/(1+y²), so U = ∫_0^y HΩ = arctan y (and Ω ~ −1/y: a = 1)
    grid = LogGrid(h=0.1)
    omega = -grid.y / (1 + grid.y**2)
    u = grid.velocity(omega * grid.y, torch.tensor(1.0, dtype=torch.float64))
    assert (u - torch.atan(grid.y)).abs().max() < 2e-5


@pytest.fixture(scope="module")
def stable():
    return find_branch_profile(0, bracket=(1.0, 1.5), h=(0.2, 0.1), x_range=SMALL)


def test_branch_finds_the_profile_the_series_finds(stable, ccf):
    _, series = ccf  # the analytic series, trainable λ (test_blowup_series.py)
    assert stable.lam == pytest.approx(series.lam, rel=1e-3)
    assert stable.digits >= 3
    assert stable.residual < 1e-9
    # the profile keeps one sign and has Ω'(0) = −1 after the dilation
    assert (stable.omega < 0).all()
    assert float(stable.omega[0] / stable.y[0]) == pytest.approx(-1.0, rel=1e-9)


def test_quadrature_check_passes_the_profile_and_fails_a_wrong_lambda(stable):
    points = quadrature_points(stable.y, stable.omega)
    right = ccf_residual_by_quadrature(stable.y, stable.omega, stable.lam, points)
    wrong = ccf_residual_by_quadrature(stable.y, stable.omega, 1.02 * stable.lam, points)
    assert max(r["relative"] for r in right) < 1e-3
    assert max(r["relative"] for r in wrong) > 10 * max(r["relative"] for r in right)


def test_order_1_run_follows_the_branch_to_its_second_crossing(stable, tmp_path):
    out = tmp_path / "c1"
    m = run_branch("ccf", 1, out, (0.55, 1.5), quiet=True, h=(0.2, 0.1), x_range=SMALL)
    assert branch_summary(m, out).startswith("ccf order 1: λ = 0.6")
    assert m == json.loads((out / "metrics.json").read_text())
    assert m["lambda_mode"] == "branch" and sorted(m["files"]) == sorted(os.listdir(out))
    (lam0, lam1) = m["crossings"]
    assert lam0 == pytest.approx(stable.lam, rel=5e-2) and lam1 < 0.8 * lam0
    assert m["lambda"] == pytest.approx(lam1, rel=5e-2) and m["lambda_digits"] >= 2
    assert m["quadrature_residual"] < 5e-2  # E by scipy quadrature, not by the grid
    with open(out / "profile.csv") as f:
        rows = list(csv.DictReader(f))
    y = torch.tensor([float(r["y"]) for r in rows])
    omega = torch.tensor([float(r["omega"]) for r in rows])
    assert (omega < 0).all() and float(omega[0] / y[0]) == pytest.approx(-1.0, rel=1e-9)
    # a peak much steeper than the slope at the origin, where v nearly stalls; the stable
    # profile has none
    assert (omega / y).min() < -2 and (stable.omega / stable.y).min() > -1.5


def test_a_bracket_with_too_few_crossings_is_refused():
    with pytest.raises(BranchError, match=r"holds 0 crossing\(s\) of γ = 2"):
        find_branch_profile(0, bracket=(1.3, 1.5), h=(0.4, 0.2), follow_h=0.4)


def test_blowup_ccf_unstable_order_goes_to_the_branch_and_reports_a_short_bracket(tmp_path, capsys):
    out = tmp_path / "c2"
    code = main(["blowup", "ccf", "--order", "2", "--bracket", "1.3", "1.5", "--quiet",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --bracket: the bracket [1.3, 1.5] holds 0 crossing(s) of γ = 2")
    assert not out.exists()


def test_a_branch_run_stopped_by_its_time_limit_keeps_the_branch_so_far(tmp_path):
    out = tmp_path / "stopped"
    m = run_branch("ccf", 1, out, quiet=True, time_limit=1.0, h=(0.2, 0.1), x_range=SMALL)
    assert m["status"] == "time_limit" and m["lambda"] is None
    assert m == json.loads((out / "metrics.json").read_text())
    assert sorted(m["files"]) == sorted(os.listdir(out))
    assert "stopped (time_limit)" in branch_summary(m, out)

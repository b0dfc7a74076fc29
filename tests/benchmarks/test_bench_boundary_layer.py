"""Smoke run of benchmarks/boundary_layer.py, and its problem against the exact solution."""

import math

import pytest
import torch


def test_exact_solution_solves_the_problem(load_benchmark):
    module = load_benchmark("boundary_layer")
    eps = 0.01
    exact = module.exact_solution(eps)
    x = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None]
    u = exact(x)
    assert float(u[0]) == 0.0 and abs(float(u[-1])) < 1e-15
    # u' and u'' by hand: −ε u'' + u' = 1
    e = torch.exp((x[:, 0] - 1) / eps) / (1 - math.exp(-1 / eps))
    torch.testing.assert_close(-eps * (-e / eps**2) + (1 - e / eps), torch.ones_like(u))
    # the problem's residuals vanish for a model that is the exact solution
    problem = module.boundary_layer(eps, n_pde=50, grid=True, layer_points=10)
    points = problem.sample(torch.Generator().manual_seed(0))
    assert points["pde"].shape == (60, 1) and (points["pde"][50:] >= 1 - 5 * eps).all()
    torch.testing.assert_close(points["pde"][:3, 0], torch.tensor([0.01, 0.03, 0.05],
                                                                  dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(points["bc"][:, 0].sort().values,
                               torch.tensor([0.0, 1.0], dtype=torch.float64))  # fmt: skip


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. a chain stage that never runs
def test_boundary_layer_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("boundary_layer")
    out = tmp_path / "bl"
    args = ["--smoke", "--variants", "gn", "kfac-grid", "adam-lbfgs", "--seeds", "0", "1",
            "--eval-every", "2", "--out", str(out)]  # fmt: skip
    rows = module.main(args)
    assert [(r["spec"].name, r["seed"]) for r in rows] == [
        ("gn", 0), ("gn", 1), ("kfac, 200 grid points", 0), ("kfac, 200 grid points", 1),
        ("adam:1000,lbfgs", 0), ("adam:1000,lbfgs", 1),
    ]  # fmt: skip
    for r in rows:
        assert r["steps"] <= 6 and r["time"] > 0
        steps = [s for s, _, _ in r["curve"]]
        assert steps[0] == 0 and steps == sorted(steps)
        assert r["rel_l2"] == r["curve"][-1][1] and math.isfinite(r["held_out"])
        assert r["steps_to_threshold"] is None  # 6 steps of a 6-wide net do not resolve it
    assert rows[0]["rel_l2"] != rows[1]["rel_l2"]  # the seeds differ
    text = (out / "boundary_layer.md").read_text()
    assert "python benchmarks/boundary_layer.py --smoke --variants gn kfac-grid" in text
    assert "| gn | 0.01 | 6×1 float64 | 20 random | 0/2 |" in text
    assert text.count("\n| kfac, 200 grid points | ") == 3  # summary + two seeds
    assert (out / "boundary_layer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

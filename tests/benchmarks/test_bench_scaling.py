"""benchmarks/scaling.py: its smoke run goes through `pinnopt solve --nproc 2` (torchrun)."""


def test_scaling_benchmark_smoke_runs_pinnopt_solve_on_two_processes(tmp_path, load_benchmark):
    (row,) = load_benchmark("scaling").main(["--smoke", "--out", str(tmp_path)])
    assert row["processes"] == 2 and row["steps"] == 3 and row["seconds_per_step"] > 0
    run = tmp_path / "runs" / "adam-2" / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.toml", "checkpoint.pt", "metrics.json", "history.csv", "loss.png", "solution.png"]
    )  # written once, by rank 0
    assert "| adam | 2 | 3 |" in (tmp_path / "results.md").read_text()

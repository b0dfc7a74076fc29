def test_objective_change_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("objective_change")
    out = tmp_path / "table.md"
    rows = module.main(["--problem", "poisson1d", "--steps", "6", "--period", "2",
                        "--optimizers", "lbfgs_keep", "ssbroyden_reset", "gn_reset",
                        "--out", str(out)])  # fmt: skip
    assert [r["optimizer"] for r in rows] == ["adam:3,lbfgs_keep", "adam:3,ssbroyden_reset",
                                              "adam:3,gn_reset"]  # fmt: skip
    assert "| poisson1d | gn_reset | resets damping |" in out.read_text()

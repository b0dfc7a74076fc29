def test_weighting_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("weighting")
    out = tmp_path / "table.md"
    args = ["--problems", "poisson1d", "--methods", "fixed", "grad_norm", "--optimizers", "gn"]
    rows = module.main([*args, "--steps", "4", "--period", "2", "--out", str(out)])
    assert [r["weighting"] for r in rows] == ["fixed", "grad_norm"]
    assert all(r["steps"] == 4 for r in rows)
    assert "| poisson1d | grad_norm | gn |" in out.read_text()

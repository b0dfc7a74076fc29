def test_problems_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("problems")
    out = tmp_path / "table.md"
    rows = module.main(["--smoke", "--problems", "poisson1d", "heat1d", "--out", str(out)])
    assert [r["problem"] for r in rows] == ["poisson1d", "heat1d"]
    assert all(r["steps"] == 12 for r in rows)
    text = out.read_text()
    assert "| poisson1d |" in text and "| heat1d |" in text
    assert "adam:6,lbfgs" in text

def test_burgers_inverse_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("burgers_inverse")
    out = tmp_path / "table.md"
    rows = module.main(["--smoke", "--out", str(out)])
    assert [r["noise"] for r in rows] == [0.0, 0.01]
    assert all(r["steps"] == 3 and 0 < r["param_nu_rel_error"] for r in rows)
    text = out.read_text()
    assert "| 0 | 1 | gn |" in text and "| 0.01 | 1 | gn |" in text

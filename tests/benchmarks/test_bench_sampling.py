def test_sampling_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("sampling")
    out = tmp_path / "table.md"
    rows = module.main(["--problems", "poisson1d", "--methods", "fixed", "rad", "--steps", "4",
                        "--period", "2", "--out", str(out)])  # fmt: skip
    assert [r["sampling"] for r in rows] == ["fixed", "rad"]
    assert all(r["steps"] == 4 for r in rows)
    assert "| poisson1d | rad | gn |" in out.read_text()

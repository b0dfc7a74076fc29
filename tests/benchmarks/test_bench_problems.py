def test_problems_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("problems")
    out = tmp_path / "table.md"
    rows = module.main(
        ["--smoke", "--problems", "poisson1d", "burgers1d_inverse", "--out", str(out)]
    )
    assert [r["problem"] for r in rows] == ["poisson1d", "burgers1d_inverse"]
    assert all(r["steps"] == 12 for r in rows)
    text = out.read_text()
    assert "| poisson1d | adam:6,lbfgs |" in text and "| burgers1d_inverse |" in text
    assert "| nu " in text  # the identified parameter's error
    assert (
        module.other_errors({"rel_l2_u": 0.5, "param_nu_rel_error": 0.25})
        == "u 5.0e-01, nu 2.5e-01"
    )

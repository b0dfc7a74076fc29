def test_hard_problems_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("hard_problems")
    out = tmp_path / "table.md"
    args = ["--problems", "poisson2d", "--seeds", "0", "1", "--baseline-seeds", "0"]
    rows = module.main([*args, "--ablations", "--steps", "2", "--cap", "30", "--out", str(out)])
    variants = [r["variant"] for r in rows]
    assert variants == ["recipe", "recipe", "adam:2000,lbfgs", "gn", "no optimizer"]
    assert rows[0]["optimizer"] == "gn" and rows[-1]["optimizer"] == "adam:1000,lbfgs"
    assert module.variants("navier_stokes2d", ablations=True) == ["recipe", *module.BASELINES]
    assert all(r["steps"] == 2 for r in rows)
    text = out.read_text()
    assert "| poisson2d | recipe | gn | 2 |" in text
    assert (tmp_path / "table.png").is_file()


def test_ablations_switch_one_piece_back_at_a_time(load_benchmark):
    module = load_benchmark("hard_problems")
    assert module.variants("burgers1d", ablations=True)[3:] == ["no sampling", "no optimizer"]
    data = module.variant_config("burgers1d", "no sampling", cap=50, steps=None)
    assert data["sampling"] == {"method": "fixed"}
    assert data["optim"]["optimizer"] == "adam:1000,ssbroyden"
    assert data["training"]["time_limit"] == 50

def test_gn_scaling_smoke(tmp_path, load_benchmark):
    module = load_benchmark("gn_scaling")
    out = tmp_path / "table.md"
    rows = module.main(["--smoke", "--out", str(out)])
    assert [r["P"] for r in rows] == [25, 105]  # widths 3 and 8 for targets 30 and 100
    assert all(r["M"] == 60 for r in rows)
    for r in rows:
        for solver in ("dense", "woodbury", "cg"):
            assert r[solver].seconds > 0
    text = out.read_text()
    assert "| P | width | dense | woodbury | cg | fastest |" in text
    assert "| 105 | 8 |" in text and "Fastest: " in text


def test_gn_scaling_skips_with_reasons(load_benchmark):
    module = load_benchmark("gn_scaling")
    # 8·(60·105 + 3·105²) bytes ≈ 3.2e-4 GB for dense at P = 105; woodbury needs 1.4e-4 GB
    rows = module.main(["--smoke", "--max-gb", "2e-4", "--solvers", "dense", "woodbury"])
    assert rows[0]["dense"].seconds > 0
    assert str(rows[1]["dense"]) == "skipped (needs ~0.0 GB > 0.0002 GB)"
    assert rows[1]["woodbury"].seconds > 0
    assert module.fastest(rows[1], ["dense", "woodbury"]) == "woodbury"
    rows = module.main(["--smoke", "--time-cap", "1e-9", "--solvers", "cg"])
    assert str(rows[0]["cg"]).startswith("skipped (one step took")
    assert str(rows[1]["cg"]) == "skipped (over the time cap at P = 25)"
    assert module.fastest(rows[1], ["cg"]) == "–"


def test_width_for_targets(load_benchmark):
    module = load_benchmark("gn_scaling")
    assert [module.width_for(t, 2) for t in module.TARGETS] == [8, 15, 29, 52, 98, 171, 221]
    assert module.mlp_params(8, 2) == 105 and module.mlp_params(221, 2) == 49947


def test_estimate_is_pessimistic_power_law(load_benchmark):
    module = load_benchmark("gn_scaling")
    assert module.estimate("dense", None, 1000) == 0.0
    assert module.estimate("dense", (100, 1.0), 200) == 8.0
    assert module.estimate("cg", (100, 1.0), 200) == 4.0

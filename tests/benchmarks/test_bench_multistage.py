"""Smoke run of benchmarks/multistage.py."""


def test_multistage_benchmark_smoke(tmp_path, load_benchmark):
    module = load_benchmark("multistage")
    out = tmp_path / "table.md"
    rows = module.main(["--smoke", "--seeds", "0", "1", "--rules", "error", "residual",
                        "--out", str(out)])  # fmt: skip
    assert [(r["seed"], r["rule"]) for r in rows] == [
        (0, "error"), (0, "residual"), (1, "error"), (1, "residual"),
    ]  # fmt: skip
    # both rules start from the same stage 1
    assert rows[0]["stage1_rel_l2"] == rows[1]["stage1_rel_l2"]
    for r in rows:
        assert r["networks"] == 2 and len(r["stage_times"]) == 2
        assert r["ratio"] == r["stage1_rel_l2"] / r["final_rel_l2"]
        assert r["epsilon"] > 0 and r["frequency"] > 0 and r["long_rel_l2"] > 0
    text = out.read_text()
    assert "| seed | rule | stage 1 rel_l2 | 2 networks rel_l2 | ratio |" in text
    assert "one network, 16 steps: rel_l2" in text
    assert text.count("\n| 0 | error | ") == 1 and text.count("\n| 1 | residual | ") == 1
    assert "python benchmarks/multistage.py --smoke" in text

"""Smoke run of benchmarks/meta_sgd_pde.py (Meta-SGD vs one scalar α, few-shot PDE fits)."""

import math

import pytest


def test_meta_sgd_pde_smoke_writes_tables_and_scores_test_tasks(tmp_path, load_benchmark):
    module = load_benchmark("meta_sgd_pde")
    out = tmp_path / "msp"
    results = module.main(["--smoke", "--k-shot", "2", "--out", str(out)])
    per, scalar = module.VARIANTS
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [(per, 0), (scalar, 0)]
    for r in results["runs"]:
        assert len(r["mse"]) == 3 and all(0 < v < math.inf for v in r["mse"])
    assert results["baseline_lr"] in (1e-3, 1e-2)
    text = (out / "results.md").read_text()
    assert text.startswith("`python benchmarks/meta_sgd_pde.py --smoke --k-shot 2 --out ")
    assert "2-shot fits on `pde_fit`" in text and "| seed | mean | std | 95% CI |" in text
    args = module.parse(["--smoke"])
    assert all(t.split == "test" for t in module.scored_tasks(args, module.family(args)))


def test_paired_log_difference_and_sections(tmp_path, load_benchmark):
    module = load_benchmark("meta_sgd_pde")
    d = module.paired_log([1e-2, 1e-3], [1e-1, 1e-1])
    assert d["mean"] == pytest.approx(1.5) and d["n"] == 2
    assert module.paired_log([1e-2, math.inf], [1e-1, 1.0])["n"] == 1  # a diverged pair drops
    path = tmp_path / "t.md"
    module.write_section(path, module.parse(["--k-shot", "5"]), "FIVE-TEXT\n")
    module.write_section(path, module.parse(["--k-shot", "1"]), "ONE-TEXT\n")
    text = path.read_text()
    assert (
        text.index("## 1-shot")
        < text.index("ONE-TEXT")
        < text.index("## 5-shot")
        < text.index("FIVE-TEXT")
    )

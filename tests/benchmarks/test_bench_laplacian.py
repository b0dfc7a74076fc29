"""Smoke runs of benchmarks/laplacian_speed.py and benchmarks/ladam_wave.py."""

import argparse

import torch


def test_laplacian_speed_smoke(tmp_path, load_benchmark):
    module = load_benchmark("laplacian_speed")
    out = tmp_path / "speed.md"
    results = module.main(
        ["--smoke", "--optimizers", "ladam", "--allocators", "no-trim", "--out", str(out)]
    )  # ladam: the default, compiled (its child stops if it fell back to the eager update)
    rows = results["tiny", "no-trim"]
    assert list(rows) == ["adam", "ladam"]  # the baseline comes first
    assert all(r["seconds"] > 0 and r["first"] > 0 and r["faults"] >= 0 for r in rows.values())
    text = out.read_text()
    assert (
        "| model | params | allocator | optimizer | ms / step | × Adam (foreach) "
        "| × Adam (fused) |" in text
    )
    assert "| tiny | 105 | no-trim | adam | " in text and "| 1.00 | – |" in text


def test_laplacian_speed_table_has_a_ratio_to_each_adam(load_benchmark):
    module = load_benchmark("laplacian_speed")
    args = argparse.Namespace(models={"tiny": [2, 8, 8, 1]}, threads=1, dtype="float32",
                              rounds=1, steps=2)  # fmt: skip
    cell = lambda ms: {"seconds": ms / 1e3, "first": 0.5, "faults": 0.0}  # noqa: E731
    rows = {"adam": cell(2.0), "adam-fused": cell(1.0), "ladam": cell(1.5)}
    text = module.table({("tiny", "default"): rows}, args, "command")
    assert "| tiny | 105 | default | adam | 2.000 | 1.00 | 2.00 | 0 | 0.50 |" in text
    assert "| tiny | 105 | default | adam-fused | 1.000 | 0.50 | 1.00 | 0 | 0.50 |" in text
    assert "| tiny | 105 | default | ladam | 1.500 | 0.75 | 1.50 | 0 | 0.50 |" in text


def test_laplacian_speed_measure_in_process(load_benchmark):
    module = load_benchmark("laplacian_speed")
    r = module.measure([2, 8, 8, 1], "lrmsprop-eager", torch.float64, warmup=1, steps=3)
    assert r["seconds"] > 0 and r["first"] > 0 and r["faults"] >= 0


def test_ladam_wave_smoke_writes_table_and_plot_and_resumes(tmp_path, load_benchmark):
    module = load_benchmark("ladam_wave")
    out = tmp_path / "wave"
    rows = module.main(["--smoke", "--c2", "1e-3", "--out", str(out)])
    assert [(r["optimizer"], r["seed"]) for r in rows] == [
        ("adam", 0), ("ladam c2=0.001", 0), ("adam", 1), ("ladam c2=0.001", 1),
    ]  # fmt: skip
    assert all(r["steps"] == 20 and 0 < r["rel_l2"] < 10 for r in rows)
    text = (out / "results.md").read_text()
    assert "| adam | " in text and "| ladam c2=0.001 | " in text and " ± " in text
    assert (out / "wave_error.png").stat().st_size > 0
    metrics = out / "runs" / "adam" / "seed0" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = module.main(["--smoke", "--c2", "1e-3", "--out", str(out)])
    assert metrics.stat().st_mtime_ns == before  # finished runs are not run again
    assert [r["rel_l2"] for r in again] == [r["rel_l2"] for r in rows]


def test_error_at_equal_time(load_benchmark):
    module = load_benchmark("ladam_wave")
    curve = [(0, 0.1, 1.0), (10, 1.0, 0.5), (20, 2.0, 0.25)]
    assert module.error_at(curve, 1.5) == 0.5
    assert module.error_at(curve, 2.0) == 0.25
    assert module.error_at(curve, 0.05) != module.error_at(curve, 0.05)  # nan: nothing yet

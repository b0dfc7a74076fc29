"""Smoke run of benchmarks/meta_sgd_digits.py (Meta-SGD vs one scalar α, 5-way 1-shot)."""

import json
import math

import pytest
import torch


def test_meta_sgd_digits_smoke_writes_tables_results_and_plot(tmp_path, load_benchmark):
    module = load_benchmark("meta_sgd_digits")
    out = tmp_path / "msgd"
    results = module.main(["--smoke", "--out", str(out)])
    per, scalar = module.VARIANTS
    runs = results["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [(per, 0), (scalar, 0)]
    for r in runs:
        assert len(r["accuracy"]) == 3 and all(0 <= a <= 1 for a in r["accuracy"])
        assert math.isfinite(r["best_val_loss"]) and r["seconds"] > 0
        assert (out / "runs" / ("meta_sgd" if r["method"] == per else "scalar") / "seed0"
                / "optimizer.pt").exists()  # fmt: skip
    # the only difference between the two rules: α per coordinate, or one α
    n_params = 64 * 8 + 8 + 8 * 5 + 5
    assert runs[0]["alpha"]["n"] == n_params and runs[1]["alpha"]["n"] == 1
    assert list(results["methods"]) == [module.NN, module.ADAM]
    assert results["baseline_lr"] in (1e-3, 1e-2)
    assert all(len(acc) == 3 for acc in results["methods"].values())
    text = (out / "results.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("`python benchmarks/meta_sgd_digits.py --smoke --out ")
    assert "torch " in first and "held-out digits 5-9" in first
    assert "| method | seed | test accuracy, mean ± std (%) | median (%) |" in text
    assert f"| {per} | 0 | " in text and f"| {scalar} | 0 | " in text
    assert f"| {module.NN} | – | " in text
    assert "| seed | mean | std | 95% CI | median | ≥ 5 points |" in text
    assert "the claim (≥ 5 points) holds on " in text
    assert json.loads((out / "results.json").read_text())["runs"][0]["seed"] == 0
    assert (out / "meta_sgd_digits.png").stat().st_size > 0


def test_meta_sgd_digits_scores_held_out_classes_and_never_test_in_val_mode(load_benchmark):
    module = load_benchmark("meta_sgd_digits")
    args = module.parse(["--smoke"])
    fam = module.family(args)
    assert all(set(t.info["classes"]) == {5, 6, 7, 8, 9} for t in module.scored_tasks(args, fam))
    val = module.parse(["--smoke", "--split", "val"])
    tasks = module.scored_tasks(val, fam)
    assert all(t.split == "val" and set(t.info["classes"]) == {0, 1, 2, 3, 4} for t in tasks)
    selection = {t.seed for t in module.EpisodeSampler(fam, "val").take(val.val_episodes)}
    assert not selection & {t.seed for t in tasks}  # scored apart from the selection episodes


def test_paired_difference_in_points(load_benchmark):
    module = load_benchmark("meta_sgd_digits")
    d = module.paired([0.6, 0.8, 1.0], [0.5, 0.8, 0.7])
    assert d["mean"] == pytest.approx((10 + 0 + 30) / 3)
    assert d["median"] == pytest.approx(10.0)
    half = 1.96 * d["std"] / math.sqrt(3)
    assert d["ci"] == pytest.approx((d["mean"] - half, d["mean"] + half))


ROTATIONS = ["--train-transforms", "0", "1", "2", "--val-transforms", "3"]


def test_rotation_protocol_trains_on_rotated_digits_validates_on_a_new_rotation(
    tmp_path, load_benchmark
):
    module = load_benchmark("meta_sgd_digits")
    args = module.parse(["--smoke", *ROTATIONS])
    fam = module.family(args)
    train = module.EpisodeSampler(fam, "train").take(20)
    assert {t for task in train for t in task.info["transforms"]} == {0, 1, 2}
    test = module.scored_tasks(args, fam)  # test episodes: untouched, the same as before
    plain = module.scored_tasks(module.parse(["--smoke"]), module.family(module.parse(["--smoke"])))
    assert all(t.info["transforms"] == (0,) * 5 for t in test)
    assert all(torch.equal(a.info["query"][0], b.info["query"][0]) for a, b in zip(test, plain))
    val = module.parse(["--smoke", "--split", "val", *ROTATIONS])
    assert all(t.info["transforms"] == (3,) * 5 for t in module.scored_tasks(val, fam))
    out = tmp_path / "rot"
    module.main(["--smoke", "--split", "val", *ROTATIONS, "--out", str(out)])
    first = (out / "results.md").read_text().splitlines()[0]
    assert "meta-train on digits 0-4 under {0°, 90°, 180°} (15 classes)" in first
    assert "val episodes (digits 0-4 under {270°} (5 classes), unseen images)" in first


def test_docs_table_keeps_one_section_per_protocol(tmp_path, load_benchmark):
    module = load_benchmark("meta_sgd_digits")
    path = tmp_path / "table.md"
    plain, rotated = module.parse([]), module.parse(ROTATIONS)
    module.write_section(path, plain, "plain one\n")
    module.write_section(path, rotated, "rotated one\n")
    module.write_section(path, plain, "plain two\n")
    text = path.read_text()
    assert text.startswith(module.DOCS_TITLE)
    assert "plain one" not in text and text.count("plain two") == 1
    assert text.count("rotated one") == 1
    assert text.index(module.SECTIONS[True]) < text.index("rotated one")
    assert text.index("rotated one") < text.index(module.SECTIONS[False]) < text.index("plain two")


def test_five_shot_runs_get_sections_and_plots_of_their_own(tmp_path, load_benchmark):
    module = load_benchmark("meta_sgd_digits")
    path = tmp_path / "table.md"
    one, five = module.parse([]), module.parse(["--k-shot", "5"])
    module.write_section(path, one, "one shot\n")
    module.write_section(path, five, "five shots\n")
    module.write_section(path, module.parse(["--k-shot", "5", *ROTATIONS]), "rotated five\n")
    text = path.read_text()
    assert text.count("one shot") == text.count("five shots") == text.count("rotated five") == 1
    assert text.index("one shot") < text.index("rotated five") < text.index("five shots")
    assert f"{module.SECTIONS[False]}, 5-shot" in text
    assert module.image_name(one) == "meta_sgd_digits.png"
    assert module.image_name(five) == "meta_sgd_digits_5shot.png"
    out = tmp_path / "five"
    results = module.main(["--smoke", "--k-shot", "5", "--out", str(out)])
    assert "5-way 5-shot digits" in (out / "results.md").read_text().splitlines()[0]
    assert all(len(r["accuracy"]) == 3 for r in results["runs"])

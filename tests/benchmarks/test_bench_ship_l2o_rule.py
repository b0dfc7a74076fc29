"""benchmarks/ship_l2o_rule.py: the rule of a learned_vs_adam run goes into the package
with a record of where it came from and its checksum (written here to a temporary
folder, never over the shipped rule)."""

import json

import pytest
import torch

from pinnopt.learned import MetaOptimizer, MetaOptimizerConfig
from pinnopt.learned.shipped import sha256

META = {"config": {"method": "l2o"}, "meta_steps_done": 3, "best_meta_step": 2,
        "initial_val_loss": 1.0, "best_val_loss": 0.5, "test_loss": 0.4,
        "untrained_test_loss": 0.6, "wall_time_s": 1.0}  # fmt: skip


def fake_run(folder, rule, command, kinds=None, meta=META):
    folder.mkdir()
    options = {"decay": 2.0} if kinds is None else {"decay": 2.0, "kinds": kinds}
    res = {"family": "pde_mix", "family_options": options, "steps": 5, "method": "l2o",
           "first_order": False, "rule": str(rule), "meta": meta, "adam_lr": 0.03,
           "summary": {"tasks": 2, "reached": 1}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "results.md").write_text(f"`{command}`: x86_64, 1 torch thread(s).\n")
    return folder


def test_ship_copies_the_rule_and_records_its_provenance(tmp_path, load_benchmark, monkeypatch):
    bench = load_benchmark("ship_l2o_rule")
    rule = tmp_path / "optimizer.pt"
    MetaOptimizer(torch.nn.Linear(1, 1), MetaOptimizerConfig(method="l2o")).save(rule)
    run = fake_run(tmp_path / "run", rule, "python benchmarks/learned_vs_adam.py --family pde_mix")
    held = fake_run(tmp_path / "held", rule, "python benchmarks/learned_vs_adam.py --rule R",
                    kinds=["reaction", "advection"], meta=None)  # fmt: skip
    monkeypatch.setattr(bench, "SHIPPED_RULE", tmp_path / "rules" / "pinn_l2o.pt")
    monkeypatch.setattr(bench, "SHIPPED_RULE_INFO", tmp_path / "rules" / "pinn_l2o.json")
    record = bench.main([str(run), "--held-out", str(held)])
    assert (tmp_path / "rules" / "pinn_l2o.pt").read_bytes() == rule.read_bytes()
    assert json.loads((tmp_path / "rules" / "pinn_l2o.json").read_text()) == record
    assert record["sha256"] == sha256(rule) and record["family"] == "pde_mix"
    assert record["command"] == "python benchmarks/learned_vs_adam.py --family pde_mix"
    assert record["meta"]["best_meta_step"] == 2 and record["test"]["adam_lr"] == 0.03
    (held_out,) = record["held_out"]
    assert held_out["kinds"] == ["reaction", "advection"] and held_out["adam_lr"] == 0.03
    assert held_out["command"] == "python benchmarks/learned_vs_adam.py --rule R"
    other = tmp_path / "other.pt"
    other.write_bytes(rule.read_bytes() + b"\0")
    elsewhere = fake_run(tmp_path / "elsewhere", other, "x", kinds=["reaction"], meta=None)
    with pytest.raises(SystemExit):
        bench.main([str(run), "--held-out", str(elsewhere)])

"""The pre-trained PINN rule shipped in the package: its checksum, its provenance
record, and that a bare ``l2o`` is that rule."""

import json

import pytest
import torch

from pinnopt.learned import LearnedOptimizer, load_learned
from pinnopt.learned import shipped as shipped_module
from pinnopt.learned.shipped import SHIPPED_RULE, sha256, shipped_rule, shipped_rule_info
from pinnopt.optim import build_optimizer


def test_the_shipped_rule_equals_its_recorded_checksum_and_loads():
    info = shipped_rule_info()
    assert info["file"] == SHIPPED_RULE.name
    assert sha256(SHIPPED_RULE) == info["sha256"]
    assert shipped_rule() == SHIPPED_RULE
    blob = load_learned(SHIPPED_RULE)
    assert blob["config"]["method"] == "l2o" and blob["config"] == info["config"]


def test_the_record_says_how_the_rule_was_made_and_scored():
    info = shipped_rule_info()
    assert info["command"].startswith("python benchmarks/learned_vs_adam.py --family pde_mix")
    assert info["family"] == "pde_mix"
    kinds = set(info["family_options"].get("kinds", ("poisson", "helmholtz", "burgers", "heat")))
    assert {"poisson", "helmholtz", "burgers", "heat"} <= kinds
    assert info["test"]["summary"]["tasks"] > 0
    for run in info["held_out"]:  # PDE kinds outside the training mixture
        assert "--rule" in run["command"] and not set(run["kinds"]) & kinds


def test_bare_l2o_steps_as_the_shipped_rule():
    torch.manual_seed(0)
    target = torch.randn(7, dtype=torch.float64)
    a = torch.nn.Parameter(torch.zeros(7, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(7, dtype=torch.float64))
    bare = build_optimizer("l2o", [a], lr=0.5)  # lr is ignored
    explicit = LearnedOptimizer([b], SHIPPED_RULE)
    for _ in range(5):
        for p, opt in ((a, bare), (b, explicit)):
            opt.zero_grad()
            ((p - target) ** 4).sum().backward()
            opt.step()
    assert not torch.equal(a, torch.zeros_like(a))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_changed_or_missing_rule_file_is_refused(tmp_path, monkeypatch):
    changed = tmp_path / "pinn_l2o.pt"
    changed.write_bytes(SHIPPED_RULE.read_bytes() + b"\0")
    record = tmp_path / "pinn_l2o.json"
    record.write_text(json.dumps(shipped_rule_info()))
    monkeypatch.setattr(shipped_module, "SHIPPED_RULE", changed)
    monkeypatch.setattr(shipped_module, "SHIPPED_RULE_INFO", record)
    with pytest.raises(RuntimeError, match="does not match its recorded SHA-256"):
        shipped_module.shipped_rule.__wrapped__()
    changed.unlink()
    with pytest.raises(RuntimeError, match="is missing: reinstall pinnopt"):
        shipped_module.shipped_rule.__wrapped__()

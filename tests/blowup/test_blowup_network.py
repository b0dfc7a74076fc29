import pytest

from pinnopt.blowup.burgers import burgers_lambda
from pinnopt.blowup.network_profile import find_network_profile
from pinnopt.train.multistage import NetworkSum


def test_an_mlp_ansatz_finds_the_order_zero_profile_and_a_second_stage_refines_it():
    result = find_network_profile(0, 0.95 * burgers_lambda(0), width=8, depth=2, stages=2,
                                  points=60, max_steps=40)  # fmt: skip
    assert result.lam_rel_error < 1e-3  # from a 5 % miss
    first, second = result.stages
    assert first["epsilon"] == 1.0 and 0 < second["epsilon"] < 1e-3
    # the second stage trains a new network of the same size (and λ); the first is frozen
    assert first["parameters"] == second["parameters"] == 2 * 8 + 9 * 8 + 9 + 1
    network = result.model.network
    assert isinstance(network, NetworkSum)
    assert not any(p.requires_grad for p in network.networks[0].parameters())
    assert network.scales.tolist() == [1.0, second["epsilon"]]
    losses = {h["kind"]: h["loss"] for h in result.history}  # the last of each stage
    assert losses["stage 2"] < losses["stage 1"]
    assert result.steps == first["steps"] + second["steps"] == len(result.history)
    assert second["max_residual"] == result.check()["max_residual"]


def test_bad_network_profile_arguments_are_named():
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        find_network_profile(0, 0.5, width=0)
    with pytest.raises(ValueError, match="lambda0 must be > 0"):
        find_network_profile(0, -0.5)


def test_blowup_ansatz_benchmark_smoke(tmp_path, load_benchmark):
    rows = load_benchmark("blowup_ansatz").main(["--smoke", "--out", str(tmp_path)])
    assert [r["ansatz"] for r in rows] == ["series, degree 12", "MLP 6×1, stage 1",
                                           "MLP 6×1, stage 2"]  # fmt: skip
    assert rows[2]["steps"] > rows[1]["steps"] and rows[0]["parameters"] == 14
    assert all(r["lambda_rel_error"] < 0.05 for r in rows)
    text = (tmp_path / "results.md").read_text()
    assert "| 0 | MLP 6×1, stage 2 |" in text and (tmp_path / "results.json").is_file()

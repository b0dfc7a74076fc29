"""Smoke test of benchmarks/derivatives.py (jet vs autograd Laplacian loss timing)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "derivatives.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_derivatives", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_smoke_table_has_every_dimension_and_paths_agree(bench, tmp_path, capsys):
    out = tmp_path / "table.md"
    threads = torch.get_num_threads()
    rows = bench.main(["--smoke", "--variants", "--count", "--out", str(out)])

    assert [r.d for r in rows] == [2, 3, 5]
    names = ["jet", "jet-trace", "autograd", "torch.func", "proto-diag", "proto-trace"]
    for r in rows:
        assert list(r.ms) == names
        assert all(t is not None and math.isfinite(t) and t > 0 for t in r.ms.values())
        assert r.speedup == pytest.approx(r.ms["autograd"] / r.ms["jet"])
        assert r.speedup_trace == pytest.approx(r.ms["autograd"] / r.ms["jet-trace"])
        assert set(r.loss_rel_diff) == set(names) and set(r.grad_rel_diff) == set(names)
        assert max(r.loss_rel_diff.values()) <= 1e-10
        assert max(r.grad_rel_diff.values()) <= 1e-10

    table = out.read_text()
    table, work = table.split("Work per step:")
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| d | N | width×depth | jet ms | jet-trace ms | autograd ms |")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["2", "3", "5"]
    assert "torch " + torch.__version__ in work  # the machine note closes the file
    work_rows = [ln.split("|")[1].strip() for ln in work.splitlines() if ln.startswith("|")]
    assert work_rows[2:] == [n for n in names if n != "torch.func"]
    assert lines[0] in capsys.readouterr().out
    assert torch.get_num_threads() == threads  # restored


def test_disagreeing_path_is_reported(bench, monkeypatch):
    def off_by_a_bit(model, x):
        return (1 + 1e-6) * bench.lap_jet_trace(model, x)

    monkeypatch.setitem(bench.LIBRARY_METHODS, "jet-trace", off_by_a_bit)
    with pytest.raises(
        SystemExit, match=r"d=2: relative difference to autograd above .*'jet-trace'"
    ):
        bench.main(["--smoke", "--dims", "2", "--no-torch-func"])


def test_all_laplacians_match_autograd_on_a_deeper_net(bench):
    model, x, f = bench.make_case(3, 50, 16, 3, seed=1)
    ref = bench.lap_autograd(model, x)
    torch.testing.assert_close(bench.lap_jet(model, x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bench.lap_jet_trace(model, x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bench.lap_proto_diag(model, x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bench.lap_proto_trace(model, x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--points", "0"], "--points must be >= 1"),
        (["--dims", "2", "0"], "--dims must all be >= 1"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(bench, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        bench.main(flags)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "problems.py"


def test_problems_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_problems", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "table.md"
    rows = module.main(["--smoke", "--problems", "poisson1d", "heat1d", "--out", str(out)])
    assert [r["problem"] for r in rows] == ["poisson1d", "heat1d"]
    assert all(r["steps"] == 12 for r in rows)
    text = out.read_text()
    assert "| poisson1d |" in text and "| heat1d |" in text
    assert "adam:6,lbfgs" in text

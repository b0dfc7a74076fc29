"""The README's Python example runs as written (with a shorter step budget)."""

import re
from pathlib import Path

from pinnopt.problems import Problem

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert "steps=3000" in code and '"adam:1000,lbfgs"' in code
    code = code.replace("steps=3000", "steps=300, quiet=True")
    code = code.replace('"adam:1000,lbfgs"', '"adam:100,lbfgs"')
    # the run directory, as the text under the example says: out_dir="runs/decay"
    assert 'po.Trainer(..., out_dir="runs/decay")' in README.read_text()
    evaluator = "    po.Evaluator(problem),\n)"
    assert evaluator in code
    code = code.replace(evaluator, '    po.Evaluator(problem),\n    out_dir="runs/decay",\n)')
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].rel_l2 < 5e-2
    assert scope["result"].status in ("completed", "converged")
    for name in ("checkpoint.pt", "metrics.json", "history.csv", "loss.png", "solution.png"):
        assert (tmp_path / "runs" / "decay" / name).is_file(), name


def test_readme_documents_the_problem_signatures():
    """What a user writing a problem needs, found before only in help()."""
    text = README.read_text()
    section = text.split("## Your own PDE in Python")[1].split("\n## ")[0]
    section = " ".join(section.split())  # independent of line breaks
    for needed in [
        "`sampler(n, generator)`",
        "(n, d) float64 tensor",
        "`residual(u, x)`",
        "`exact(x)` maps (N, d)",
        "`eval_grid` points per axis",
        "`eval_random` uniform",
        "default 1001 in 1-D and 101 per axis in 2-D",
        f"default {Problem.eval_random}",
    ]:
        assert needed in section, needed

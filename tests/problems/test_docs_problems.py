"""The Python examples of docs/problems.md run as written (with a shorter budget)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "problems.md"


def test_the_system_example_runs_and_reports_each_component():
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert "steps=200" in code
    scope: dict = {}
    exec(compile(code.replace("steps=200", "steps=60, quiet=True"), "problems.md", "exec"), scope)
    errors = scope["result"].errors
    assert errors["rel_l2_u"] < 1e-4 and errors["rel_l2_v"] < 1e-4

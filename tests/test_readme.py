"""The README's Python example runs as written (with a shorter step budget)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert "steps=3000" in code
    code = code.replace("steps=3000", "steps=300, quiet=True")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].rel_l2 < 5e-2
    assert scope["result"].status in ("completed", "converged")

"""The Python examples of docs/problems.md run as written (with a shorter budget)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "problems.md"


def examples() -> dict[str, str]:
    """The ```python blocks of the doc, by the title of their section."""
    out = {}
    for section in re.split(r"\n## ", DOC.read_text())[1:]:
        title = section.splitlines()[0]
        blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        if blocks:
            (out[title],) = blocks
    return out


def run(code: str, steps: int, budget: int) -> dict:
    assert f"steps={steps}" in code
    scope: dict = {}
    code = code.replace(f"steps={steps}", f"steps={budget}, quiet=True")
    exec(compile(code, "problems.md", "exec"), scope)
    return scope


def test_every_section_with_code_is_run_here():
    assert sorted(examples()) == sorted(
        ["A system of equations", "An inverse problem: unknown parameters and observations",
         "Exact constraints", "Periodic problems", "Shapes beyond boxes"]
    )  # fmt: skip


def test_the_system_example_runs_and_reports_each_component():
    errors = run(examples()["A system of equations"], 200, 60)["result"].errors
    assert errors["rel_l2_u"] < 1e-4 and errors["rel_l2_v"] < 1e-4


def test_the_inverse_example_identifies_kappa():
    scope = run(examples()["An inverse problem: unknown parameters and observations"], 100, 40)
    errors = scope["result"].errors
    assert errors["param_kappa"] == pytest.approx(2.0, rel=1e-3)
    assert errors["param_kappa_rel_error"] < 1e-3


def test_the_exact_constraint_example_holds_the_boundary_values():
    scope = run(examples()["Exact constraints"], 100, 30)
    assert [t.name for t in scope["problem"].terms] == ["pde"]
    values = scope["model"](scope["ends"]).detach().flatten().tolist()
    assert values == [1.0, 2.0]  # also after training
    assert scope["trainer"].history[-1]["rel_l2"] < 1e-5


def test_the_periodic_example_is_periodic_and_accurate():
    import math

    import torch

    scope = run(examples()["Periodic problems"], 100, 30)
    assert scope["trainer"].history[-1]["rel_l2"] < 1e-5
    x = torch.tensor([[0.3], [0.3 + 2 * math.pi]], dtype=torch.float64)
    u = scope["model"](x).detach().flatten()
    assert abs(float(u[0] - u[1])) < 1e-14


def test_the_shapes_example_runs_on_a_disk_with_a_hole():
    scope = run(examples()["Shapes beyond boxes"], 100, 25)
    assert scope["trainer"].history[-1]["rel_l2"] < 1e-2
    points = scope["points"]
    assert bool(scope["domain"].inside(points["pde"]).all())
    normals = points["hole"][:, 2:]
    centre = points["hole"].new_tensor([0.3, 0.0])
    # outward from the domain = towards the hole's centre
    assert bool(((centre - points["hole"][:, :2]) * normals).sum(dim=1).gt(0).all())

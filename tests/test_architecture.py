"""The import graph of src/pinnopt: no cycles, and imports only point down the layers of
DESIGN.md (module-level and in-function imports alike, read from the source)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# DESIGN.md's layers, lowest first: a module may import only from lower layers
# (or from its own package)
LAYERS = {
    "registry": 0,
    "derivatives": 0,
    "problems": 1,
    "models": 1,
    "evaluation": 2,
    "plots": 2,
    "objective": 2,
    "problem_network": 2,
    "optim": 3,
    "train": 4,
    "learned": 5,
    "blowup": 5,
    "recipes": 5,
    "config": 6,
    "meta_train_config": 7,
    "solve": 7,
    "bench": 8,
    "run_report": 8,
    "blowup_command": 8,
    "cli": 9,
    "__main__": 10,
}


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "pinnopt").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The pinnopt modules that ``path`` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_the_source():
    g = graph()
    assert "pinnopt.optim.registry" in g["pinnopt.optim.gauss_newton"]
    assert "pinnopt.optim.registry" in g["pinnopt.learned.learned_optimizer"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_imports_point_down_the_layers():
    wrong = []
    for module, deps in graph().items():
        if layer(module) not in LAYERS:  # the top-level package may import anything
            continue
        for dep in deps:
            a, b = layer(module), layer(dep)
            if a != b and not LAYERS[b] < LAYERS[a]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_every_layer_is_known_and_optim_never_imports_learned():
    g = graph()
    assert {layer(m) for m in g} - {""} == set(LAYERS)
    assert not [d for m in g if layer(m) == "optim" for d in g[m] if layer(d) == "learned"]


def test_no_source_file_over_600_lines():
    long = {str(p.relative_to(SRC)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > 600}  # fmt: skip
    assert long == {}

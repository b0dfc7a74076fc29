import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Every test starts from seed 0 on one thread: tiny tensors gain nothing from
    intra-op threads, and results must not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _eager_unless_asked(monkeypatch):
    """Optimizers with a compiled step (``fused``) run eagerly unless a test asks for
    ``fused=True`` or sets ``compiler.AUTOMATIC``: each compilation costs seconds."""
    from pinnopt.optim import compiler

    monkeypatch.setattr(compiler, "AUTOMATIC", False)


@pytest.fixture
def load_benchmark():
    """``load_benchmark("name")``: the module benchmarks/name.py, imported from its file."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures written by ``savefig`` during the test (still inspectable after closing)."""
    from matplotlib.figure import Figure

    saved = []
    real_savefig = Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved

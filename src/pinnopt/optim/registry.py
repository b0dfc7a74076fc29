"""Optimizers by name, and chains of them (``adam:2000,lbfgs``).

One registry maps a config name to a factory ``factory(params, lr, **options)``;
the trainer never branches on names. ``closure`` says what an optimizer's
``step`` needs: nothing (first-order: the trainer calls ``backward`` first),
``"loss"`` (a closure that re-evaluates the loss and its gradient: L-BFGS) or
``"residuals"`` (a closure that returns the residual vector r(θ): Gauss–Newton).
An optimizer that needs the network itself, not only its parameters (K-FAC
hooks its layers), says ``needs_model`` and its factory gets ``model=``.
The keyword options an optimizer accepts are read from the signature of its
class (or factory), so a misspelt option is refused with the list of allowed ones.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim import Optimizer

from pinnopt.optim.gauss_newton import GaussNewton
from pinnopt.optim.hypergradient import HypergradientOptimizer
from pinnopt.optim.kfac import KFAC
from pinnopt.optim.laplacian_smoothed import LAdaGrad, LAdam, LRMSProp
from pinnopt.optim.lbfgs import LBFGS

Factory = Callable[..., Optimizer]


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    factory: Factory
    default_lr: float
    closure: str | None  # None, "loss" or "residuals"
    description: str
    needs_model: bool = False
    options: tuple[str, ...] | None = None  # keyword options; None: not known (**kwargs)


def option_names(fn: Callable) -> tuple[str, ...] | None:
    """The keyword options of an optimizer class or factory: its parameters other than
    ``params``, ``lr`` and ``model``; None when it takes ``**kwargs`` (any may be valid)."""
    names = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind is not p.VAR_POSITIONAL and p.name not in ("self", "params", "lr", "model"):
            names.append(p.name)
    return tuple(names)


OPTIMIZERS: dict[str, OptimizerSpec] = {}


CLOSURES = (None, "loss", "residuals")


def register_optimizer(
    name: str,
    default_lr: float,
    closure: str | None = None,
    description: str = "",
    needs_model: bool = False,
    signature: Callable | None = None,
) -> Callable[[Factory], Factory]:
    """Decorator adding ``factory(params, lr, **options)`` to the registry under ``name``.

    The options it accepts are those of ``signature`` (an optimizer class whose
    ``__init__`` the factory forwards to), else of the factory itself."""
    if closure not in CLOSURES:
        raise ValueError(f"closure must be one of {CLOSURES}, got {closure!r}")

    def add(factory: Factory) -> Factory:
        if name in OPTIMIZERS:
            raise ValueError(f"optimizer {name!r} is already registered")
        options = option_names(signature or factory)
        OPTIMIZERS[name] = OptimizerSpec(
            name, factory, default_lr, closure, description, needs_model, options
        )
        return factory

    return add


LEARNED = "l2o"


def split_name(name: str) -> tuple[str, str | None]:
    """A stage's optimizer name and the file it carries: ``"l2o:runs/m/optimizer.pt"``
    → ``("l2o", "runs/m/optimizer.pt")``; any other name → ``(name, None)``."""
    base, sep, path = name.partition(":")
    if base == LEARNED and sep and path:
        return base, path
    return name, None


def get_optimizer_spec(name: str) -> OptimizerSpec:
    name = split_name(name)[0]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name]


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    lr: float | None = None,
    model: torch.nn.Module | None = None,
    **options,
) -> Optimizer:
    """Build the optimizer ``name``; ``lr=None`` takes its default learning rate.

    ``model`` is passed on to optimizers that need it (``needs_model``), and required there.
    ``name`` may carry a file, ``"l2o:PATH"``: the same as ``"l2o"`` with ``path=PATH``.
    """
    spec = get_optimizer_spec(name)
    name, path = split_name(name)
    unknown = sorted(set(options) - set(spec.options)) if spec.options is not None else []
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for optimizer {name}; allowed: {', '.join(spec.options)}"
        )
    if path is not None:
        options["path"] = path
    if spec.needs_model:
        if model is None:
            raise ValueError(f"optimizer {name} needs the model (model=...)")
        options["model"] = model
    try:
        return spec.factory(params, lr=spec.default_lr if lr is None else lr, **options)
    except TypeError as e:  # unknown keyword option
        raise ValueError(f"bad option for optimizer {name}: {e}") from None


def _torch_factory(cls: type[Optimizer]) -> Factory:
    def factory(params, lr, **options):
        return cls(params, lr=lr, **options)

    return factory


for _name, _cls, _lr, _text in [
    ("adam", torch.optim.Adam, 1e-3, "Adam (torch.optim.Adam)"),
    ("adamw", torch.optim.AdamW, 1e-3, "AdamW, decoupled weight decay"),
    ("sgd", torch.optim.SGD, 1e-3, "SGD with optional momentum"),
    ("rmsprop", torch.optim.RMSprop, 1e-3, "RMSprop"),
    ("adagrad", torch.optim.Adagrad, 1e-2, "Adagrad"),
    ("ladam", LAdam, 1e-3, "Adam with a Laplacian-smoothed second moment"),
    ("ladagrad", LAdaGrad, 1e-2, "AdaGrad with a Laplacian-smoothed accumulator"),
    ("lrmsprop", LRMSProp, 1e-2, "RMSProp with a Laplacian-smoothed running average"),
]:
    register_optimizer(_name, _lr, description=_text, signature=_cls)(_torch_factory(_cls))


# L-BFGS for PINNs: strong-Wolfe line search, a long history, and tolerances that
# (on the rescaled loss of pinnopt's LBFGS) act relative to the loss.
LBFGS_DEFAULTS = {
    "history_size": 100,
    "line_search_fn": "strong_wolfe",
    "tolerance_grad": 1e-12,
    "tolerance_change": 1e-14,
}


@register_optimizer(
    "lbfgs",
    1.0,
    closure="loss",
    description="L-BFGS, strong Wolfe, loss rescaled for precision",
    signature=LBFGS,
)
def _lbfgs(params, lr, **options):
    return LBFGS(params, lr=lr, **{**LBFGS_DEFAULTS, **options})


@register_optimizer(
    "gn",
    1.0,
    closure="residuals",
    description="Gauss-Newton / Levenberg-Marquardt (dense, Woodbury or CG solve)",
    signature=GaussNewton,
)
def _gauss_newton(params, lr, **options):
    return GaussNewton(params, lr=lr, **options)


@register_optimizer(
    "kfac",
    1.0,
    closure="residuals",
    needs_model=True,
    description="K-FAC for PINNs (Kronecker factors over jets), auto step and momentum",
    signature=KFAC,
)
def _kfac(params, lr, model, **options):
    return KFAC(params, model=model, lr=lr, **options)


@register_optimizer(
    "meta",
    1e-3,
    description="Hypergradient lr adaptation (Baydin et al. 2018) around Adam or another base",
    signature=HypergradientOptimizer,
)
def _hypergradient(params, lr, **options):
    return HypergradientOptimizer(params, lr=lr, **options)


@register_optimizer(
    LEARNED,
    1.0,
    description="A meta-trained optimizer from a file (l2o:PATH; pinnopt meta-train); "
    "no file: the untrained l2o rule (Adam, lr 1e-2)",
)
def _learned(params, lr, path=None, scale=1.0):
    """``LearnedOptimizer(params, path, scale)``; ``lr`` is ignored (the rule's step size
    is learned; ``scale`` multiplies its update). Each group's ``lr`` is set to
    ``scale`` for the trainer's history; a scheduler changes it with no effect.

    Without ``path``: the ``l2o`` rule as meta-training starts it (default
    ``MetaOptimizerConfig``), which is Adam with lr = ``inner_lr`` = 1e-2: a baseline."""
    from pinnopt.learned.learned_optimizer import LearnedOptimizer  # lazy: no import cycle

    source = _untrained_l2o() if path is None else path
    try:
        optimizer = LearnedOptimizer(params, source, scale=scale)
    except ValueError as e:  # torch.load's reason spans many lines: keep one
        if str(e).startswith("Invalid path"):
            msg = f"Invalid path: {str(path)!r} is not a saved learned optimizer"
            raise ValueError(msg) from None
        raise
    for group in optimizer.param_groups:
        group.setdefault("lr", group["scale"])
    return optimizer


def _untrained_l2o() -> io.BytesIO:
    """The saved file of an untrained ``l2o`` rule, in memory."""
    from pinnopt.learned.meta import MetaOptimizer, MetaOptimizerConfig

    buffer = io.BytesIO()
    MetaOptimizer(torch.nn.Linear(1, 1), MetaOptimizerConfig(method="l2o")).save(buffer)
    buffer.seek(0)
    return buffer


@dataclass(frozen=True)
class Stage:
    """One optimizer of a chain and its step count (``None``: the rest of the budget).

    ``optimizer`` is a registry name, or ``"l2o:PATH"`` (see :func:`split_name`)."""

    optimizer: str
    steps: int | None = None


def _split_stage(text: str, part: str) -> tuple[str, str]:
    """A stage ``name[:steps]`` or ``l2o:PATH[:steps]`` as (name, count text); the name of
    an ``l2o`` stage with a file is ``"l2o:PATH"``, and the file must exist. A stage that
    ends with ``:`` has an empty step count (``lbfgs:``, ``l2o:PATH:``) and is refused."""
    if part.endswith(":"):
        raise ValueError(
            f"optimizer chain {text!r}: empty step count after {part!r}; put a step count "
            f"after the ':' (e.g. {part + '1000'!r}) or remove the ':'"
        )
    name, _, count = part.partition(":")
    name = name.strip()
    if name != LEARNED or not count or count.strip().isdigit():
        return name, count
    path, sep, tail = count.rpartition(":")
    if not (sep and tail.strip().isdigit()):
        path, tail = count, ""
    path = path.strip()
    if not Path(path).is_file():
        raise ValueError(f"optimizer chain {text!r}: l2o file {path!r} does not exist")
    return f"{LEARNED}:{path}", tail


def parse_chain(text: str) -> list[Stage]:
    """Parse ``"adam:2000,lbfgs"`` into stages; ValueError names what is wrong.

    A stage is ``name[:steps]``, or ``l2o:PATH[:steps]`` for a learned optimizer saved
    at PATH (a value after ``l2o:`` that is not an integer is a path; the stage's
    ``optimizer`` is then ``"l2o:PATH"``). Paths must not contain ``,`` nor end with ``:``.
    """
    stages = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"optimizer chain {text!r} has an empty entry; use e.g. 'adam:2000,lbfgs'")
    for i, part in enumerate(parts):
        name, count = _split_stage(text, part)
        get_optimizer_spec(name)
        steps = None
        if count:
            try:
                steps = int(count)
            except ValueError:
                raise ValueError(
                    f"optimizer chain {text!r}: step count {count!r} of {name} is not an integer"
                ) from None
            if steps < 1:
                raise ValueError(f"optimizer chain {text!r}: step count of {name} must be >= 1")
        elif i < len(parts) - 1:
            raise ValueError(
                f"optimizer chain {text!r}: every stage but the last needs a step count ({name}:N)"
            )
        stages.append(Stage(name, steps))
    return stages

"""Optimizers by name: the one place a config name becomes an optimizer.

Each optimizer family registers itself beside its class with
:func:`register_optimizer` (``pinnopt.optim`` imports every family, and
``pinnopt.learned`` registers the learned optimizer); this module imports none of
them. A registered factory is called as ``factory(params, lr=…, **options)``: an
optimizer class itself, or a function that adds defaults. ``closure`` says what an
optimizer's ``step`` needs: nothing (first-order: the trainer calls ``backward``
first), ``"loss"`` (a closure that re-evaluates the loss and its gradient: L-BFGS)
or ``"residuals"`` (a closure that returns the residual vector r(θ): Gauss–Newton,
K-FAC). An optimizer that needs the network itself, not only its parameters
(K-FAC hooks its layers), says ``needs_model`` and its factory gets ``model=``.
An optimizer whose ``argument`` names an option may be written ``name:VALUE``
(``l2o:runs/m/optimizer.pt`` sets ``path``). The keyword options an optimizer
accepts are read from the signature of its class (or factory), so a misspelt
option is refused with the list of allowed ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.optim import Optimizer

Factory = Callable[..., Optimizer]
CLOSURES = (None, "loss", "residuals")
# names that were renamed: the old spelling gets an error naming the new one
RENAMED = {"meta": "hypergradient"}


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    factory: Factory
    default_lr: float
    closure: str | None  # None, "loss" or "residuals"
    description: str
    needs_model: bool = False
    options: tuple[str, ...] | None = None  # keyword options; None: not known (**kwargs)
    argument: str | None = None  # the option that ``name:VALUE`` sets


OPTIMIZERS: dict[str, OptimizerSpec] = {}


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


def register_optimizer(
    name: str,
    default_lr: float,
    closure: str | None = None,
    description: str = "",
    needs_model: bool = False,
    signature: Callable | None = None,
    argument: str | None = None,
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
            name, factory, default_lr, closure, description, needs_model, options, argument
        )
        return factory

    return add


def split_name(name: str) -> tuple[str, str | None]:
    """An optimizer name and the value it carries: ``"l2o:runs/m/optimizer.pt"`` →
    ``("l2o", "runs/m/optimizer.pt")`` for an optimizer with an ``argument``; any other
    name → ``(name, None)``."""
    base, sep, value = name.partition(":")
    spec = OPTIMIZERS.get(base)
    if sep and value and spec is not None and spec.argument is not None:
        return base, value
    return name, None


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """The registered optimizer ``name`` (``name:VALUE`` allowed); ValueError otherwise."""
    name = split_name(name)[0]
    if name in RENAMED and name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: it is now called {RENAMED[name]!r}")
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
    ``name`` may carry its argument, ``"l2o:PATH"``: the same as ``"l2o"`` with ``path=PATH``.
    """
    spec = get_optimizer_spec(name)
    name, value = split_name(name)
    unknown = sorted(set(options) - set(spec.options)) if spec.options is not None else []
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for optimizer {name}; allowed: {', '.join(spec.options)}"
        )
    if value is not None:
        options[spec.argument] = value
    if spec.needs_model:
        if model is None:
            raise ValueError(f"optimizer {name} needs the model (model=...)")
        options["model"] = model
    try:
        return spec.factory(params, lr=spec.default_lr if lr is None else lr, **options)
    except TypeError as e:  # unknown keyword option
        raise ValueError(f"bad option for optimizer {name}: {e}") from None

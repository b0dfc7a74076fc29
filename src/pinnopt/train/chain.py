"""Optimizer chains: ``adam:2000,lbfgs`` parsed once into resolved stages.

A chain is a comma-separated list of stages ``name[:steps]``: each runs its
optimizer for ``steps`` steps, the last one for the rest of the budget. An
optimizer with an ``argument`` (:mod:`pinnopt.optim.registry`) may carry it,
``l2o:PATH[:steps]``: a value after ``l2o:`` that is not an integer is a path,
which must exist. :func:`parse_chain` resolves every stage once: its registry
spec and the options given for its optimizer, checked against what the
optimizer accepts. The config, the trainer and the benchmark matrix all use
that one result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinnopt.optim.registry import OptimizerSpec, get_optimizer_spec, split_name


class ChainOptionError(ValueError):
    """Options that do not fit the chain: for an optimizer it does not use, or unknown."""


@dataclass(frozen=True)
class Stage:
    """One optimizer of a chain and its step count (``None``: the rest of the budget).

    ``optimizer`` is a registry name, or ``"l2o:PATH"`` (see
    :func:`~pinnopt.optim.registry.split_name`); ``spec`` is its registry entry and
    ``options`` the keyword options it is built with."""

    optimizer: str
    steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False)
    spec: OptimizerSpec = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.spec is None:
            object.__setattr__(self, "spec", get_optimizer_spec(self.optimizer))
        allowed = self.spec.options  # None: the optimizer takes any keyword (**kwargs)
        unknown = [] if allowed is None else sorted(set(self.options) - set(allowed))
        if unknown:
            raise ChainOptionError(
                f"unknown option(s) {unknown} for optimizer {self.name}; "
                f"allowed: {', '.join(self.spec.options)}"
            )

    @property
    def name(self) -> str:
        """The registry name, without the argument (``l2o`` for ``l2o:PATH``)."""
        return split_name(self.optimizer)[0]

    @property
    def text(self) -> str:
        """The stage as a chain writes it: ``adam:1000``, ``lbfgs``."""
        return self.optimizer if self.steps is None else f"{self.optimizer}:{self.steps}"


def chain_text(stages: list[Stage]) -> str:
    """A chain as it is written: ``adam:1000,lbfgs``."""
    return ",".join(s.text for s in stages)


def _split_stage(text: str, part: str) -> tuple[str, str, OptimizerSpec]:
    """A stage ``name[:steps]`` or ``name:VALUE[:steps]`` as (name, count text, spec); the name
    of a stage with a value is ``"name:VALUE"``, and for ``l2o`` the file must exist. A
    stage that ends with ``:`` has an empty step count (``lbfgs:``) and is refused."""
    if part.endswith(":"):
        raise ValueError(
            f"optimizer chain {text!r}: empty step count after {part!r}; put a step count "
            f"after the ':' (e.g. {part + '1000'!r}) or remove the ':'"
        )
    name, _, count = part.partition(":")
    name = name.strip()
    spec = get_optimizer_spec(name)
    if spec.argument is None or not count or count.strip().isdigit():
        return name, count, spec
    value, sep, tail = count.rpartition(":")
    if not (sep and tail.strip().isdigit()):
        value, tail = count, ""
    value = value.strip()
    if spec.argument == "path" and not Path(value).is_file():
        raise ValueError(f"optimizer chain {text!r}: {name} file {value!r} does not exist")
    return f"{name}:{value}", tail, spec


def parse_chain(text: str, options: dict[str, dict[str, Any]] | None = None) -> list[Stage]:
    """Parse ``"adam:2000,lbfgs"`` into resolved stages; ValueError names what is wrong.

    ``options`` maps optimizer names of the chain to their keyword options (``{"gn":
    {"solver": "cg"}}``); options for an optimizer that is not in the chain, or that
    it does not accept, are refused. Values must not contain ``,`` nor end with ``:``.
    """
    stages = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"optimizer chain {text!r} has an empty entry; use e.g. 'adam:2000,lbfgs'")
    names = [_split_stage(text, part) for part in parts]
    options = dict(options or {})
    in_chain = list(dict.fromkeys(spec.name for _, _, spec in names))
    extra = sorted(set(options) - set(in_chain))
    if extra:
        raise ChainOptionError(
            f"options for {', '.join(extra)}, which the chain {text} does not use; "
            f"allowed: {', '.join(in_chain)}"
        )
    for i, (name, count, spec) in enumerate(names):
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
        stages.append(Stage(name, steps, dict(options.get(spec.name, {})), spec))
    return stages


def stage_bounds(stages: list[Stage], total: int) -> list[tuple[int, int]]:
    """[start, end) step range of each stage inside a budget of ``total`` steps."""
    bounds, start = [], 0
    for stage in stages:
        end = total if stage.steps is None else min(start + stage.steps, total)
        bounds.append((start, end))
        start = end
    return bounds

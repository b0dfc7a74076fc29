"""One registry shape for every kind of named thing (problems, models, schedules,
learned rules, task families): a dict from name to factory, filled by a decorator
applied beside each class or function. Names are resolved where a config becomes
objects; below that line, code passes objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """Names of one ``kind`` (``"model"``, ``"scheduler"``, …) → their factories."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding a factory under ``name``; a name is registered once."""

        def add(factory: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = factory
            return factory

        return add

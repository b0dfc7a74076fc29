"""The ``[meta_train]`` table of a TOML file and the flags of ``pinnopt meta-train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnopt.config import ConfigError


def flag_error(e: ValueError, flags: dict[str, str]) -> ConfigError:
    """A ValueError ``Invalid FIELD: …`` as a ConfigError naming the flag of FIELD."""
    text = str(e)
    for field, flag in flags.items():
        if text.startswith(f"Invalid {field}:"):
            return ConfigError(f"{flag}: {text}")
    return ConfigError(text)


META_TRAIN_LOOP = {"family": None, "method": None, "out": None, "meta_steps": 100,
                   "episodes": 4, "val_every": 10, "val_episodes": 4, "patience": None,
                   "test_episodes": 4, "seed": 0}  # fmt: skip
META_TRAIN_FLAGS = {"family": "--family", "method": "--method", "out": "--out",
                    "meta_steps": "--meta-steps", "inner_steps": "--inner-steps",
                    "unroll_steps": "--unroll-steps", "meta_lr": "--meta-lr",
                    "inner_lr": "--inner-lr", "meta_objective": "--meta-objective",
                    "episodes_per_step": "--episodes", "val_every": "--val-every",
                    "val_episodes": "--val-episodes", "seed": "--seed", "patience": "--patience",
                    "test_episodes": "--test-episodes"}  # fmt: skip


def read_meta_train_file(path: Path) -> dict[str, dict[str, Any]]:
    """The ``[meta_train]`` table of a TOML file as {"loop", "family_options", "rule"}:
    the loop's keys (``META_TRAIN_LOOP``), ``[meta_train.family_options]`` (the task
    family's options) and ``[meta_train.rule]`` (``MetaOptimizerConfig`` fields)."""
    import dataclasses
    import tomllib

    from pinnopt.learned.meta import MetaOptimizerConfig

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: cannot read {str(path)!r}: {e}") from None
    table = data.get("meta_train")
    if not isinstance(table, dict):
        raise ConfigError(f"--config: {str(path)!r} has no [meta_train] table")
    loop = {k: v for k, v in table.items() if k not in ("family_options", "rule")}
    unknown = sorted(set(loop) - set(META_TRAIN_LOOP))
    if unknown:
        raise ConfigError(f"meta_train: unknown key(s) {unknown}; allowed: "
                          f"{', '.join(META_TRAIN_LOOP)}, family_options, rule")  # fmt: skip
    rule = table.get("rule", {})
    fields = [f.name for f in dataclasses.fields(MetaOptimizerConfig)
              if f.name not in ("method", "seed")]  # fmt: skip
    unknown = sorted(set(rule) - set(fields))
    if unknown:
        raise ConfigError(f"meta_train.rule: unknown field(s) {unknown} (method and seed go "
                          f"in [meta_train]); allowed: {', '.join(fields)}")  # fmt: skip
    return {"loop": loop, "family_options": table.get("family_options", {}), "rule": rule}

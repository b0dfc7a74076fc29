"""The pre-trained PINN rule shipped inside the package: what ``--optimizer l2o`` uses
when it is given no file.

``rules/pinn_l2o.pt`` is an ``l2o`` rule saved by :meth:`MetaOptimizer.save`;
``rules/pinn_l2o.json`` records how it was made (the command, the task families it
was meta-trained on, its held-out figures) and its SHA-256, which
:func:`shipped_rule` checks before the file is used. ``benchmarks/ship_l2o_rule.py``
writes both from a ``benchmarks/learned_vs_adam.py`` run.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

RULES = Path(__file__).with_name("rules")
SHIPPED_RULE = RULES / "pinn_l2o.pt"
SHIPPED_RULE_INFO = RULES / "pinn_l2o.json"


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_rule_info() -> dict:
    """The provenance record of the shipped rule (``rules/pinn_l2o.json``)."""
    return json.loads(SHIPPED_RULE_INFO.read_text())


@cache
def shipped_rule() -> Path:
    """The path of the shipped rule, after checking it against its recorded checksum
    (RuntimeError if the file was changed or is missing: a broken install)."""
    if not SHIPPED_RULE.is_file():
        raise RuntimeError(f"the shipped l2o rule {SHIPPED_RULE} is missing: reinstall pinnopt")
    recorded = shipped_rule_info()["sha256"]
    if sha256(SHIPPED_RULE) != recorded:
        raise RuntimeError(
            f"the shipped l2o rule {SHIPPED_RULE} does not match its recorded SHA-256 "
            f"{recorded}: reinstall pinnopt"
        )
    return SHIPPED_RULE

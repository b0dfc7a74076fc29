"""Recipes: the configuration behind each problem's best measured figure.

A recipe is a partial config (TOML sections) that a run starts from when it asks for
one (``[problem] recipe = true``; the command line asks by default, ``--no-recipe``
declines) and chooses no optimizer: whatever the run's own config or flags give
(``--steps``, ``--width``, ``[sampling] period``…) overrides that part of the recipe,
and a config that names an optimizer has chosen its own method, so no recipe is used
at all. A section whose method the run chooses (``[sampling] method``, ``[weighting]
method``, ``[causal] method``) is taken whole from the run, not mixed with the
recipe's knobs for another method.

The figures each recipe reaches, with the ablations that show which of its pieces
matter, are measured by ``benchmarks/hard_problems.py`` (docs/hard_problems.md); the
other problems' by ``benchmarks/problems.py`` (docs/problems_table.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# sections whose method key, when the run gives it, takes the whole section from the run
METHOD_KEYS = {
    "optim": "optimizer",
    "sampling": "method",
    "weighting": "method",
    "causal": "method",
}


@dataclass(frozen=True)
class Recipe:
    """A partial config (section -> key -> value) and a one-line summary for `pinnopt list`."""

    config: dict[str, dict[str, Any]]

    def summary(self) -> str:
        """e.g. ``adam:1000,ssbroyden · 8x20 · rad/500 · 600 s``."""
        c = self.config
        parts = [c.get("optim", {}).get("optimizer", "adam:1000,lbfgs")]
        model = c.get("model", {})
        if "width" in model or "depth" in model:
            parts.append(f"{model.get('depth', 2)}x{model.get('width', 32)}")
        if c.get("problem", {}).get("constraints") == "exact":
            parts.append("constraints exact")
        for section in ("sampling", "weighting", "causal"):
            method = c.get(section, {}).get("method")
            if method not in (None, "fixed", "none"):
                period = c[section].get("period")
                name = "causal weights" if section == "causal" else method
                parts.append(name if period is None else f"{name}/{period}")
        windows = c.get("causal", {}).get("windows", 1)
        if windows > 1:
            parts.append(f"{windows} time windows")
        training = c.get("training", {})
        if training.get("steps", 100_000) < 100_000:
            parts.append(f"{training['steps']} steps")
        if "time_limit" in training:
            per = " per window" if windows > 1 else ""
            parts.append(f"{training['time_limit']:g} s{per}")
        return " · ".join(parts)


def _gn(seconds: float, steps: int = 100_000, **sections: dict[str, Any]) -> Recipe:
    """Gauss–Newton for ``seconds`` (or ``steps``), with other sections on top."""
    config = {"optim": {"optimizer": "gn"}, "training": {"steps": steps, "time_limit": seconds}}
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return Recipe(config)


# the hard set: measured by benchmarks/hard_problems.py (docs/hard_problems.md); a
# marching recipe's time limit is per window (5 windows × 36 s = 180 s)
HARD = {
    "poisson2d": _gn(
        60,
        problem={"constraints": "exact", "points": {"pde": 4000}},
        model={"depth": 1, "width": 128},
    ),
    "burgers1d": Recipe({
        "model": {"depth": 8, "width": 20},
        "optim": {"optimizer": "adam:1000,ssbroyden"},
        "sampling": {"method": "rad", "period": 500},
        "training": {"steps": 100_000, "time_limit": 180},
    }),
    "wave1d": _gn(180, weighting={"method": "grad_norm"}, causal={"method": "weights"}),
    "helmholtz2d": _gn(180, problem={"constraints": "exact"}),
    "allen_cahn1d": _gn(36, causal={"windows": 5}),
    "convection1d": _gn(36, causal={"windows": 5}),
    "navier_stokes2d": _gn(180),
}  # fmt: skip
# the others: the configuration of their gn row in docs/problems_table.md
# (benchmarks/problems.py: 6000 steps or 120 s)
OTHERS = {
    name: _gn(120, steps=6000)
    for name in ("poisson1d", "poisson3d", "poisson5d", "poisson_lshape", "heat1d",
                 "reaction1d", "burgers1d_inverse")
}  # fmt: skip
RECIPES: dict[str, Recipe] = {**HARD, **OTHERS}


def recipe_for(problem: str) -> Recipe | None:
    """The recipe of ``problem``, or None when it has none."""
    return RECIPES.get(problem)


def with_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a config as nested dicts) on top of its problem's recipe, when it asks for
    one and names no optimizer; otherwise ``data`` with ``recipe`` set to false (so that
    the resolved config says whether a recipe was used)."""
    problem = data.get("problem", {})
    if not isinstance(problem, dict) or problem.get("recipe") is not True:
        return data
    name = problem.get("name", "poisson2d")
    recipe = RECIPES.get(name) if isinstance(name, str) else None
    optim = data.get("optim", {})
    if recipe is None or (isinstance(optim, dict) and "optimizer" in optim):
        return {**data, "problem": {**problem, "recipe": False}}
    out = copy.deepcopy(recipe.config)
    for section, values in data.items():
        if not isinstance(values, dict):
            out[section] = values  # not a table: the config check names it
        elif METHOD_KEYS.get(section) in values:
            out[section] = dict(values)
        else:
            out[section] = {**out.get(section, {}), **values}
    return out

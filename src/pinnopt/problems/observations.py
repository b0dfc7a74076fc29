"""Observation data as residual terms: r_i = u_c(x_i) − y_i at measured points.

Each observed component c becomes one term (``"data"`` for one component,
``"data_<c>"`` for several) whose points carry their measured value as an extra last
column (``Term.data_columns = 1``), so that the values travel with the points through
sampling, the per-point Jacobian and sharding. Data come from Python
(:func:`observation_terms`) or from a file (:func:`read_observations`): a CSV with a
header row, or an NPZ of 1-D arrays, named by the problem's input names and the
observed components' names.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinnopt.derivatives import Jet
from pinnopt.problems.base import Problem, Term


def observation_terms(
    points: Tensor,
    values: Tensor | dict[str, Tensor],
    components: tuple[str, ...] = ("u",),
    weight: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
) -> list[Term]:
    """Terms fitting the network to ``values`` at ``points`` (N, d).

    ``values`` is (N,) for one component or a dict component → (N,) (a subset of
    ``components``, the problem's output names). ``noise`` > 0 adds Gaussian noise of
    standard deviation ``noise`` · std(values) to each component (Raissi, Perdikaris &
    Karniadakis 2019 use 0.01), drawn from ``seed``. A term's n is its number of
    observations; asking for fewer points draws a subset, more is refused.
    """
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"observations: points must have shape (N, d), got {tuple(points.shape)}")
    if not isinstance(values, dict):
        values = {components[0]: values}
    if not values:
        raise ValueError("observations: no observed component")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"observations: noise must be >= 0, got {noise}")
    generator = torch.Generator().manual_seed(seed)
    terms = []
    for name, v in values.items():
        if name not in components:
            raise ValueError(
                f"observations: unknown component {name!r}; allowed: {', '.join(components)}"
            )
        v = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
        if v.shape[0] != points.shape[0]:
            raise ValueError(
                f"observations: {v.shape[0]} values of {name!r} for {points.shape[0]} points"
            )
        _check_finite(torch.cat([points, v[:, None]], 1), f"observations of {name!r}")
        if noise:
            v = v + noise * v.std() * torch.randn(v.shape, generator=generator, dtype=v.dtype)
        term = "data" if len(values) == 1 else f"data_{name}"
        terms.append(_term(term, name, torch.cat([points, v[:, None]], 1), weight))
    return terms


def _term(term: str, component: str, rows: Tensor, weight: float) -> Term:
    total = rows.shape[0]

    def sample(n: int, g: torch.Generator) -> Tensor:
        if n > total:
            raise ValueError(f"term {term!r} has {total} observations; points must be <= {total}")
        if n == total:
            return rows.clone()
        return rows[torch.randperm(total, generator=g)[:n].sort().values]

    def residual(u: Jet, x: Tensor) -> Tensor:
        return u.of(component) - x[:, -1]

    return Term(term, sample, residual, order=0, n=total, weight=weight, data_columns=1)


def read_observations(
    path: str | Path, input_names: tuple[str, ...], components: tuple[str, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """(points (N, d), {component: values (N,)}) from a CSV (header row) or NPZ file.

    The file must have one column per input name and at least one column named by a
    component; any other column, a missing input, unequal lengths or a NaN is refused
    with a ValueError naming the file and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"observation file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as data:
            columns = {k: np.asarray(data[k], dtype=np.float64).reshape(-1) for k in data.files}
    elif path.suffix == ".csv":
        columns = _read_csv(path)
    else:
        raise ValueError(f"observation file {path}: must end in .csv or .npz, got {path.suffix!r}")
    allowed = (*input_names, *components)
    unknown = [k for k in columns if k not in allowed]
    if unknown:
        raise ValueError(
            f"observation file {path}: unknown column(s) {unknown}; allowed: {', '.join(allowed)}"
        )
    missing = [k for k in input_names if k not in columns]
    if missing:
        raise ValueError(f"observation file {path}: missing input column(s) {missing}")
    observed = [c for c in components if c in columns]
    if not observed:
        raise ValueError(
            f"observation file {path}: no observed component; name a column "
            f"{' or '.join(components)}"
        )
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"observation file {path}: columns must be non-empty and of equal length")
    for k, v in columns.items():
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(
                f"observation file {path}: column {k!r} has {int(bad.sum())} non-finite "
                f"value(s) (NaN or Inf), the first in row {int(bad.argmax()) + 1}"
            )
    points = torch.from_numpy(np.stack([columns[k] for k in input_names], 1))
    return points, {c: torch.from_numpy(columns[c]) for c in observed}


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"observation file {path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise ValueError(f"observation file {path}: repeated column names in {header}")
    body = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(
                f"observation file {path}: line {i} has {len(row)} values, the header {len(header)}"
            )
        try:
            body.append([float(v) for v in row])
        except ValueError:
            raise ValueError(f"observation file {path}: line {i} holds a non-number") from None
    table = np.array(body, dtype=np.float64)
    return {h: table[:, j] for j, h in enumerate(header)}


def _check_finite(rows: Tensor, what: str) -> None:
    bad = ~torch.isfinite(rows).all(dim=1)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} row(s) with NaN or Inf values")


def with_observations(problem: Problem, path: str | Path, weight: float = 1.0) -> Problem:
    """``problem`` with the observations in ``path`` as terms (replacing terms of the
    same names, e.g. an inverse problem's own ``"data"``)."""
    points, values = read_observations(path, problem.input_names, problem.components)
    terms = observation_terms(points, values, problem.components, weight)
    names = {t.name for t in terms}
    kept = [t for t in problem.terms if t.name not in names]
    return replace(problem, terms=kept + terms)

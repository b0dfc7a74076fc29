"""What a benchmark matrix runs: one config per (problem, optimizer, seed).

Every run derives from one base config (a TOML file, or the defaults), in three
layers: the bench defaults (:data:`BENCH_DEFAULTS`: a large step budget, so that the
wall-clock limit is what stops a run), then the fields the base config sets, then the
command-line flags. Each run then gets its problem, optimizer chain, seed and run
directory ``DIR/runs/<problem>/<optimizer-slug>/seed<k>``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinnopt.config import Config, ConfigError, make_config, merge
from pinnopt.problems import PROBLEMS

# beneath the base config: a run ends at its time limit, not its step budget
BENCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "training": {"steps": 10**7, "time_limit": 60.0},
}
DEFAULT_OPTIMIZERS = ("adam", "lbfgs", "gn", "kfac", "adam:1000,lbfgs")


@dataclass(frozen=True)
class Run:
    """One cell of the matrix and the config that runs it."""

    problem: str
    optimizer: str
    seed: int
    config: Config

    @property
    def out_dir(self) -> Path:
        return self.config.out_dir()


def canonical_chain(text: str) -> str:
    """``text`` without spaces around its stages (``"adam:10, lbfgs"`` → ``"adam:10,lbfgs"``);
    the config of each run parses it (:func:`pinnopt.train.chain.parse_chain`)."""
    return ",".join(part.strip() for part in text.split(","))


def slug(optimizer: str) -> str:
    """A directory name for an optimizer chain: ``adam:1000,lbfgs`` → ``adam-1000+lbfgs``,
    ``l2o:runs/m/optimizer.pt`` → ``l2o-runs_m_optimizer.pt`` (one level, not nested)."""
    text = canonical_chain(optimizer).replace(":", "-").replace(",", "+")
    return text.replace("/", "_").replace("\\", "_")


def run_dir(out: str | Path, problem: str, optimizer: str, seed: int) -> Path:
    """Where the run (problem, optimizer, seed) of the matrix in ``out`` writes."""
    return Path(out) / "runs" / problem / slug(optimizer) / f"seed{seed}"


def plan(
    base: dict[str, Any],
    problems: list[str] | None,
    optimizers: list[str] | None,
    seeds: int,
    out: str | Path,
) -> list[Run]:
    """The matrix problems × optimizers × seeds 0..seeds-1, every config validated.

    ``base`` holds the fields the base config sets, flags included (section → key →
    value). Problems default to the base's problem if it names one, else every
    registered problem; optimizers likewise to the base's chain or
    :data:`DEFAULT_OPTIMIZERS`. ConfigError names the bad field.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    if not problems:
        name = base.get("problem", {}).get("name")
        problems = [name] if name else sorted(PROBLEMS)
    if not optimizers:
        chain = base.get("optim", {}).get("optimizer")
        optimizers = [chain] if chain else list(DEFAULT_OPTIMIZERS)
    problems = _unique("--problems", [_problem(p) for p in problems])
    optimizers = _unique("--optimizers", [canonical_chain(o) for o in optimizers])
    data = merge(BENCH_DEFAULTS, base)
    runs = []
    for problem in problems:
        for optimizer in optimizers:
            for seed in range(seeds):
                cell = {
                    "problem": {"name": problem},
                    "optim": {"optimizer": optimizer},
                    "training": {"seed": seed},
                    "output": {"out": str(run_dir(out, problem, optimizer, seed)), "quiet": True},
                }
                runs.append(Run(problem, optimizer, seed, _cell_config(merge(data, cell))))
    return runs


def _cell_config(data: dict[str, Any]) -> Config:
    """The validated config of one run; a bad chain names ``--optimizers``."""
    try:
        return make_config(data)
    except ConfigError as e:
        text = str(e)
        if text.startswith("optim.optimizer: "):
            raise ConfigError(f"--optimizers: {text.removeprefix('optim.optimizer: ')}") from None
        raise


def check_buildable(runs: list[Run]) -> None:
    """Build (not train) each (problem, optimizer) once, so that bad problem parameters,
    points, weights or optimizer options fail before any run starts (ConfigError)."""
    from pinnopt.solve import build_trainer  # torch-heavy: import on use

    seen = set()
    for run in runs:
        if (run.problem, run.optimizer) not in seen:
            seen.add((run.problem, run.optimizer))
            build_trainer(run.config)


def _problem(name: str) -> str:
    name = name.strip()
    if name not in PROBLEMS:
        raise ConfigError(
            f"--problems: unknown problem {name!r}; allowed: {', '.join(sorted(PROBLEMS))}"
        )
    return name


def _unique(flag: str, values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{flag}: given more than once: {', '.join(repeated)}")
    return values


def bench_command(problems, optimizers, seeds, out, config, flags, quiet) -> str:
    """The ``pinnopt bench`` command line that the given options spell."""
    words = ["pinnopt", "bench"]
    if problems:
        words += ["--problems", *problems]
    if optimizers:
        words += ["--optimizers", *optimizers]
    for section in flags.values():
        for key, value in section.items():
            if value is not None:
                flag = {"kind": "model"}.get(key, key).replace("_", "-")
                words += [f"--{flag}", str(value)]
    words += ["--seeds", str(seeds), "--out", str(out)]
    words += ["--config", str(config)] if config is not None else []
    words += ["--quiet"] if quiet else []
    return shlex.join(words)

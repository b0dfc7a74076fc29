"""``pinnopt blowup EQUATION``: a self-similar blow-up profile and its rate λ (the command
line of :mod:`pinnopt.blowup`; :mod:`pinnopt.cli` registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pinnopt.config import ConfigError
from pinnopt.train.interrupts import StopRequest, exit_code


def blowup(
    equation: Annotated[str, typer.Argument(help="The equation: burgers or ccf.")],
    order: Annotated[int, typer.Option(help="Profile order n >= 0 (0: stable).")] = 0,
    lambda_mode: Annotated[
        str | None,
        typer.Option(
            "--lambda-mode",
            help="burgers: trainable [default], projection, funnel; "
            "ccf: funnel [order 0], branch [orders >= 1], trainable.",
        ),
    ] = None,
    bracket: Annotated[
        tuple[float, float] | None,
        typer.Option(help="ccf: search λ in [LO, HI] [the equation's, 0.3 1.5]."),
    ] = None,
    target: Annotated[
        float, typer.Option(help="ccf: refine until the max relative residual is below.")
    ] = 1e-12,
    lambda0: Annotated[
        float | None,
        typer.Option("--lambda0", help="Starting λ (default: --hypernet, else λ_n·0.95)."),
    ] = None,
    hypernet: Annotated[
        Path | None, typer.Option(help="A saved LambdaHyperNet whose prediction starts λ.")
    ] = None,
    degree: Annotated[
        int | None,
        typer.Option(help="Degree [burgers: 100, 200, 300 until max|R| < 1e-13; ccf: up to 39]."),
    ] = None,
    points: Annotated[int, typer.Option(help="Collocation points (> degree).")] = 400,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="GN steps [burgers 200; ccf 30 a stage].")
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", help="Wall-clock budget in seconds (default: none)."),
    ] = None,
    funnel_scan: Annotated[
        int | None,
        typer.Option("--funnel-scan", help="Funnel trainings at λ(1±10^-k), k=1..K."),
    ] = None,
    threads: Annotated[int, typer.Option(help="Torch threads (0: PyTorch's default).")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Run directory [a new runs/blowup-EQUATION-ORDER-N].")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run already in --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Find a self-similar blow-up profile and its rate λ; write a run directory.

    Ctrl-C or SIGTERM stops the run before its next Gauss–Newton step; the run
    directory is still written (status "interrupted") and the exit code is 128 + signal.
    """
    from pinnopt.blowup.catalog import EQUATIONS, get_equation
    from pinnopt.blowup.run import RUN_FILES, OptionError, burgers_summary, run_burgers
    from pinnopt.train.run_directory import holds_run, next_run_dir

    try:
        chosen = get_equation(equation)
    except ValueError:
        allowed = ", ".join(EQUATIONS)
        raise ConfigError(f"equation: unknown {equation!r}; allowed: {allowed}") from None
    if threads < 0:
        raise ConfigError(f"--threads: must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if out is None:
        out = next_run_dir("runs", f"blowup-{equation}-{order}")
    elif not overwrite and holds_run(out, RUN_FILES):
        raise ConfigError(f"--out: {out} already holds a run; choose another folder or "
                          "overwrite it (--overwrite)")  # fmt: skip
    from pinnopt.blowup.series_run import run_series, series_summary

    with StopRequest() as stop:
        try:
            if chosen.ansatz == "analytic":
                steps = _given(max_steps, 30)
                m = run_series(chosen.name, order, out, lambda_mode, lambda0, bracket,
                               _given(degree, 39), target, funnel_scan or 0, quiet, time_limit,
                               lambda: stop.requested, stage_steps=steps)  # fmt: skip
            else:
                steps = _given(max_steps, 200)
                m = run_burgers(order, out, lambda_mode or "trainable", lambda0, hypernet, quiet,
                                degree, points, steps, funnel_scan, time_limit,
                                lambda: stop.requested)  # fmt: skip
        except OptionError as e:
            raise ConfigError(str(e)) from None
    summary = series_summary if chosen.ansatz == "analytic" else burgers_summary
    Console(soft_wrap=True).print(summary(m, out), highlight=False)  # one line per line
    if stop.requested:  # the files are written; report the signal as a shell would
        raise typer.Exit(code=exit_code(stop.signum))


def _given(value, default):
    return default if value is None else value

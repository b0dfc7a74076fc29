"""``pinnopt`` command line: one command per job.

Bad input (unknown problem, optimizer or key, wrong type, negative step count,
missing file, corrupt checkpoint) prints one line naming the field and what is
allowed, and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pinnopt.blowup_command import blowup
from pinnopt.config import ConfigError, load_config, make_config, merge
from pinnopt.meta_train_config import (
    META_TRAIN_FLAGS,
    META_TRAIN_LOOP,
    flag_error,
    read_meta_train_file,
)
from pinnopt.run_report import problem_params, result_lines, start_line
from pinnopt.train.checkpoint import CheckpointError
from pinnopt.train.distributed import (
    ProcessGroupError,
    launch_torchrun,
    launched_by_torchrun,
    split_nproc,
)
from pinnopt.train.interrupts import StopRequest, exit_code

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Physics-informed neural networks trained to high precision.",
)

EXIT_BAD_INPUT = 2
EXIT_EXPLODED = 3  # meta-train stopped on exploding meta-gradients (its files are written)
EXIT_INTERRUPTED = 130  # Ctrl-C; a run stopped by SIGTERM exits with 143 (128 + signal)


def _version(value: bool) -> None:
    if value:
        print(f"pinnopt {package_version('pinnopt')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Physics-informed neural networks trained to high precision."""


@app.command()
def solve(
    ctx: typer.Context,
    problem: Annotated[
        str | None, typer.Argument(help="Problem name (see `pinnopt list`).")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="Optimizer name or chain, e.g. adam:1000,lbfgs.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Problem parameter NAME=VALUE (see `pinnopt list`); repeatable."),
    ] = None,
    constraints: Annotated[
        str | None,
        typer.Option(help="soft (penalty terms) or exact (u = g + d*N, where declared) [soft]."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Observations (CSV or NPZ) to fit, as terms 'data*'.")
    ] = None,
    sampling: Annotated[
        str | None,
        typer.Option(help="Collocation: fixed, resample, rad, rar_d or r3 ([sampling]) [fixed]."),
    ] = None,
    weighting: Annotated[
        str | None,
        typer.Option(help="Loss balancing: fixed, grad_norm, ntk, relobralo, sa or rba [fixed]."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="mlp or chebykan.")] = None,
    width: Annotated[int | None, typer.Option(help="Hidden units per layer.")] = None,
    depth: Annotated[int | None, typer.Option(help="Hidden layers.")] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Step budget of the optimizer chain (per network with --networks)."),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Wall-clock budget in seconds.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of first-order stages.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float64 or float32.")] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (0: PyTorch's default) [1].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory [a new runs/PROBLEM-N].")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run already in --out.")
    ] = False,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory from its checkpoint.")
    ] = None,
    networks: Annotated[
        int | None,
        typer.Option(
            help="Networks of multi-stage training, each fitting what the previous left "
            "(each gets the full --steps and --time-limit); 1: one network."
        ),
    ] = None,
    causal: Annotated[
        str | None, typer.Option(help="Causal weights with epsilon EPS, or a list 0.01,0.1,1.")
    ] = None,
    windows: Annotated[
        int | None, typer.Option(help="Time-marching windows, each with the full --steps [1].")
    ] = None,
    recipe: Annotated[
        bool | None,
        typer.Option(
            "--recipe/--no-recipe",
            help="Start from the problem's recipe when no optimizer is chosen [recipe].",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(help="Processes on this machine, started by torchrun, sharing the points."),
    ] = None,  # read and removed by main(), which starts torchrun
) -> None:
    """Train a PINN on PROBLEM and write a run directory.

    With no --optimizer (and none in --config), the run starts from PROBLEM's recipe,
    the configuration behind its best measured figure (`pinnopt list` shows it); any
    other flag or config key overrides that part of it. --no-recipe: library defaults.

    Ctrl-C or SIGTERM stops at the next step and still writes the run directory
    (checkpoint, metrics, history, plots); exit code 130 (SIGINT) or 143 (SIGTERM).
    """
    import torch.distributed

    from pinnopt.solve import check_causal, on_main, output_config, resume_config
    from pinnopt.solve import solve as run_solve
    from pinnopt.train.causal import parse_epsilon
    from pinnopt.train.distributed import Sync, init_from_environment

    if problem is None and config is None and resume is None:
        print(ctx.get_help())
        raise ConfigError("PROBLEM: missing; e.g. `pinnopt solve poisson2d` (see `pinnopt list`)")

    overrides: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    put("training", "steps", steps)
    put("training", "time_limit", time_limit)
    put("training", "threads", threads)
    put("output", "quiet", True if quiet else None)
    if resume is not None:
        given = [problem, optimizer, model, width, depth, lr, seed, dtype, config, out, networks]
        given += [param, constraints, data, sampling, weighting]
        given += [causal, windows, recipe]
        if any(v is not None for v in given) or overwrite:
            raise ConfigError(
                "--resume: only --steps, --time-limit, --threads and --quiet may be changed"
            )
        cfg = resume_config(resume, overrides)
    else:
        put("problem", "name", problem)
        put("problem", "params", problem_params(param) if param else None)
        put("problem", "constraints", constraints)
        put("problem", "data", str(data) if data is not None else None)
        put("sampling", "method", sampling)
        put("weighting", "method", weighting)
        put("optim", "optimizer", optimizer)
        put("optim", "lr", lr)
        put("model", "kind", model)
        put("model", "width", width)
        put("model", "depth", depth)
        put("training", "seed", seed)
        put("training", "dtype", dtype)
        put("training", "networks", networks)
        try:
            put("causal", "epsilon", None if causal is None else parse_epsilon(causal))
        except ValueError as e:
            raise ConfigError(f"--causal: {e}") from None
        put("causal", "method", None if causal is None else "weights")
        put("causal", "windows", windows)
        put("problem", "recipe", recipe)
        put("output", "out", str(out) if out is not None else None)
        base = {"problem": {"recipe": True}}  # the command line asks for recipes by default
        if config is not None:
            cfg = load_config(config, overrides, base)
        else:
            cfg = make_config(merge(base, overrides))
        check_causal(cfg)  # needs the problem; before output_config may clear a run
    joined = init_from_environment(cfg.training.device)  # one of several processes (torchrun)
    sync = Sync()
    if resume is None:
        cfg = on_main(sync, output_config, cfg, overwrite)  # rank 0 picks the folder
    console = Console(highlight=False, soft_wrap=True, quiet=not sync.is_main)  # soft wrap:
    console.print(start_line(cfg, resume is not None))  # no line break in a number
    try:
        with StopRequest() as stop:  # a signal stops the run, then we report and exit here
            metrics = run_solve(cfg, resume=resume is not None, overwrite=overwrite)
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    for line in result_lines(metrics, cfg.out_dir()):
        console.print(line)
    if stop.requested:
        console.print(f"interrupted: resume with `pinnopt solve --resume {cfg.out_dir()}`")
        raise typer.Exit(code=exit_code(stop.signum))


@app.command(name="list")
def list_components() -> None:
    """Show problems, models, optimizers and schedulers."""
    from pinnopt.models import ACTIVATIONS, INITIALIZERS, MODELS
    from pinnopt.optim import OPTIMIZERS
    from pinnopt.problems import PROBLEMS, get_problem
    from pinnopt.recipes import RECIPES
    from pinnopt.train.schedulers import SCHEDULERS

    console = Console(soft_wrap=True, highlight=False)  # one line per problem
    console.print("problems (`pinnopt solve NAME`, parameters by --param NAME=VALUE; with no "
                  "--optimizer a run starts from the recipe shown):")  # fmt: skip
    for name in sorted(PROBLEMS):
        p = get_problem(name)
        marks = [f"{','.join(p.input_names)} -> {','.join(p.components)}"]
        marks += [f"{k}={v:g}" for k, v in p.params.items()]
        marks += [f"periodic {p.input_names[i]}" for i in p.periodic]
        marks += [f"identifies {k}" for k in p.unknowns]
        marks += ["exact constraint"] if p.constraint is not None else []
        marks += [f"recipe {RECIPES[name].summary()}"] if name in RECIPES else []
        console.print(f"  {name:18s} {p.description}  [{'; '.join(marks)}]", markup=False)
    table = Table(title="optimizers")
    table.add_column("name")
    table.add_column("default lr")
    table.add_column("description")
    for name, spec in sorted(OPTIMIZERS.items()):
        table.add_row(name, f"{spec.default_lr:g}", spec.description)
    console.print(table)
    console.print(f"models: {', '.join(MODELS)}")
    console.print(f"activations: {', '.join(ACTIVATIONS)}")
    console.print(f"initializers: {', '.join(INITIALIZERS)}")
    console.print(f"schedulers: {', '.join(SCHEDULERS)}")


@app.command()
def bench(
    problems: Annotated[
        list[str] | None,
        typer.Option(help="Problems, space- or comma-separated (default: all, or the config's)."),
    ] = None,
    optimizers: Annotated[
        list[str] | None,
        typer.Option(
            help="Optimizers or chains, space-separated: --optimizers gn adam:1000,lbfgs."
        ),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Wall-clock seconds per run (60).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..K-1 per problem and optimizer.")] = 1,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/bench"),
    model: Annotated[str | None, typer.Option(help="mlp or chebykan.")] = None,
    width: Annotated[int | None, typer.Option(help="Hidden units per layer.")] = None,
    depth: Annotated[int | None, typer.Option(help="Hidden layers.")] = None,
    steps: Annotated[int | None, typer.Option(help="Step budget per run (10**7).")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per run (0: PyTorch's default) [1].")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", help="Steps between error evaluations.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Base TOML config of every run.")] = None,
    jobs: Annotated[int, typer.Option(help="Cells run at a time, in local processes.")] = 1,
    ray: Annotated[
        str | None,
        typer.Option(help="Run the cells as Ray tasks: --ray (a local Ray) or --ray ADDRESS."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run every problem × optimizer × seed; write results.csv, results.md and plots to OUT.

    Cells already done in OUT (same config, finished) are read back, not run again."""
    from pinnopt.bench.matrix import bench_command, check_buildable, plan
    from pinnopt.bench.pool import import_ray
    from pinnopt.bench.report import write_report
    from pinnopt.bench.runner import run_matrix

    # only what the file says (each run's config is validated, and its chain parsed, once)
    data = load_config(config).model_dump(exclude_unset=True) if config is not None else {}
    flags = {
        "model": {"kind": model, "width": width, "depth": depth},
        "training": dict(
            time_limit=time_limit, steps=steps, threads=threads, eval_every=eval_every
        ),
    }
    data = merge(data, {k: {f: v for f, v in d.items() if v is not None} for k, d in flags.items()})
    names = [p for entry in problems or [] for p in entry.split(",") if p.strip()]
    if jobs < 1:
        raise ConfigError(f"--jobs: must be an integer >= 1, got {jobs}")
    if ray is not None:
        if jobs != 1:
            raise ConfigError("--jobs: Ray schedules the cells itself; give --jobs or --ray")
        try:
            import_ray()
        except ImportError as e:
            raise ConfigError(f"--ray: {e}") from None
    runs = plan(data, names, optimizers, seeds, out)
    check_buildable(runs)
    command = bench_command(problems, optimizers, seeds, out, config, flags, quiet)
    command += f" --jobs {jobs}" if jobs > 1 else f" --ray {ray}" if ray else ""
    console = Console()
    with StopRequest() as stop:  # Ctrl-C / SIGTERM: the current run stops and is saved
        rows = run_matrix(runs, out, command, console, quiet, jobs, ray)
    paths = write_report(out)
    console.print(f"{len(rows)} of {len(runs)} runs; results in {out}:", highlight=False)
    for name in ["results.csv", *paths]:
        console.print(f"  {out / name}", highlight=False, soft_wrap=True)
    if stop.requested:
        raise typer.Exit(code=exit_code(stop.signum))


app.command(name="blowup")(blowup)


@app.command(name="meta-train")
def meta_train(
    family: Annotated[
        str | None, typer.Option(help="Task family: quadratic, sinusoid, digits or poisson.")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="lstm, meta_sgd, warp_grad, l2o or schedule.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (optimizer.pt, ...).")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML file with a [meta_train] table.")
    ] = None,
    meta_steps: Annotated[
        int | None, typer.Option("--meta-steps", help="Meta-steps [100].")
    ] = None,
    inner_steps: Annotated[
        int | None, typer.Option("--inner-steps", help="Steps of one inner run [20].")
    ] = None,
    unroll_steps: Annotated[
        int | None, typer.Option("--unroll-steps", help="Truncation length of the BPTT [20].")
    ] = None,
    meta_lr: Annotated[
        float | None, typer.Option("--meta-lr", help="Adam's lr on the rule [1e-3].")
    ] = None,
    inner_lr: Annotated[
        float | None,
        typer.Option(
            "--inner-lr",
            help="Base lr (l2o, schedule), α (warp_grad), initial α (meta_sgd) [1e-2].",
        ),
    ] = None,
    meta_objective: Annotated[
        str | None, typer.Option("--meta-objective", help="loss or log_loss [loss].")
    ] = None,
    first_order: Annotated[
        bool, typer.Option("--first-order", help="Drop ∂g/∂φ from the meta-gradient.")
    ] = False,
    episodes: Annotated[
        int | None, typer.Option("--episodes", help="Train episodes per meta-step [4].")
    ] = None,
    val_every: Annotated[
        int | None, typer.Option("--val-every", help="Meta-steps between validations [10].")
    ] = None,
    val_episodes: Annotated[
        int | None, typer.Option("--val-episodes", help="Validation episodes [4].")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Stop after this many validations without a new best [off]."),
    ] = None,
    test_episodes: Annotated[
        int | None, typer.Option("--test-episodes", help="Test episodes of the final report [4].")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the rule's weights and of the train episodes [0].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Meta-train a learned optimizer on a task family; write OUT/optimizer.pt.

    Flags override the --config file's [meta_train] table, which overrides the defaults.
    """
    import torch.distributed

    from pinnopt.learned.meta import MetaOptimizerConfig
    from pinnopt.learned.tasks import build_family
    from pinnopt.learned.train import check_arguments
    from pinnopt.learned.train import meta_train as run_meta_train
    from pinnopt.train.distributed import Sync, init_from_environment

    given = {"family": family, "method": method, "out": out, "meta_steps": meta_steps,
             "episodes": episodes, "val_every": val_every, "val_episodes": val_episodes,
             "patience": patience, "test_episodes": test_episodes, "seed": seed}  # fmt: skip
    file = read_meta_train_file(config_file) if config_file else {}
    loop = {**META_TRAIN_LOOP, **file.get("loop", {})}
    loop.update({k: v for k, v in given.items() if v is not None})
    for key in ("family", "method", "out"):
        if loop[key] is None:
            raise ConfigError(f"--{key}: required (or meta_train.{key} in --config)")
    family, method, out = loop["family"], loop["method"], Path(loop["out"])
    try:
        fam = build_family(family, **file.get("family_options", {}))
    except ValueError as e:
        where = "meta_train.family_options" if file.get("family_options") else "--family"
        raise ConfigError(f"{where}: {e}") from None
    rule = dict(file.get("rule", {}))
    flags = {"inner_steps": inner_steps, "unroll_steps": unroll_steps, "meta_lr": meta_lr,
             "inner_lr": inner_lr, "meta_objective": meta_objective}  # fmt: skip
    rule.update({k: v for k, v in flags.items() if v is not None})
    if first_order:
        rule["second_order"] = False
    try:
        config = MetaOptimizerConfig(method=method, seed=loop["seed"], **rule)
        check_arguments(loop["meta_steps"], loop["episodes"], loop["val_every"],
                        loop["val_episodes"], loop["seed"], patience=loop["patience"],
                        test_episodes=loop["test_episodes"])  # fmt: skip
    except ValueError as e:
        raise flag_error(e, META_TRAIN_FLAGS) from None
    test_episodes = loop["test_episodes"]
    joined = init_from_environment()  # one of several processes (torchrun): a meta-batch each
    main_process = Sync().is_main
    try:
        m = run_meta_train(fam, config, out, meta_steps=loop["meta_steps"],
                           episodes_per_step=loop["episodes"], val_every=loop["val_every"],
                           val_episodes=loop["val_episodes"], seed=loop["seed"],
                           progress=not quiet, patience=loop["patience"],
                           test_episodes=test_episodes)  # fmt: skip
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    lines = [
        f"{m['method']} on {m['family']}: best val loss {m['best_val_loss']:.3e} at meta-step "
        f"{m['best_meta_step']} (untrained {m['initial_val_loss']:.3e}) after "
        f"{m['meta_steps_done']} meta-steps in {m['wall_time_s']:.1f} s ({m['status']})"
    ]
    if test_episodes:
        lines.append(f"test loss {m['test_loss']:.3e} on {test_episodes} test episodes "
                     f"(untrained {m['untrained_test_loss']:.3e})")  # fmt: skip
    path = m["optimizer"]
    use = f"pinnopt solve … --optimizer l2o:{path}"
    if method == "schedule":
        use = f'scheduler = "learned", scheduler_options = {{ path = "{path}" }}'
    lines.append(f"optimizer: {path}  (use: {use})")
    lines.append(f"run directory: {out}  (optimizer.pt, metrics.json, history.csv, meta_loss.png)")
    Console(quiet=not main_process).print("\n".join(lines), highlight=False, soft_wrap=True)
    if m["status"] == "exploded":  # the files are written, but the run did not finish
        raise typer.Exit(code=EXIT_EXPLODED)


# options whose values may follow them space-separated: `--optimizers gn adam:10,lbfgs`
MULTI_VALUE_OPTIONS = {"bench": ("--problems", "--optimizers")}


def spread_values(argv: list[str]) -> list[str]:
    """Repeat a multi-value option before each of its values, as click expects.

    ``bench --optimizers gn lbfgs --seeds 2`` becomes
    ``bench --optimizers gn --optimizers lbfgs --seeds 2``: the values of such an
    option run up to the next word that starts with ``-``.
    """
    options = MULTI_VALUE_OPTIONS.get(argv[0], ()) if argv else ()
    out, current = [], None
    for word in argv:
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            current = name if name in options else None
        elif current is not None and out[-1] != current:
            out.append(current)
        out.append(word)
    return out


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """pinnopt's own warnings as one line ``warning: …``; others as Python shows them."""
    if "pinnopt" in Path(filename).parts:
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


# flags that were renamed: the old spelling gets an error naming the new one
RENAMED_FLAGS = {"--stages": "--networks"}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; bad input is one line on stderr and exit code 2."""
    argv = spread_values(sys.argv[1:] if argv is None else list(argv))
    for i in reversed(range(len(argv))):  # a bare --ray: a Ray started here
        if argv[i] == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            argv.insert(i + 1, "local")
    try:
        argv, nproc = split_nproc(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if nproc is not None and not launched_by_torchrun():
        return launch_torchrun(argv, nproc)  # `pinnopt solve … --nproc K`
    for word in argv:
        new = RENAMED_FLAGS.get(word.split("=", 1)[0])
        if new is not None:
            print(f"error: {word.split('=', 1)[0]}: renamed; use {new}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # without standalone mode, click returns a command's typer.Exit code
            code = app(args=argv or ["--help"], prog_name="pinnopt", standalone_mode=False)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except typer.TyperException as e:  # usage errors: unknown option, wrong type, ...
        print(f"error: {e.format_message()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except typer.Exit as e:
        return e.exit_code
    except ProcessGroupError as e:  # a process of a several-process solve died or hung
        print(f"error: {e}", file=sys.stderr)
        return 1
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a signal outside a run's own handling
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())

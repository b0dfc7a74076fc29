"""Wall time of a PINN Laplacian loss plus its backward pass: forward jets vs nested autograd.

For an MLP u_θ (tanh, float64, CPU) on [0, 1]^d and N collocation points x_i,

    loss(θ) = ½ mean_i (-Δu_θ(x_i) - f(x_i))²,      f(x) = d π² Π_j sin(π x_j),

one timed step is: compute the Laplacian, the loss, and ``loss.backward()`` with
respect to the parameters. The Laplacian comes from

  * ``jet``        — :func:`pinnopt.derivatives.jet` with ``order=2``: value, gradient and
    Hessian diagonal pushed forward through the layers, then summed;
  * ``jet-trace``  — the same with ``trace=True``: only the Laplacian is pushed forward
    (2 + d slots instead of 1 + 2d; what the Poisson and Helmholtz problems use);
  * ``autograd``   — :func:`pinnopt.derivatives.jet_autograd` (nested ``autograd.grad``),
  * ``torch.func`` — :func:`pinnopt.derivatives.jet_torch_func` (informational; skipped
    when one step takes longer than ``--max-step-s``).

Before timing, the loss and the parameter gradient of every method are checked against
``autograd`` (relative difference at most ``--rtol``); a mismatch exits with status 1.
Each method runs blocks of consecutive steps (as in a training loop), the methods taking
turns block by block so that load from other processes hits all of them alike; the table
reports the median of ``--repeats`` timed steps after ``--warmup`` untimed ones.

``--variants`` adds prototypes defined in this file (not library code), kept here so that
the numbers quoted for them in ``docs/derivatives.md`` can be re-run: ``proto-diag`` and
``proto-trace`` are the library's two jets minus two costs — the first layer skips the
second-derivative part (identically zero there) and σ uses one fused ``addcmul``.

``--count`` adds a table of the work per step (matmul FLOPs, bytes written by kernels,
number of kernels), counted per dispatched ATen op; it does not depend on the machine.

``--compile`` adds ``torch.compile`` of ``jet`` and ``jet-trace`` (the jet is a plain
forward graph, so it compiles; nested ``autograd.grad`` does not).

Cells other than ``jet``, ``jet-trace`` and ``autograd`` show ``ms (speedup over
autograd)``; the two speedup columns are autograd ms / jet ms and / jet-trace ms.

Run:  .venv/bin/python benchmarks/derivatives.py [--dims 2 3 5] [--out docs/table.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pinnopt.derivatives import jet, jet_autograd, jet_torch_func
from pinnopt.models import MLP, Activation, InputScaling

LaplacianFn = Callable[[nn.Module, Tensor], Tensor]


# --------------------------------------------------------------------------- library paths


def lap_jet(model: nn.Module, x: Tensor) -> Tensor:
    return jet(model, x, order=2).laplacian()


def lap_jet_trace(model: nn.Module, x: Tensor) -> Tensor:
    return jet(model, x, order=2, trace=True).laplacian()


def lap_autograd(model: nn.Module, x: Tensor) -> Tensor:
    return jet_autograd(model, x, order=2).laplacian()


def lap_torch_func(model: nn.Module, x: Tensor) -> Tensor:
    return jet_torch_func(model, x, order=2).laplacian()


# --------------------------------------------------------------------------- prototypes
# Local variants, for MLPs built from InputScaling / nn.Linear / Activation only.


def _separate_jet(model: nn.Module, x: Tensor, trace: bool) -> Tensor:
    """Δu from a jet (v, g, h): value (N, k), gradient (N, d, k) and second derivatives h,
    the Hessian diagonal (N, d, k) or its trace (N, k) — the library's layout, minus:

    * h starts as ``None`` (identically zero), so the first layer neither stores nor
      multiplies zeros;
    * σ maps h ↦ σ''(v) g² + σ'(v) h  (or σ''(v) Σ_i g_i² + σ'(v) h) with one ``addcmul``.
    """
    n, d = x.shape
    v, g, h = x, torch.eye(d, dtype=x.dtype).expand(n, d, d), None
    for layer in model:
        if isinstance(layer, nn.Linear):
            wt = layer.weight.t()
            v = v @ wt if layer.bias is None else torch.addmm(layer.bias, v, wt)
            g = g @ wt
            h = None if h is None else h @ wt
        elif isinstance(layer, Activation):
            f0, f1, f2 = layer.fn(v)
            f1g = f1.unsqueeze(1)
            if trace:
                q, a, b = g.square().sum(dim=1), f1, f2
            else:
                q, a, b = g.square(), f1g, f2.unsqueeze(1)
            h = b * q if h is None else torch.addcmul(a * h, b, q)
            v, g = f0, f1g * g
        elif isinstance(layer, InputScaling):
            v = v * layer.scale + layer.shift
            g = g * layer.scale
            h = None if h is None else h * layer.scale
        else:
            raise TypeError(f"prototype jets do not support {type(layer).__name__}")
    if h is None:
        raise TypeError("prototype jets need at least one activation")
    return h[:, 0] if trace else h[:, :, 0].sum(dim=1)


def lap_proto_diag(model: nn.Module, x: Tensor) -> Tensor:
    """Hessian diagonal, like ``jet(model, x, order=2)``."""
    return _separate_jet(model, x, trace=False)


def lap_proto_trace(model: nn.Module, x: Tensor) -> Tensor:
    """Laplacian only, like ``jet(model, x, order=2, trace=True)``."""
    return _separate_jet(model, x, trace=True)


LIBRARY_METHODS: dict[str, LaplacianFn] = {
    "jet": lap_jet,
    "jet-trace": lap_jet_trace,
    "autograd": lap_autograd,
    "torch.func": lap_torch_func,
}
PROTOTYPE_METHODS: dict[str, LaplacianFn] = {
    "proto-diag": lap_proto_diag,
    "proto-trace": lap_proto_trace,
}
REFERENCE = "autograd"
REQUIRED = ("jet", "jet-trace", REFERENCE)  # never skipped as too slow


# --------------------------------------------------------------------------- benchmark


@dataclass
class Row:
    """Measurements at one input dimension; times in milliseconds (``None``: skipped)."""

    d: int
    n: int
    width: int
    depth: int
    ms: dict[str, float | None] = field(default_factory=dict)
    loss_rel_diff: dict[str, float] = field(default_factory=dict)
    grad_rel_diff: dict[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """autograd time / jet time."""
        return self.ms[REFERENCE] / self.ms["jet"]

    @property
    def speedup_trace(self) -> float:
        """autograd time / jet-trace time."""
        return self.ms[REFERENCE] / self.ms["jet-trace"]


def make_case(
    d: int, n: int, width: int, depth: int, seed: int
) -> tuple[nn.Module, Tensor, Tensor]:
    """Model (float64 tanh MLP on [0, 1]^d), points (N, d) and source values f (N,)."""
    with torch.random.fork_rng():  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        model = MLP(d, 1, width, depth, "tanh", lower=[0.0] * d, upper=[1.0] * d)
    model = model.to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    f = d * math.pi**2 * torch.sin(math.pi * x).prod(dim=1)
    return model, x, f


def loss_and_grad(lap: LaplacianFn, model: nn.Module, x: Tensor, f: Tensor) -> Tensor:
    """One timed step: loss = ½ mean((-Δu - f)²), then backward to the parameters."""
    for p in model.parameters():
        p.grad = None
    loss = 0.5 * (-lap(model, x) - f).square().mean()
    loss.backward()
    return loss.detach()


def _flat_grad(model: nn.Module) -> Tensor:
    # Parameters the loss does not depend on (the output bias) have no gradient: count 0.
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
    return torch.cat([g.reshape(-1) for g in grads])


def check_agreement(
    methods: dict[str, LaplacianFn], model: nn.Module, x: Tensor, f: Tensor
) -> tuple[dict[str, float], dict[str, float]]:
    """Relative difference of loss and parameter gradient of every method to autograd's."""
    ref_loss = loss_and_grad(methods[REFERENCE], model, x, f)
    ref_grad = _flat_grad(model)
    loss_diff, grad_diff = {}, {}
    for name, lap in methods.items():
        loss = loss_and_grad(lap, model, x, f)
        loss_diff[name] = (abs(loss - ref_loss) / abs(ref_loss)).item()
        grad_diff[name] = ((_flat_grad(model) - ref_grad).norm() / ref_grad.norm()).item()
    return loss_diff, grad_diff


def time_methods(
    methods: dict[str, LaplacianFn],
    model: nn.Module,
    x: Tensor,
    f: Tensor,
    warmup: int,
    repeats: int,
    max_step_s: float,
    blocks: int = 5,
) -> dict[str, float | None]:
    """Median step time in ms per method; ``None`` for methods skipped as too slow.

    The ``repeats`` timed steps of each method are split into ``blocks`` runs of
    consecutive steps (as in a training loop, which repeats one step), and the methods take
    turns block by block so that load from other processes hits all of them alike. Each
    block starts with one untimed step, after ``warmup`` untimed steps per method at first.
    """
    active = dict(methods)
    skipped: dict[str, float | None] = {}
    for name, lap in list(active.items()):
        for _ in range(warmup):
            t0 = time.perf_counter()
            loss_and_grad(lap, model, x, f)
            if time.perf_counter() - t0 > max_step_s and name not in REQUIRED:
                skipped[name] = None
                del active[name]
                break
    blocks = max(1, min(blocks, repeats))
    sizes = [repeats // blocks + (b < repeats % blocks) for b in range(blocks)]
    times: dict[str, list[float]] = {name: [] for name in active}
    for size in sizes:
        for name, lap in active.items():
            loss_and_grad(lap, model, x, f)
            for _ in range(size):
                t0 = time.perf_counter()
                loss_and_grad(lap, model, x, f)
                times[name].append(time.perf_counter() - t0)
    medians = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    return {name: medians.get(name) for name in methods} | skipped


_VIEW_OPS = (
    "alias", "as_strided", "detach", "expand", "permute", "select", "slice", "split",
    "split_with_sizes", "squeeze", "t", "transpose", "unsqueeze", "view", "_unsafe_view",
)  # fmt: skip


def count_work(lap: LaplacianFn, model: nn.Module, x: Tensor, f: Tensor) -> dict[str, float]:
    """Work of one step, counted per dispatched ATen op (views excluded): matmul MFLOP,
    MB written by kernel outputs, and the number of kernels."""
    from torch.utils._python_dispatch import TorchDispatchMode

    matmuls = {"mm", "addmm", "bmm"}
    work = {"matmul MFLOP": 0.0, "MB written": 0.0, "kernels": 0.0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name in _VIEW_OPS:
                return out
            work["kernels"] += 1
            if name in matmuls:
                a, b = args[-2], args[-1]
                work["matmul MFLOP"] += 2e-6 * a.numel() * b.shape[-1]
            elif isinstance(out, Tensor):
                work["MB written"] += 1e-6 * out.numel() * out.element_size()
            return out

    with Count():
        loss_and_grad(lap, model, x, f)
    return work


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 or v == int(v) else f"{v:.3g}"


def format_work_table(work: dict[int, dict[str, dict[str, float]]]) -> str:
    """Markdown table of :func:`count_work` results: one row per method, d side by side."""
    dims = list(work)
    names = list(work[dims[0]])
    keys = list(work[dims[0]][names[0]])
    label = " / ".join(str(d) for d in dims)
    lines = [f"| method (d = {label}) | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name in names:
        cells = [" / ".join(_num(work[d][name][k]) for d in dims) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: Row, name: str) -> str:
    t = row.ms[name]
    if t is None:
        return "—"
    if name in REQUIRED:
        return f"{t:.1f}"
    return f"{t:.1f} ({row.ms[REFERENCE] / t:.2f}×)"


def format_table(rows: Sequence[Row], names: Sequence[str]) -> str:
    """Markdown table: d, N, width×depth, ms per method, speedups over autograd, differences."""
    head = ["d", "N", "width×depth", *[f"{n} ms" for n in names], "speedup", "speedup trace"]
    head.append("max rel. diff loss / grad")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        ms = [_cell(r, n) for n in names]
        diff = f"{max(r.loss_rel_diff.values()):.1e} / {max(r.grad_rel_diff.values()):.1e}"
        size = f"{r.width}×{r.depth}"
        speedups = [f"{r.speedup:.2f}×", f"{r.speedup_trace:.2f}×"]
        cells = [str(r.d), str(r.n), size, *ms, *speedups, diff]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_note(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"torch {torch.__version__}, {threads} thread(s) (torch.set_num_threads), "
        f"{os.cpu_count()} CPU(s): {cpu}; float64; load average before the run: {load}"
    )


class OtherLoad:
    """Average number of CPUs kept busy by *other* processes while it is open (Linux only).

    Busy time of the whole machine from /proc/stat minus this process's own CPU time,
    divided by the wall time; timings taken while it is well above 0 are not trustworthy.
    """

    def __enter__(self) -> OtherLoad:
        self.value: float | None = None
        self._start = (self._machine_busy_s(), self._own_s(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        machine0, own0, wall0 = self._start
        machine1, own1, wall1 = self._machine_busy_s(), self._own_s(), time.perf_counter()
        if machine0 is not None and machine1 is not None and wall1 > wall0:
            self.value = max(0.0, (machine1 - machine0) - (own1 - own0)) / (wall1 - wall0)

    @staticmethod
    def _own_s() -> float:
        t = os.times()
        return t.user + t.system

    @staticmethod
    def _machine_busy_s() -> float | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy = sum(fields[:8]) - fields[3] - fields[4]
        return busy / os.sysconf("SC_CLK_TCK")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 5], help="input dimensions d")
    p.add_argument("--points", type=int, default=2000, help="collocation points N")
    p.add_argument("--width", type=int, default=64, help="hidden width of the MLP")
    p.add_argument("--depth", type=int, default=3, help="number of hidden layers")
    p.add_argument("--repeats", type=int, default=30, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument(
        "--threads", type=int, help="torch threads (default: torch's default; 1 with --smoke)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, default=1e-10, help="allowed relative loss/grad diff")
    p.add_argument(
        "--max-step-s", type=float, default=2.0, help="skip torch.func if a step takes longer"
    )
    p.add_argument("--no-torch-func", action="store_true", help="leave out torch.func")
    p.add_argument("--variants", action="store_true", help="also time the local prototypes")
    p.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    p.add_argument(
        "--count", action="store_true", help="also count matmul FLOPs, bytes and kernels"
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes and few repeats (tests)")
    p.add_argument("--out", help="also write the markdown table (and machine note) here")
    args = p.parse_args(argv)
    if args.smoke:
        args.points, args.width, args.depth = 64, 8, 2
        args.repeats, args.warmup = 2, 1
        if args.threads is None:
            args.threads = 1
    if args.threads is None:
        args.threads = torch.get_num_threads()
    for name in ("points", "width", "depth", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if any(d < 1 for d in args.dims):
        p.error(f"--dims must all be >= 1, got {args.dims}")
    if not args.rtol > 0:
        p.error(f"--rtol must be > 0, got {args.rtol}")
    return args


def run(args: argparse.Namespace) -> list[Row]:
    """Check agreement, time every method at every d, print the table; return its rows."""
    methods = dict(LIBRARY_METHODS)
    if args.no_torch_func:
        del methods["torch.func"]
    if args.variants:
        methods |= PROTOTYPE_METHODS
    if args.compile:
        methods["jet+compile"] = torch.compile(lap_jet, dynamic=False)
        methods["jet-trace+compile"] = torch.compile(lap_jet_trace, dynamic=False)
    note = machine_note(torch.get_num_threads())
    print(note, flush=True)

    with OtherLoad() as other:
        rows = [_run_dim(d, methods, args) for d in args.dims]
    if other.value is not None:
        busy = f"CPUs kept busy by other processes during the run: {other.value:.2f}"
        note += "; " + busy
        print(busy)

    table = format_table(rows, list(methods))
    if args.count:
        countable = [n for n in methods if n in LIBRARY_METHODS | PROTOTYPE_METHODS]
        countable = [n for n in countable if n != "torch.func"]
        work = {}
        for d in args.dims:
            model, x, f = make_case(d, args.points, args.width, args.depth, args.seed)
            work[d] = {n: count_work(methods[n], model, x, f) for n in countable}
        table += "\n\nWork per step:\n\n" + format_work_table(work)
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n\n" + note + "\n")
    return rows


def _run_dim(d: int, methods: dict[str, LaplacianFn], args: argparse.Namespace) -> Row:
    """Agreement check, then timings, at input dimension d."""
    model, x, f = make_case(d, args.points, args.width, args.depth, args.seed)
    loss_diff, grad_diff = check_agreement(methods, model, x, f)
    bad = {k: v for k, v in loss_diff.items() if not v <= args.rtol}
    bad |= {f"{k} (grad)": v for k, v in grad_diff.items() if not v <= args.rtol}
    if bad:
        raise SystemExit(f"d={d}: relative difference to autograd above {args.rtol}: {bad}")
    ms = time_methods(methods, model, x, f, args.warmup, args.repeats, args.max_step_s)
    row = Row(d, args.points, args.width, args.depth, ms, loss_diff, grad_diff)
    shown = ", ".join(f"{k} {'—' if v is None else f'{v:.1f}'} ms" for k, v in ms.items())
    print(f"d={d}: {shown}; speedup {row.speedup:.2f}×, trace {row.speedup_trace:.2f}×", flush=True)
    return row


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Command-line entry point; restores torch's thread count afterwards."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

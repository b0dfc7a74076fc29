"""The Córdoba–Córdoba–Fontelos profiles from a bracket: λ, residual, stability, convergence.

    python benchmarks/blowup_ccf.py --out bench_out/blowup_ccf
    python benchmarks/blowup_ccf.py --smoke --out /tmp/blowup_ccf_smoke   # for the tests

For each order in ``--orders`` (0, 1, 2) one ``pinnopt blowup ccf --order n
--funnel-scan 8`` run (``run_series``). Order 0 uses the analytic series: the bracket
[0.3, 1.5] scanned for sign changes of the λ rule, false position, then λ trainable with
resolution refinement up to degree 39, the funnel scan, the stability count. Orders 1
and 2 follow the branch of fixed-λ solutions across the bracket on a log grid
(``--lambda-mode branch``, their default): the (n+1)-th crossing of γ = 2, solved on
grids of steps 0.1 and 0.05. An order whose bracket holds too few sign changes or
crossings is reported as not found, with the message. Outputs in ``--out``:
``results.md`` (tables, with this command and the machine), ``results.json``,
``convergence.png`` (max relative residual against the number of terms) and the run directories
under ``runs/``. No published value of λ is used anywhere: the table lists what was found.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pinnopt.blowup.run import OptionError  # noqa: E402
from pinnopt.blowup.series_run import run_series  # noqa: E402


def one_order(order: int, out: Path, smoke: bool, degree: int) -> dict:
    run_dir = out / "runs" / f"ccf-{order}"
    try:
        smaller = {"degree": 7, "funnel_scan": 1, "scan_points": 5} if smoke else {}
        m = run_series("ccf", order, run_dir, **{"degree": degree, "funnel_scan": 8, **smaller},
                       quiet=True)  # fmt: skip
    except OptionError as e:
        return {"order": order, "found": False, "message": str(e)}
    return {"order": order, "found": True, **m}


def tables(rows: list[dict]) -> list[str]:
    branch = [r for r in rows if r["found"] and r["lambda_mode"] == "branch"]
    rows = [r for r in rows if not (r["found"] and r["lambda_mode"] == "branch")]
    lines = ["| order | λ | digits (funnel) | max abs residual | max relative residual | "
             "λ rule error | first-integral drift | unstable modes | degree | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if not r["found"]:
            lines.append(f"| {r['order']} | not found: {r['message']} |||||||||")
            continue
        lines.append(
            f"| {r['order']} | {r['lambda']:.12f} | {r['lambda_digits']} | "
            f"{r['max_residual']:.1e} | {r['max_relative_residual']:.1e} | "
            f"{r['lambda_rule_error']:.1e} | {r['first_integral_error']:.1e} | "
            f"{r['stability']['unstable_modes']} | {r['degree']} | {r['seconds']:.0f} |"
        )
    found = [r for r in rows if r["found"]]
    if found:
        lines += ["", "Resolution refinement of order " f"{found[0]['order']}:", "",
                  "| degree | w-block K × N | collocation points | max relative residual at "
                  "the points | λ |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {s['degree']} | {s['blocks']} × {s['modes']} | {s['points']} | "
                  f"{s['max_relative_residual']:.1e} | {s['lambda']:.12f} |"
                  for s in found[0]["stages"]]  # fmt: skip
    if branch:
        lines += ["", "Along the branch of fixed-λ solutions (log grid):", "",
                  "| order | λ (h = 0.05) | λ (h = 0.1) | digits (grids agree) | max E/Ω "
                  "by quadrature | crossings of γ = 2 in the bracket | seconds |",
                  "|---|---:|---:|---:|---:|---|---:|"]  # fmt: skip
        lines += [f"| {r['order']} | {r['lambda']:.6f} | {r['lambda_coarse']:.6f} | "
                  f"{r['lambda_digits']} | {r['quadrature_residual']:.1e} | "
                  f"{', '.join(f'{c:.4f}' for c in r['crossings'])} | {r['seconds']:.0f} |"
                  for r in branch]  # fmt: skip
    return lines


def plot_convergence(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["found"] and "stages" in r:
            d = [s["degree"] + 1 + s["blocks"] * s["modes"] for s in r["stages"]]
            ax.loglog(d, [s["max_relative_residual"] for s in r["stages"]], "o-",
                      label=f"order {r['order']}")  # fmt: skip
    ax.set_xlabel("terms of the series (degree + 1 + K·N)")
    ax.set_ylabel("max relative residual at the points")
    ax.set_title("CCF: resolution refinement")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--degree", type=int, default=39)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out", type=Path, default=Path("bench_out/blowup_ccf"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [one_order(n, args.out, args.smoke, args.degree) for n in args.orders]
    command = "python benchmarks/blowup_ccf.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = [f"Command: `{command}`; {platform.machine()}, {args.threads} torch thread(s), "
            f"torch {torch.__version__}, float64; residuals on y ∈ (0, 100] and out to 1e12.",
            "", *tables(rows)]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(text) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_convergence(rows, args.out / "convergence.png")
    print("\n".join(text))


if __name__ == "__main__":
    main()

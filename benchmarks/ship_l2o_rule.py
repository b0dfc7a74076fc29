"""Copy a meta-trained rule from a ``learned_vs_adam.py`` run into the package as the
shipped PINN rule (``src/pinnopt/learned/rules/pinn_l2o.pt``, what a bare
``--optimizer l2o`` uses) and record its provenance and SHA-256 beside it.

    python benchmarks/learned_vs_adam.py --family pde_mix --meta-steps 60 \\
        --out bench_out/learned/pde_mix_v4
    python benchmarks/learned_vs_adam.py --family pde_mix --kinds reaction advection \\
        --rule bench_out/learned/pde_mix_v4/meta/optimizer.pt \\
        --out bench_out/learned/pde_mix_v4_held_out
    python benchmarks/ship_l2o_rule.py bench_out/learned/pde_mix_v4 \\
        --held-out bench_out/learned/pde_mix_v4_held_out

The record (``rules/pinn_l2o.json``) holds the commands, the training family and its
options, the meta-training config and metrics, the summary of the run's held-out test
tasks and of every ``--held-out`` run (other PDE kinds scored with ``--rule``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pinnopt.learned.shipped import SHIPPED_RULE, SHIPPED_RULE_INFO, sha256

META_FIELDS = ("meta_steps_done", "best_meta_step", "initial_val_loss", "best_val_loss",
               "test_loss", "untrained_test_loss", "wall_time_s")  # fmt: skip


def command_of(run: Path) -> str:
    """The command that produced a run: the first `...` span of its results.md."""
    return (run / "results.md").read_text().split("`")[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a learned_vs_adam.py --out folder")
    parser.add_argument("--held-out", type=Path, nargs="*", default=[],
                        help="--rule runs of this rule on other PDEs")  # fmt: skip
    args = parser.parse_args(argv)
    res = json.loads((args.run / "results.json").read_text())
    if res["meta"] is None or res["method"] != "l2o":
        parser.error(f"{args.run} did not meta-train an l2o rule")
    source = Path(res["rule"])
    held_out = []
    for run in args.held_out:
        other = json.loads((run / "results.json").read_text())
        if sha256(other["rule"]) != sha256(source) or "kinds" not in other["family_options"]:
            parser.error(f"{run} is not a --kinds run of this rule")
        held_out.append({"kinds": list(other["family_options"]["kinds"]),
                         "command": command_of(run), "adam_lr": other["adam_lr"],
                         "summary": other["summary"]})  # fmt: skip
    meta = res["meta"]
    record = {
        "file": SHIPPED_RULE.name,
        "sha256": sha256(source),
        "command": command_of(args.run),
        "family": res["family"],
        "family_options": res["family_options"],
        "steps": res["steps"],
        "first_order": res["first_order"],
        "config": meta["config"],
        "meta": {k: meta[k] for k in META_FIELDS},
        "test": {"adam_lr": res["adam_lr"], "summary": res["summary"]},
        "held_out": held_out,
    }
    SHIPPED_RULE.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, SHIPPED_RULE)
    SHIPPED_RULE_INFO.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{SHIPPED_RULE} ({SHIPPED_RULE.stat().st_size} bytes, sha256 {record['sha256']})")
    return record


if __name__ == "__main__":
    main()

"""Benchmark matrix: problems × optimizers × seeds, each run a ``solve`` of a derived config.

* :mod:`pinnopt.bench.matrix`: which runs, with which configs and run directories;
* :mod:`pinnopt.bench.runner`: running them (progress, ``bench.json``, ``results.csv``);
* :mod:`pinnopt.bench.results`: the ``results.csv`` rows;
* :mod:`pinnopt.bench.report`: ``results.md`` and the error-vs-time files, re-runnable
  on a finished directory (:func:`write_report`);
* :mod:`pinnopt.bench.plot`: error against wall time.

The command line is ``pinnopt bench`` (see ``docs/benchmarks.md``).
"""

from pinnopt.bench.matrix import Run, plan, run_dir, slug
from pinnopt.bench.report import write_report

__all__ = ["Run", "plan", "run_dir", "slug", "write_report"]

"""``pinnopt bench --jobs N`` and ``--ray``: the serial results, killed cells recorded,
finished cells not run again."""

import csv
import os

import pytest

from pinnopt.bench.matrix import plan
from pinnopt.bench.pool import local_cells
from pinnopt.bench.runner import run_cell
from pinnopt.cli import main

TINY = ["--problems", "poisson1d", "--optimizers", "adam", "adam:3,lbfgs", "--seeds", "1",
        "--width", "4", "--depth", "1", "--threads", "1", "--quiet"]  # fmt: skip
SAME = ["problem", "optimizer", "seed", "n_params", "rel_l2", "max_abs_error", "final_loss",
        "steps", "status"]  # fmt: skip


def bench(capsys, out, *args, steps=8):
    code = main(["bench", *TINY, "--steps", str(steps), "--out", str(out), *args])
    stdout, err = capsys.readouterr()
    return code, stdout, err


def results(out) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return [{k: row[k] for k in SAME} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    assert main(["bench", *TINY, "--steps", "8", "--out", str(out)]) == 0
    return out


def test_jobs_2_gives_the_serial_results_and_a_rerun_skips_finished_cells(serial, tmp_path, capsys):
    out = tmp_path / "jobs"
    code, stdout, _ = bench(capsys, out, "--jobs", "2")
    assert code == 0 and stdout.count("] poisson1d ") == 2
    assert results(out) == results(serial)  # the matrix's order, the same numbers
    assert "--jobs 2" in (out / "bench.json").read_text()
    cell = out / "runs" / "poisson1d" / "adam" / "seed0" / "metrics.json"
    written = cell.stat().st_mtime_ns
    code, stdout, _ = bench(capsys, out)
    assert code == 0 and "2 cell(s) already done" in stdout and "] poisson1d " not in stdout
    assert cell.stat().st_mtime_ns == written and results(out) == results(serial)
    # another config for the same cells (a smaller step budget): they run again
    code, stdout, _ = bench(capsys, out, steps=6)
    assert code == 0 and stdout.count("] poisson1d ") == 2 and "already done" not in stdout
    assert cell.stat().st_mtime_ns != written
    assert all(int(r["steps"]) <= 6 for r in results(out))


def dies_on_seed_1(run):
    if run.seed == 1:
        os._exit(9)  # the process vanishes: no row, no exception
    return run_cell(run)


def test_a_killed_cell_is_recorded_and_the_others_go_on(tmp_path):
    runs = plan({"model": {"width": 4, "depth": 1}, "training": {"steps": 3, "threads": 1}},
                ["poisson1d"], ["adam"], 2, tmp_path)  # fmt: skip
    rows = dict(local_cells(runs, 2, dies_on_seed_1))
    assert sorted(rows) == [0, 1]
    assert [rows[i]["status"] for i in range(2)] == ["completed", "killed"]
    assert rows[1]["message"] == "the cell's process ended with exit code 9 and no result"


def test_ray_runs_the_cells_as_tasks_with_the_serial_results(serial, tmp_path, capsys):
    pytest.importorskip("ray")  # in the dev extras: installed wherever the tests run
    out = tmp_path / "ray"
    code, _, err = bench(capsys, out, "--ray")
    assert code == 0, err
    assert results(out) == results(serial)
    assert "--ray local" in (out / "bench.json").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs: must be an integer >= 1, got 0"),
        (["--jobs", "2", "--ray"], "--jobs: Ray schedules the cells itself; give --jobs or --ray"),
    ],
)
def test_bad_parallel_options_are_one_line(args, message, tmp_path, capsys):
    code, _, err = bench(capsys, tmp_path / "b", *args)
    assert code == 2 and err.strip() == f"error: {message}"


def test_ray_missing_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import pinnopt.bench.pool as pool

    def missing():
        raise ImportError('Ray is not installed; install it with `pip install "pinnopt[ray]"`')

    monkeypatch.setattr(pool, "import_ray", missing)
    code, _, err = bench(capsys, tmp_path / "b", "--ray")
    assert code == 2 and err.strip().startswith("error: --ray: Ray is not installed")
    assert not (tmp_path / "b").exists()

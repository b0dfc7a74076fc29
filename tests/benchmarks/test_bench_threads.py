def test_threads_benchmark_smoke(load_benchmark, tmp_path):
    bench = load_benchmark("threads")
    rows = bench.measure(bench.SMOKE_CASES, [1], rounds=1)
    assert [(r["neighbour"], r["threads"]) for r in rows] == [("idle", 1), ("busy", 1)]
    assert all(r["seconds"] > 0 and r["all"] == [r["seconds"]] for r in rows)
    text = bench.table(rows, "python benchmarks/threads.py --smoke")
    lines = [line for line in text.splitlines() if line.startswith("| smoke")]
    assert [line.split("|")[2].strip() for line in lines] == ["idle", "busy"]
    assert float(lines[0].split("|")[4]) == round(rows[0]["seconds"], 2)

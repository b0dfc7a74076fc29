# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test coverage lint format bench clean

install: $(STAMP)

# torch is pinned first so pip takes the CPU wheel that lies on disk instead of
# resolving the package's torch range to a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Gauss-Newton on a 2-32-1 tanh MLP: poisson2d to rel_l2 ~1e-6 in well under a minute.
demo: install
	$(BIN)/pinnopt solve poisson2d --optimizer gn --depth 1 --steps 2000 --threads 1 --out runs/demo --overwrite

# two test workers: CI has 2 cores. Coverage is its own target: its line tracing made the
# suite about 1.45x slower on 2 cores (278 s against 191 s, 1386 tests, 2026-12-02)
test: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/pytest -n 2

coverage: install
	$(BIN)/pytest -n 2 --cov=pinnopt --cov-report=term:skip-covered

format: install
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) runs .pytest_cache .coverage

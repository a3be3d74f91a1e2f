# Two entry points for a fresh clone: `make demo` (the main job) and `make test`.
# Both create .venv with pip and the pinned versions in constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
export SQUEEZENET_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint docs lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[train,deploy]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.stamp-run

demo: $(VENV)/.stamp-run
	$(BIN)/squeezenet demo

# Two test processes share the cores: OpenMP threads that spin while they wait made them starve each other
# (the compression tests ran 4x slower: 250 s instead of 37 s for the two budget tests).
# OMP_NUM_THREADS=1: one thread per worker on two cores (the tests' own training subprocesses already ran on one;
# two workers of two threads each oversubscribed the machine). Slow tests are collected first (tests/conftest.py) and
# handed out one at a time (--maxschedchunk 1): xdist's default first chunks, and worksteal's contiguous halves, gave
# one worker every slow test (it ran them in series for 7 minutes while the other idled).
# --durations=15: every run (CI included) lists its slowest tests; the whole suite must stay under 10 minutes.
# The browser test's runtime: onnxruntime-web from npm (package.json, package-lock.json); without npm it skips.
node_modules/.stamp: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --ignore-scripts --silent && touch $@; \
	 else echo "no npm: the browser test (tests/deploy/test_web.py) will skip"; fi

test: $(VENV)/.stamp-dev node_modules/.stamp
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist load --maxschedchunk 1 --durations=15 $(PYTEST_ARGS)

# The documentation site (docs/ + the API reference from the docstrings) into site/; --strict: a broken link fails.
docs: $(VENV)/.stamp-dev
	$(BIN)/python tools/readme_to_index.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks hubconf.py
	$(BIN)/mypy src

lock: $(VENV)/.stamp-dev
	{ echo "# Exact versions used by make/CI (pip -c). Library users get the ranges in pyproject.toml."; \
	  echo "# Regenerate with: make lock"; \
	  $(PIP) freeze --exclude-editable | grep -v '^squeezenet-toolkit'; } > constraints.txt

clean:
	rm -rf $(VENV) build site node_modules src/*.egg-info .pytest_cache

# Two commands do all the set-up on a fresh machine that has only python3:
#   make demo   - a demo infusion on the simulated pump, safety process and all
#   make test   - lint, format check, type-check and the whole test suite (what CI runs)
#   make mutation - mutation testing of the safety kernel and rules (not part of test)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,plot,observe,console]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pumpctl demo

# Test temporary files (journals written with synchronous=FULL, on every test's bench) go
# to RAM where there is some: nothing a test asserts depends on the disk's flush time (the
# benchmarks measure that, on the disk), and each journal write is a flush.
TEST_TMPDIR ?= $(if $(wildcard /dev/shm/.),/dev/shm,$(or $(TMPDIR),/tmp))

# Two pytest workers (pytest-xdist): every test is independent of the others' order and
# process (each bench, pty, port and temporary folder is its own; the hardware-in-the-loop
# leftover census is per worker), and most hil time is spent waiting on real processes.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	TMPDIR=$(TEST_TMPDIR) $(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: $(STAMP)
	$(BIN)/pumpctl bench

# Mutation testing (docs/safety.md, "Mutation testing"): mutmut mutates safety/kernel and
# the pure rules ([tool.mutmut] in pyproject.toml) and runs, for each mutant, the fast
# tests that reach the mutated function. A fresh mutants/ every run: mutmut would keep
# stale copies of unmutated files and results of earlier tests. About 2 1/2 hours on the
# 2-core machine (docs/safety.md); MUTANTS='safety.kernel.decide*' (mutmut's name globs,
# space-separated) checks a subset.
MUTATION_STAMP := $(VENV)/.mutation-installed

$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	touch $(MUTATION_STAMP)

# the same RAM for the mutants' test runs: a third off each test's time
MUTATION_TMPDIR ?= $(TEST_TMPDIR)

mutation: $(MUTATION_STAMP)
	rm -rf mutants
	TMPDIR=$(MUTATION_TMPDIR) $(BIN)/mutmut run --max-children $${MUTATION_JOBS:-2} $(foreach m,$(MUTANTS),'$(m)') \
		> mutation.log 2>&1 \
		|| (tail -n 40 mutation.log; exit 1)
	$(BIN)/python -m tests.kernel.mutation_score mutants

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache mutants mutation.log
